"""The main window: session images on the left, the smear viewer in the middle, counts / cell / gallery on the
right, an evaluation tab, menus, toolbar and shortcuts.

The window lays the widgets out and delegates; it holds no model logic, runs no job and reads no file format:

- `RecordDisplay` (display.py) shows the current record of the plain-Python `SessionModel` (image, boxes,
  gallery, details) and redraws when the model says so;
- `AnalysisController` (analysis.py) runs the background analysis, streaming results into the model;
- `AnnotationController` (annotation.py) owns the annotation project, edit mode, label import and retraining;
- `ExportController` (exports.py) and `SessionOpener` (opening.py) write and read the session's files;
- `CaseController` (cases.py) keeps the session in its case file, saving every change as it happens;
- actions.py makes the actions, menus and toolbar and says when each action is enabled.

Importing this module imports neither torch nor ultralytics nor the model packages: the models are loaded by the
analysis worker, in its thread, the first time an analysis runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import (QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QSplitter, QTabWidget,
                               QWidget)

from workbench.app.session import ImageRecord, SessionModel
from workbench.core.errors import WorkbenchError
from workbench.core.inputs import DEFAULT_EXTENSIONS
from workbench.gui import actions
from workbench.gui.analysis import DISCARD, KEEP, SKIP, AnalysisController, ask_reanalyse
from workbench.gui.annotation import AnnotationController
from workbench.gui.cases import CaseController
from workbench.gui.display import RecordDisplay
from workbench.gui.eval_view import EvalView
from workbench.gui.exports import ExportController
from workbench.gui.opening import SessionOpener
from workbench.gui.panels import (CellDetailsPanel, CountsPanel, GalleryPanel, ImageListPanel, MetadataPanel,
                                 titled)
from workbench.gui.review import ReviewPane
from workbench.gui.review_tools import ReviewTools
from workbench.gui.settings_dialog import GuiSettings, SettingsDialog, load_settings
from workbench.gui.workers import Worker

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    analysisFinished = Signal(bool)    # cancelled?
    imageShown = Signal(str)           # path of the image whose pixels are now in the view (or failed to load)
    exportFinished = Signal(object)    # list of written files, or an error message (str)

    def __init__(self, settings: GuiSettings | None = None, store: QSettings | None = None,
                 eval_root: Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.store = store if store is not None else QSettings()
        self.settings = settings if settings is not None else load_settings(self.store)
        self.model = SessionModel(threshold=self.settings.det_conf)
        self.errors: list[str] = []
        self.error_box: QMessageBox | None = None
        self.analysis_pool = QThreadPool(self)
        self.analysis_pool.setMaxThreadCount(1)
        self.io_pool = QThreadPool(self)
        self.io_pool.setMaxThreadCount(2)
        self.setWindowTitle("Smear Workbench")
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self._build_central(eval_root)
        self._build_docks()
        self._build_controllers()
        actions.create_actions(self)
        self.toolbar = actions.build_menus_and_toolbar(self)
        self._build_status_bar()
        self.review_tools = ReviewTools(self)     # session gallery, review keys, box menus, Grad-CAM, report
        self.model.subscribe(self._on_model)
        self._update_actions()
        self._restore_window_state()

    # ==========================================================================================================
    # construction
    def _build_central(self, eval_root: Path | None) -> None:
        self.review = ReviewPane()
        for name in ("scene", "view", "slider", "threshold_spin", "labels_box", "shown_label", "banner",
                     "placeholder"):
            setattr(self, name, getattr(self.review, name))
        self.labels_box.toggled.connect(self.set_labels_visible)
        self.eval_view = EvalView(eval_root)
        self.eval_view.setMinimumSize(360, 300)   # it gets the whole window when shown (the docks hide)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(self.eval_view, "Evaluation")
        self.setCentralWidget(self.tabs)
        self.tabs.currentChanged.connect(self._on_tab_changed)

    def _build_docks(self) -> None:
        self.image_list = ImageListPanel(self.model)
        self.metadata = MetadataPanel(self.model)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.image_list)
        left.addWidget(self.metadata)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        left.setChildrenCollapsible(False)
        self.images_dock = self._dock("Images", "images_dock", left, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.counts = CountsPanel(self.model)
        self.details = CellDetailsPanel()
        self.gallery = GalleryPanel()
        right = QSplitter(Qt.Orientation.Vertical)
        for title, widget in (("Counts", self.counts), ("Cell", self.details), ("Cell gallery", self.gallery)):
            right.addWidget(titled(title, widget))
        right.setStretchFactor(0, 0)
        right.setStretchFactor(1, 0)
        right.setStretchFactor(2, 1)
        right.setChildrenCollapsible(False)
        self.cells_dock = self._dock("Cells", "cells_dock", right, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock_visibility: dict[QDockWidget, bool] = {}

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                         QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                         QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_controllers(self) -> None:
        status = self.statusBar()
        self.display = RecordDisplay(self.model, self.review, self.gallery, self.details, self.io_pool, status,
                                     self.show_error, lambda: self.settings.max_pixels, parent=self)
        self.display.imageShown.connect(self.imageShown)
        self.opener = SessionOpener(self.model, self.store, lambda: self.extensions, status, self.show_error, self)
        self.exports = ExportController(self.model, lambda: self.settings, self.io_pool, status, self.show_error,
                                        self.opener.last_folder, self)
        self.exports.finished.connect(self.exportFinished)
        self.analysis = AnalysisController(self.model, self.analysis_pool, lambda: self.settings.to_config(), status,
                                           self.show_error, self.display.cache_image, parent=self)
        self.analysis.runningChanged.connect(lambda _running: self._update_actions())
        self.analysis.finished.connect(self.analysisFinished)
        self.annotation = AnnotationController(self)
        self.editor = self.annotation.editor
        self.annotation.editModeChanged.connect(self._sync_edit_action)
        self.cases = CaseController(self)
        self.cases.caseChanged.connect(lambda _path: (self.annotation.case_changed(), self._update_title()))
        self.opener.before_open = self.cases.before_open
        self.opener.recent_cases = self.cases
        self.model.subscribe(self._start_thumbnails)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.progress, self.cancel_button = self.analysis.progress, self.analysis.cancel_button
        self.zoom_label = QLabel("")
        self.view.zoomChanged.connect(lambda s: self.zoom_label.setText(f"Zoom {100 * s:.0f} %"))
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.zoom_label)
        status.showMessage("Ready")

    def _restore_window_state(self) -> None:
        geometry = self.store.value("window/geometry")
        state = self.store.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._state_restored = state is not None and self.restoreState(state)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._state_restored:   # first start: give the side panels room for names and crops
            self._state_restored = True
            QTimer.singleShot(0, lambda: self.resizeDocks([self.images_dock, self.cells_dock], [370, 390],
                                                          Qt.Orientation.Horizontal))

    def _on_tab_changed(self, index: int) -> None:
        """The evaluation view gets the whole window: the review docks (all of them: images, cells, the session
        gallery) hide while it is shown, so its plots have the room to be read at their natural size."""
        docks = self.findChildren(QDockWidget)
        if self.tabs.widget(index) is self.eval_view:
            self._dock_visibility = {dock: dock.isVisible() for dock in docks}
            for dock in docks:
                dock.hide()
        else:
            for dock in docks:
                dock.setVisible(self._dock_visibility.get(dock, True))

    # ==========================================================================================================
    # the session model -> the window's own parts (title, actions, thumbnails); the rest observe it themselves
    def _on_model(self, event: str, payload: Any) -> None:
        if event in ("current_changed", "record_changed", "records_removed"):
            self._update_title()
        self._update_actions()

    def _update_title(self) -> None:
        record = self.model.current
        sample = f" · {record.sample_id}" if record is not None and record.sample_id else ""
        cases = getattr(self, "cases", None)
        case = f" — case {cases.name}" if cases is not None and cases.store is not None else ""
        self.setWindowTitle(f"{record.name}{sample}{case} — Smear Workbench" if record else
                            f"Smear Workbench{case}")

    def _start_thumbnails(self, event: str, records: Any) -> None:
        if event != "records_added":
            return
        from workbench.gui.image_io import thumbnails

        by_path = {str(r.path): r for r in records}
        worker = Worker(thumbnails, list(by_path), size=40)
        worker.yielded.connect(lambda item: self.image_list.set_thumbnail(by_path[item[0]], item[1]))
        worker.start(self.io_pool)

    def _update_actions(self) -> None:
        actions.update_actions(self)

    def _sync_edit_action(self, enabled: bool) -> None:
        self.act_edit.blockSignals(True)
        self.act_edit.setChecked(enabled)
        self.act_edit.blockSignals(False)

    # ==========================================================================================================
    # the window's API (menus, the `workbench gui` entry point and tests call these; controllers do the work)
    @property
    def extensions(self) -> list[str]:
        try:
            return list(self.settings.to_config().images.extensions)
        except WorkbenchError:
            return list(DEFAULT_EXTENSIONS)

    def open_paths(self, paths: Iterable[Path | str]) -> list[ImageRecord]:
        return self.opener.open_paths(paths)

    def recent_paths(self) -> list[str]:
        return self.opener.recent_paths()

    @property
    def current_image(self) -> QImage | None:
        return self.display.current_image

    @property
    def visible_count(self) -> int:
        return self.display.visible_count

    def set_threshold(self, threshold: float) -> None:
        self.model.set_threshold(threshold)

    def set_labels_visible(self, visible: bool) -> None:
        visible = bool(visible)
        self.scene.set_labels_visible(visible)
        for widget in (self.labels_box, self.act_labels):
            widget.blockSignals(True)
            widget.setChecked(visible)
            widget.blockSignals(False)

    def select_cell(self, cell_id: int) -> None:
        self.display.select_cell(cell_id)

    @property
    def analysis_running(self) -> bool:
        return self.analysis.running

    def analyse_records(self, records: Sequence[ImageRecord], redo: bool = True) -> bool:
        """Analyse `records` in the background. Without `redo` only the images that need it (not analysed, failed);
        with it, images with a person's edits or review are analysed again only after asking (keep them beside the
        new analysis, replace them, or skip those images)."""
        run, ask = self.model.analysis_plan(records, redo=redo)
        keep: list[ImageRecord] = []
        if ask:
            choice = ask_reanalyse(self, ask)
            if choice is None:
                return False
            if choice in (KEEP, DISCARD):
                chosen = {id(r) for r in run + ask}
                run = [r for r in dict.fromkeys(records) if id(r) in chosen]
                keep = ask if choice == KEEP else []
            elif choice == SKIP and not run:
                self.statusBar().showMessage("Nothing analysed: the edited and reviewed images were skipped.", 8000)
                return False
        if not run:
            self.statusBar().showMessage("Every image is analysed already; Analyse → Re-analyse all runs them "
                                         "again.", 8000)
            return False
        return self.analysis.analyse(run, keep_edits=keep)

    def analyse_current(self) -> bool:
        record = self.model.current
        return self.analyse_records([record]) if record is not None else False

    def analyse_selection(self) -> bool:
        return self.analyse_records(self.image_list.selected_records() or
                                    ([self.model.current] if self.model.current else []))

    def analyse_all(self) -> bool:
        """The images not analysed yet (and the failed ones): never an edit or a review."""
        return self.analyse_records(self.model.records, redo=False)

    def reanalyse_all(self) -> bool:
        """Every image again (asking first about edited and reviewed ones)."""
        return self.analyse_records(self.model.records, redo=True)

    def cancel_analysis(self) -> None:
        self.analysis.cancel()

    def export(self, current_only: bool = False, out: Path | None = None, png: bool = True) -> bool:
        return self.exports.export(current_only, out, png)

    @property
    def project(self):
        return self.annotation.project

    def set_edit_mode(self, enabled: bool) -> None:
        self.annotation.set_edit_mode(enabled)

    def toggle_reviewed(self) -> None:
        self.annotation.toggle_reviewed()

    def set_operator(self, name: str) -> None:
        self.annotation.set_operator(name)

    def open_project(self, folder: Path | str):
        return self.annotation.open_project(folder)

    def import_labels(self, path: Path | str) -> bool:
        return self.annotation.import_labels(path)

    def import_label_folder(self, folder: Path | str) -> bool:
        return self.annotation.import_label_folder(folder)

    def export_training_set(self, out: Path | str) -> bool:
        return self.annotation.export_training_set(out)

    def open_training_dialog(self, data_yaml: Path | str | None = None):
        return self.annotation.open_training_dialog(data_yaml)

    # ==========================================================================================================
    # settings, errors, drag and drop, closing
    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self.store, parent=self)
        dialog.accepted.connect(lambda: self.apply_settings(dialog.settings))
        dialog.open()
        return dialog

    def apply_settings(self, settings: GuiSettings) -> None:
        old_conf = self.settings.det_conf
        self.settings = settings
        if self.model.threshold < settings.det_conf or self.model.threshold == old_conf:
            self.model.set_threshold(settings.det_conf)
        self.statusBar().showMessage("Settings saved; they apply to the next analysis.", 5000)

    def show_error(self, title: str, message: str, dialog: bool = True) -> None:
        """Errors never close the window: they go to the status bar and, unless minor, a (non-blocking) dialog."""
        log.warning("%s: %s", title, message)
        self.errors.append(message)
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0] if message else ''}", 15000)
        if dialog:
            if self.error_box is not None:
                self.error_box.close()
            box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.destroyed.connect(lambda *_: setattr(self, "error_box", None))
            self.error_box = box
            box.open()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.opener.accepts(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.opener.drop(event)

    def _wait_for_workers(self) -> None:
        """The workers stop between images; wait for them so that no signal reaches a deleted window. An image in
        progress can take seconds on a CPU: say so (status bar, busy cursor) rather than look frozen."""
        if self.analysis_pool.activeThreadCount() or self.io_pool.activeThreadCount():
            self.statusBar().showMessage("Closing: waiting for the image in progress to finish…")
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            # paint the message before the wait; no user input now (a shortcut must not run mid-close)
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
            try:
                self.analysis_pool.waitForDone(60_000)
                self.io_pool.waitForDone(10_000)
            finally:
                QApplication.restoreOverrideCursor()

    def closeEvent(self, event) -> None:
        self.metadata.commit()                    # a sample ID still being typed is kept too
        if not self.cases.confirm_close():        # asks only when something could not be saved
            event.ignore()
            return
        self.analysis.close()
        self.exports.close()
        for worker in list(Worker.running):      # thumbnails and image loads of this window stop too
            if worker.pool in (self.analysis_pool, self.io_pool):
                worker.quit()
        if self.tabs.currentWidget() is self.eval_view:
            self.tabs.setCurrentIndex(0)          # bring the docks back before their layout is saved
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.setValue("window/state", self.saveState())
        self._wait_for_workers()
        # the result of the image that was in progress is saved too (its signal); user input waits
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        self.annotation.close()
        self.cases.close_case()
        super().closeEvent(event)
