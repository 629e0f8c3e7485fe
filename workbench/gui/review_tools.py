"""The lab-review side of the window, installed onto it by one call (`ReviewTools(window)`): the session gallery
(a bottom dock), the label list and the Grad-CAM panel (in the cells dock), review keys on the viewer and both
galleries, the right-click menu on boxes, "next unreviewed" cell and image, and the sample report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog, QSplitter

from workbench.app.session import ImageRecord
from workbench.gui.cam_panel import CamPanel
from workbench.gui.label_list import LabelList
from workbench.gui.panels import titled
from workbench.gui.reclassify import CellReviewer
from workbench.gui.session_gallery import SessionGallery
from workbench.gui.workers import Worker, describe_error


class ReviewTools(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = w = window
        self.reviewer = CellReviewer(w, self)
        self.report_worker: Worker | None = None
        self.gallery = SessionGallery(w.model, w.io_pool, lambda: w.settings.max_pixels, self._decoded)
        self.dock = QDockWidget("Session gallery", w)
        self.dock.setObjectName("session_gallery_dock")
        self.dock.setWidget(self.gallery)
        # under the smear only: the side docks keep the window's full height
        w.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        w.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.labels = LabelList(lambda: self.reviewer.labels)
        self.cam = CamPanel(w.io_pool, lambda: w.settings.to_config(), self.selected_cell)
        right = w.cells_dock.widget()
        if isinstance(right, QSplitter):                 # Counts, [Labels], Cell, [Grad-CAM], Cell gallery
            right.insertWidget(1, titled("Labels", self.labels))
            right.insertWidget(3, titled("Grad-CAM", self.cam))
            for index in range(right.count()):
                right.setStretchFactor(index, 1 if index == right.count() - 1 else 0)
        self._wire()
        self._actions()
        w.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.window and event.type() == QEvent.Type.Show:
            self.window.removeEventFilter(self)
            if self.window.store.value("window/state") is None:      # first start: room for the gallery's rows
                QTimer.singleShot(0, lambda: self.window.resizeDocks([self.dock], [260], Qt.Orientation.Vertical))
        return False

    # -- wiring ----------------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        w, reviewer = self.window, self.reviewer
        reviewer.cam_requested = lambda record, cell_id: (reviewer.show_cell(record, cell_id, centre=False),
                                                          self.cam.explain(record, cell_id))
        reviewer.install_keys(w.view, reviewer.viewer_targets)
        reviewer.install_keys(w.gallery.list, self.image_gallery_targets)
        for view in self.gallery.views.values():
            reviewer.install_keys(view, self.gallery.selected)
        reviewer.install_box_menu()
        self.gallery.cellActivated.connect(self._show_from_gallery)
        self.gallery.reclassifyRequested.connect(lambda targets, label: reviewer.reclassify(targets, label))
        w.gallery.cellActivated.connect(self._image_gallery_clicked)
        self.labels.labelChosen.connect(self._label_chosen)
        w.view.cellClicked.connect(lambda _id: self._update_current())
        w.editor.selectionChanged.connect(lambda _ids: self._update_current())
        for view in self.gallery.views.values():
            view.selectionModel().selectionChanged.connect(lambda *_a: self._update_current())
        w.model.subscribe(self._on_model)

    def _on_model(self, event: str, payload: Any) -> None:
        if event == "current_changed":
            self.cam.clear()
        self._update_current()

    def _decoded(self, path: str):
        """The current image's pixels when the viewer has them (crops are then cut without decoding again)."""
        record = self.window.model.current
        image = self.window.current_image
        return image if record is not None and str(record.path) == path and image is not None else None

    def image_gallery_targets(self) -> list[tuple[ImageRecord, int]]:
        record, selected = self.window.model.current, self.window.gallery.selected_id
        return [(record, selected)] if record is not None and selected >= 0 else []

    def selected_targets(self) -> list[tuple[ImageRecord, int]]:
        """The cells a label chosen now acts on: the session gallery's selection, else the viewer's, else the
        image gallery's."""
        return self.gallery.selected() or self.reviewer.viewer_targets() or self.image_gallery_targets()

    def selected_cell(self) -> tuple[ImageRecord, int] | None:
        targets = self.selected_targets()
        return targets[0] if targets else None

    def _show_from_gallery(self, record: ImageRecord, cell_id: int) -> None:
        self.reviewer.show_cell(record, cell_id)

    def _image_gallery_clicked(self, cell_id: int) -> None:
        if self.window.editor.enabled:                   # the crop's box becomes the editor's selection too
            self.window.editor.set_selection([cell_id])
        self._update_current()

    def _label_chosen(self, label: str) -> None:
        targets = self.selected_targets()
        if targets:
            self.reviewer.reclassify(targets, label)
        else:
            self.window.editor.current_label = label
        self._update_current()

    def _update_current(self) -> None:
        target = self.selected_cell()
        record = target[0] if target else None
        cell = next((c for c in record.result.cells if c.cell_id == target[1]), None) \
            if record is not None and record.result is not None else None
        if cell is not None:
            self.labels.set_current(cell.label, "selected cell")
        else:
            self.labels.set_current(self.window.editor.current_label, "new boxes")

    # -- actions ---------------------------------------------------------------------------------------------------
    def _actions(self) -> None:
        w = self.window
        self.act_next_cell = self._action("Next &unreviewed cell", self.reviewer.next_cell, "N",
                                          "Show the next cell nobody has reviewed yet")
        self.act_next_image = self._action("Next unreviewed &image", self.reviewer.next_image, "Shift+N",
                                           "Show the next analysed image not marked reviewed")
        self.act_report = self._action("Sample &report (PDF)…", self.report_dialog, "",
                                       "Write the session's sample report: counts as analysed and after review, "
                                       "images, blast cells with Grad-CAM, the reviewer's sign-off")
        self.act_gradcam = self._action("&Grad-CAM of the selected cell", lambda: self.cam.explain(), "G",
                                        "Where the classifier found its evidence (computed in the background)")
        menu = w.menuBar()
        help_action = next((a for a in menu.actions() if a.text().replace("&", "") == "Help"), None)
        review = menu.addMenu("Re&view") if help_action is None else None
        if review is None:
            from PySide6.QtWidgets import QMenu

            review = QMenu("Re&view", w)
            menu.insertMenu(help_action, review)
        review.addActions([self.act_next_cell, self.act_next_image, self.act_gradcam])
        review.addSeparator()
        review.addAction(self.dock.toggleViewAction())
        review.addSeparator()
        review.addAction(self.act_report)
        self.review_menu = review

    def _action(self, text: str, slot, shortcut: str, tip: str) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda checked=False: slot())
        self.window.addAction(action)
        return action

    # -- the sample report -----------------------------------------------------------------------------------------
    def report_dialog(self) -> None:
        w = self.window
        name, ok = QInputDialog.getText(w, "Sample report", "Sign as reviewer (leave empty for an unsigned draft):",
                                        text="")
        if not ok:
            return
        out, _ = QFileDialog.getSaveFileName(w, "Write the sample report", str(Path(w.opener.last_folder()) /
                                                                                "report.pdf"), "PDF (*.pdf)")
        if out:
            self.make_report(Path(out), name.strip() or None)

    def make_report(self, out: Path, signed_by: str | None = None) -> Worker | None:
        """Write the session's report in the background (the session's results are written beside it and hashed);
        the status bar says where, or the error dialog why not."""
        from workbench.app.annotation.store import default_operator
        from workbench.app.report import ReportOptions, write_report
        from workbench.app.report_inputs import ReportSource, results_bytes
        from workbench.app.weights import Manifest

        w = self.window
        batch = w.model.to_batch()
        if not batch.images:
            w.show_error("No report", "Analyse some images first.", dialog=False)
            return None
        operator = getattr(w.annotation, "operator", None) or default_operator()
        source = ReportSource(batch, results_bytes(batch), None, None, "the workbench session")
        options = ReportOptions(operator=operator, signed_by=signed_by)
        weights = w.settings.to_config().paths.weights
        worker = Worker(lambda: write_report(source, out, options, Manifest.in_folder(weights)))
        worker.returned.connect(lambda written: w.statusBar().showMessage(
            f"Report written: {written.path}" + (f" (signed by {written.signed_by})" if written.signed_by else
                                                 " (unsigned draft)"), 15000))
        worker.errored.connect(lambda exc: w.show_error("Cannot write the report", describe_error(exc)))
        w.statusBar().showMessage(f"Writing the report {out.name}…")
        self.report_worker = worker.start(w.io_pool)
        return worker
