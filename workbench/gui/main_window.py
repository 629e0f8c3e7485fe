"""The main window: session images on the left, the smear viewer in the middle, counts / cell / gallery on the
right, an evaluation tab, menus, toolbar and shortcuts.

The window only wires widgets to the plain-Python SessionModel and starts workers; it holds no model logic.
Importing this module imports neither torch nor ultralytics nor the model packages: the models are loaded by the
analysis worker, in its thread, the first time an analysis runs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QSettings, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QDoubleSpinBox, QFileDialog, QHBoxLayout,
                               QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton, QSlider, QSplitter,
                               QStyle, QTabWidget, QToolBar, QVBoxLayout, QWidget)

from workbench.errors import WorkbenchError
from workbench.gui.editing import BoxEditor
from workbench.gui.eval_view import EvalView
from workbench.gui.panels import CellDetailsPanel, CountsPanel, GalleryPanel, ImageListPanel, MetadataPanel
from workbench.gui.session import ANALYSED, FAILED, QUEUED, REVIEWED, ImageRecord, SessionModel, _user_name
from workbench.gui.settings_dialog import GuiSettings, SettingsDialog, load_settings
from workbench.gui.style import CLASS_MAP, label_colour
from workbench.gui.viewer import SmearScene, SmearView
from workbench.gui.workers import AnalysisWorker, ImageLoadWorker, TaskWorker, ThumbnailWorker
from workbench.images import DEFAULT_EXTENSIONS

log = logging.getLogger(__name__)

MAX_RECENT = 10
IMAGE_CACHE = 3          # decoded images kept for quick next / previous
SLIDER_STEPS = 1000      # threshold slider resolution (0.001)
IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in DEFAULT_EXTENSIONS) + ");;All files (*)"

SHORTCUTS_HELP = """<table>
<tr><td><b>Ctrl+O</b> / <b>Ctrl+Shift+O</b></td><td>open images / a folder</td></tr>
<tr><td><b>PgDown</b> / <b>PgUp</b> (Alt+→ / Alt+←)</td><td>next / previous image</td></tr>
<tr><td><b>+</b> / <b>−</b>, wheel</td><td>zoom in / out</td></tr>
<tr><td><b>F</b> (Ctrl+0) / <b>1</b> (Ctrl+1)</td><td>fit the image / 100 %</td></tr>
<tr><td><b>L</b></td><td>show / hide box labels</td></tr>
<tr><td><b>Ctrl+R</b> (F5)</td><td>analyse the current image</td></tr>
<tr><td><b>Ctrl+Shift+R</b></td><td>analyse the selected images</td></tr>
<tr><td><b>Ctrl+Alt+R</b> (Shift+F5)</td><td>analyse all images</td></tr>
<tr><td><b>Esc</b></td><td>cancel the analysis</td></tr>
<tr><td><b>Ctrl+M</b></td><td>mark the image reviewed</td></tr>
<tr><td><b>E</b></td><td>edit boxes (drag: draw / move; corner: resize)</td></tr>
<tr><td><b>Del</b>, <b>1</b> / <b>2</b></td><td>in edit mode: delete / relabel blast / normal</td></tr>
<tr><td><b>Ctrl+C</b> / <b>Ctrl+V</b>, <b>Ctrl+A</b></td><td>in edit mode: copy / paste boxes, select all</td></tr>
<tr><td><b>Ctrl+Z</b> / <b>Ctrl+Shift+Z</b></td><td>undo / redo a box edit</td></tr>
<tr><td><b>Ctrl+E</b> / <b>Ctrl+Shift+E</b></td><td>export the image / the session</td></tr>
<tr><td><b>Ctrl+,</b></td><td>analysis settings</td></tr>
</table>"""


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
        self._analysis: AnalysisWorker | None = None
        self._job_records: list[ImageRecord] = []
        self._job_previous: list[str] = []
        self._job_done = 0
        self._job_failed = False
        self._export: TaskWorker | None = None
        self._workers: set[Any] = set()     # running QRunnables (their signal objects must outlive the run)
        self._image_cache: OrderedDict[str, QImage] = OrderedDict()
        self._image_request = 0
        self._shown_result = None
        self.current_image: QImage | None = None
        self.project = None                 # the annotation ProjectStore (opened on the first edit or review)
        self.training_dialog = None

        self.setWindowTitle("Smear Workbench")
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self._build_central(eval_root)
        self._build_docks()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_status_bar()
        self.model.subscribe(self._on_model)
        self._update_actions()
        self._restore_window_state()

    # ==========================================================================================================
    # construction
    def _build_central(self, eval_root: Path | None) -> None:
        self.scene = SmearScene(self)
        self.view = SmearView(self.scene)
        self.view.setMinimumSize(320, 240)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fff3cd; color: #5c4400; padding: 6px; border: 1px solid #e0c36a;")
        self.banner.hide()
        self._banner_kind = ""
        self.placeholder = QLabel("Open smear images (Ctrl+O), a folder (Ctrl+Shift+O) or drop them here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setMinimumWidth(80)
        self.slider.setToolTip("Show cells whose detector confidence reaches this value (no re-analysis)")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setKeyboardTracking(False)
        self.labels_box = QCheckBox("Labels")
        self.labels_box.setChecked(True)
        self.labels_box.setToolTip("Show label and confidence on each box (L)")
        self.shown_label = QLabel("")
        legend = QLabel(" &nbsp; ".join(f"<span style='color:{label_colour(label).name()}'>■</span> {label}"
                                        for label in CLASS_MAP))
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 2)
        confidence = QLabel("Confidence ≥")
        confidence.setToolTip(self.slider.toolTip())
        bar.addWidget(confidence)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.threshold_spin)
        bar.addSpacing(8)
        bar.addWidget(self.labels_box)
        bar.addSpacing(8)
        bar.addWidget(self.shown_label)
        bar.addStretch(0)
        bar.addSpacing(8)
        bar.addWidget(legend)

        review = QWidget()
        layout = QVBoxLayout(review)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.view, 1)
        self.view.hide()

        self.eval_view = EvalView(eval_root)
        self.eval_view.setMinimumSize(360, 300)   # it gets the whole window when shown (the docks hide)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(review, "Review")
        self.tabs.addTab(self.eval_view, "Evaluation")
        self.setCentralWidget(self.tabs)
        self.tabs.currentChanged.connect(self._on_tab_changed)

        self._set_threshold_widgets(self.model.threshold)
        self.slider.valueChanged.connect(lambda v: self.model.set_threshold(v / SLIDER_STEPS))
        self.threshold_spin.valueChanged.connect(self.model.set_threshold)
        self.labels_box.toggled.connect(self.set_labels_visible)
        self.scene.cellHovered.connect(self._on_cell_hovered)
        self.view.cellClicked.connect(self.select_cell)
        self.view.zoomChanged.connect(lambda s: self.zoom_label.setText(f"Zoom {100 * s:.0f} %"))
        self.editor = BoxEditor(self.view, labels=list(CLASS_MAP), parent=self)
        self.editor.edited.connect(self._on_boxes_edited)

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
            box = QWidget()
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(2, 2, 2, 2)
            box_layout.setSpacing(0)
            heading = QLabel(f"<b>{title}</b>")
            heading.setContentsMargins(4, 2, 4, 0)
            box_layout.addWidget(heading)
            box_layout.addWidget(widget, 1)
            right.addWidget(box)
        right.setStretchFactor(0, 0)
        right.setStretchFactor(1, 0)
        right.setStretchFactor(2, 1)
        right.setChildrenCollapsible(False)
        self.cells_dock = self._dock("Cells", "cells_dock", right, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock_visibility: dict[QDockWidget, bool] = {}
        self.gallery.cellActivated.connect(self._on_gallery_cell)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                         QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                         QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcuts: Sequence[str | QKeySequence.StandardKey] = (),
                icon: QStyle.StandardPixmap | None = None, tip: str = "", checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        keys = [QKeySequence(s) for s in shortcuts]
        if keys:
            action.setShortcuts(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        tip = tip or text.replace("&", "").rstrip("…")
        if keys:
            tip += f" ({keys[0].toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        P = QStyle.StandardPixmap
        self.act_open = self._action("&Open images…", self.open_images_dialog, [QKeySequence.StandardKey.Open],
                                     P.SP_DialogOpenButton, "Open smear images")
        self.act_open_folder = self._action("Open &folder…", self.open_folder_dialog, ["Ctrl+Shift+O"],
                                            P.SP_DirOpenIcon, "Open every image of a folder")
        self.act_open_results = self._action("Open &results…", self.open_results_dialog, [],
                                             None, "Open a results.json saved by an export or `workbench analyze`")
        self.act_export_current = self._action("&Export image…", lambda: self.export(current_only=True),
                                               ["Ctrl+E"], None, "Export the current image's results and PNG")
        self.act_export_session = self._action("Export &session…", lambda: self.export(current_only=False),
                                               ["Ctrl+Shift+E"], P.SP_DialogSaveButton,
                                               "Export the session: results.json, cells.csv, annotated PNGs")
        self.act_quit = self._action("&Quit", self.close, [QKeySequence.StandardKey.Quit])
        self.act_analyse = self._action("&Analyse image", self.analyse_current, ["Ctrl+R", "F5"], P.SP_MediaPlay,
                                        "Analyse the current image")
        self.act_analyse_selection = self._action("Analyse &selection", self.analyse_selection, ["Ctrl+Shift+R"],
                                                  None, "Analyse the images selected in the list")
        self.act_analyse_all = self._action("Analyse a&ll", self.analyse_all, ["Ctrl+Alt+R", "Shift+F5"],
                                            P.SP_MediaSeekForward, "Analyse every image of the session")
        self.act_cancel = self._action("&Cancel analysis", self.cancel_analysis, ["Esc"], P.SP_MediaStop,
                                       "Stop after the current image")
        self.act_review = self._action("Mark &reviewed", self.toggle_reviewed, ["Ctrl+M"], P.SP_DialogApplyButton,
                                       "Mark the current image reviewed")
        self.act_next = self._action("&Next image", self.model.next, ["PgDown", "Alt+Right"], P.SP_ArrowForward)
        self.act_previous = self._action("&Previous image", self.model.previous, ["PgUp", "Alt+Left"],
                                         P.SP_ArrowBack)
        self.act_zoom_in = self._action("Zoom &in", self.view.zoom_in, ["Ctrl++", "+", "="], None)
        self.act_zoom_out = self._action("Zoom &out", self.view.zoom_out, ["Ctrl+-", "-"], None)
        self.act_fit = self._action("&Fit image", self.view.fit, ["F", "Ctrl+0"], None)
        self.act_actual = self._action("&100 %", self.view.actual_size, ["1", "Ctrl+1"], None)
        self.act_labels = self._action("Show &labels", self.set_labels_visible, ["L"], None, checkable=True)
        self.act_labels.setChecked(True)
        self.act_settings = self._action("Analysis &settings…", self.open_settings, ["Ctrl+,"],
                                         P.SP_FileDialogDetailedView, "Weights and thresholds")
        self.act_edit = self._action("&Edit boxes", self.set_edit_mode, ["E"], None,
                                     "Draw, move, resize, relabel and delete boxes", checkable=True)
        self.act_undo = self.editor.undo_action
        self.act_redo = self.editor.redo_action
        for action in (self.act_undo, self.act_redo):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)
        self.act_operator = self._action("Set &operator name…", self.operator_dialog, [], None,
                                         "The name recorded with every edit and review")
        self.act_open_project = self._action("Open annotation &project…", self.open_project_dialog, [], None,
                                             "Keep labels, reviews and the audit trail in a chosen folder's "
                                             "project.sqlite (default: next to the images)")
        self.act_import_labels = self._action("&Import labels…", self.import_labels_dialog, [], None,
                                              "Replace the image's boxes by a YOLO txt, VOC xml, COCO json or "
                                              "ALL-IDB point (.xyc) file")
        self.act_import_folder = self._action("Import labels for &all images…", self.import_folder_dialog, [], None,
                                              "Replace the boxes of every session image that has a label file "
                                              "(<stem>.xml / .txt / .xyc or a COCO .json) in a folder")
        self.act_export_training = self._action("Export &training set…", self.export_training_dialog, [], None,
                                                "Reviewed images as YOLO (detector), crops per class, COCO and VOC")
        self.act_train = self._action("T&rain model…", self.open_training_dialog, [], None,
                                      "Run `workbench train detector` / `train classifier` on an exported "
                                      "training set")
        self.act_eval = self._action("&Evaluation runs", lambda: self.tabs.setCurrentWidget(self.eval_view), [])
        self.act_shortcuts = self._action("&Keyboard shortcuts", self.show_shortcuts, [])
        self.act_about = self._action("&About", self.show_about, [])

    def _build_menus_and_toolbar(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.act_open, self.act_open_folder, self.act_open_results])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.act_export_current, self.act_export_session])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        view_menu = menu.addMenu("&View")
        view_menu.addActions([self.act_zoom_in, self.act_zoom_out, self.act_fit, self.act_actual])
        view_menu.addSeparator()
        view_menu.addActions([self.act_labels, self.act_next, self.act_previous])
        view_menu.addSeparator()
        view_menu.addActions([self.images_dock.toggleViewAction(), self.cells_dock.toggleViewAction(),
                              self.act_eval])
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addActions([self.act_undo, self.act_redo])
        edit_menu.addSeparator()
        edit_menu.addActions([self.act_edit, self.act_review, self.act_import_labels, self.act_import_folder])
        edit_menu.addSeparator()
        edit_menu.addActions([self.act_operator, self.act_open_project, self.act_export_training, self.act_train])
        analyse_menu = menu.addMenu("&Analyse")
        analyse_menu.addActions([self.act_analyse, self.act_analyse_selection, self.act_analyse_all,
                                 self.act_cancel])
        analyse_menu.addSeparator()
        analyse_menu.addActions([self.act_review, self.act_settings])
        help_menu = menu.addMenu("&Help")
        help_menu.addActions([self.act_shortcuts, self.act_about])

        toolbar = QToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.act_open, self.act_open_folder])
        toolbar.addSeparator()
        toolbar.addActions([self.act_analyse, self.act_analyse_all, self.act_cancel])
        toolbar.addSeparator()
        toolbar.addActions([self.act_previous, self.act_next])
        toolbar.addSeparator()
        toolbar.addActions([self.act_zoom_out, self.act_zoom_in, self.act_fit, self.act_actual])
        toolbar.addSeparator()
        toolbar.addActions([self.act_review, self.act_export_session, self.act_settings])
        for action in (self.act_previous, self.act_next):
            button = toolbar.widgetForAction(action)
            if button is not None:
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for action, text in ((self.act_zoom_out, "−"), (self.act_zoom_in, "+"), (self.act_actual, "1:1"),
                             (self.act_fit, "Fit")):
            action.setIconText(text)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m images")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_analysis)
        self.cancel_button.hide()
        self.zoom_label = QLabel("")
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
        """The evaluation view gets the whole window: the review docks hide while it is shown."""
        docks = (self.images_dock, self.cells_dock)
        if self.tabs.widget(index) is self.eval_view:
            self._dock_visibility = {dock: dock.isVisible() for dock in docks}
            for dock in docks:
                dock.hide()
        else:
            for dock in docks:
                dock.setVisible(self._dock_visibility.get(dock, True))

    # ==========================================================================================================
    # opening images
    @property
    def extensions(self) -> list[str]:
        try:
            return list(self.settings.to_config()["images"]["extensions"])
        except WorkbenchError:
            return list(DEFAULT_EXTENSIONS)

    def open_paths(self, paths: Iterable[Path | str]) -> list[ImageRecord]:
        """Add images / folders to the session (results.json files are opened as saved results)."""
        paths = [Path(p) for p in paths]
        results = [p for p in paths if p.suffix.lower() == ".json"]
        images = [p for p in paths if p.suffix.lower() != ".json"]
        added: list[ImageRecord] = []
        for path in results:
            added += self.open_results(path)
        if images:
            new, problems = self.model.add_paths(images, self.extensions)
            added += new
            if problems:
                self.show_error("Some inputs could not be opened", "\n".join(problems), dialog=not new)
            if new:
                self.statusBar().showMessage(f"Opened {len(new)} image(s)", 5000)
        self._add_recent([p for p in paths if p.exists()])
        return added

    def open_results(self, path: Path) -> list[ImageRecord]:
        from workbench.results import load_results

        try:
            batch = load_results(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.show_error("Cannot open results", f"{path}: {exc}")
            return []
        added = self.model.load_batch(batch, base=Path(path).parent)
        self.statusBar().showMessage(f"Opened results of {len(batch.images)} image(s) from {path}", 5000)
        return added

    def open_images_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open smear images", self._last_folder(), IMAGE_FILTER)
        if files:
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of smear images", self._last_folder())
        if folder:
            self.open_paths([folder])

    def open_results_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open results", self._last_folder(), "Results (*.json)")
        if path:
            self.open_paths([path])

    def _last_folder(self) -> str:
        recent = self.recent_paths()
        if recent:
            first = Path(recent[0])
            return str(first if first.is_dir() else first.parent)
        return ""

    def recent_paths(self) -> list[str]:
        value = self.store.value("recent/paths") or []
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value]

    def _add_recent(self, paths: Sequence[Path]) -> None:
        recent = self.recent_paths()
        for path in reversed(paths):
            text = str(Path(path).resolve())
            if text in recent:
                recent.remove(text)
            recent.insert(0, text)
        self.store.setValue("recent/paths", recent[:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_paths()
        for text in recent:
            action = self.recent_menu.addAction(text)
            action.setEnabled(Path(text).exists())
            action.triggered.connect(lambda checked=False, p=text: self.open_paths([p]))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: self.store.setValue("recent/paths", []))
        else:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ==========================================================================================================
    # the session model -> widgets
    def _on_model(self, event: str, payload: Any) -> None:
        if event == "current_changed":
            self._show_record(payload)
            if self.editor.enabled:
                self._attach_editor(payload)
        elif event == "record_changed":
            if payload is self.model.current and payload.result is not self._shown_result:
                self._show_result(payload)
                if self.editor.enabled:
                    self.editor.set_image(self.editor.image_id)
            if payload is self.model.current:
                self._update_title()
        elif event == "records_added":
            self._start_thumbnails(payload)
        elif event == "threshold_changed":
            self._apply_threshold(payload)
        self._update_actions()

    def _update_title(self) -> None:
        record = self.model.current
        if record is None:
            self.setWindowTitle("Smear Workbench")
            return
        sample = f" · {record.sample_id}" if record.sample_id else ""
        self.setWindowTitle(f"{record.name}{sample} — Smear Workbench")

    def _show_record(self, record: ImageRecord | None) -> None:
        self._update_title()
        self.details.show_cell(None)
        self._set_banner(None)
        if record is None:
            self.scene.set_image(None)
            self.scene.set_result(None)
            self._shown_result = None
            self.gallery.set_cells([], None)
            self.view.hide()
            self.placeholder.show()
            return
        self.placeholder.hide()
        self.view.show()
        key = str(record.path)
        self._image_request += 1
        cached = self._image_cache.get(key)
        self.current_image = cached
        self.scene.set_image(cached)
        self._show_result(record)
        if cached is not None or record.analysed:
            self.view.fit()
        if cached is not None:
            self._image_cache.move_to_end(key)
            self.imageShown.emit(key)
            return
        worker = ImageLoadWorker(record.path, self._image_request, self.settings.max_pixels)
        worker.signals.loaded.connect(self._on_image_loaded)
        worker.signals.failed.connect(self._on_image_failed)
        self._start(self.io_pool, worker)
        self.statusBar().showMessage(f"Loading {record.name}…")

    def _show_result(self, record: ImageRecord) -> None:
        """(Re)build the cell items of the current record: a new image or a new analysis."""
        self._shown_result = record.result
        self.scene.set_result(record.result)
        self.scene.set_threshold(self.model.threshold)
        self.gallery.threshold = self.model.threshold
        self.gallery.set_cells(record.result.cells if record.analysed else [], self.current_image)
        self.details.show_cell(None)
        if record.status == FAILED and record.error:
            self._set_banner(f"This image could not be analysed: {record.error}", "analysis")
        elif self._banner_kind == "analysis":
            self._set_banner(None)
        self._update_shown_label()

    def _set_banner(self, text: str | None, kind: str = "") -> None:
        """A warning strip above the view (an image that cannot be shown or analysed); None hides it."""
        self._banner_kind = kind if text else ""
        self.banner.setText(text or "")
        self.banner.setVisible(bool(text))

    def _on_image_loaded(self, path: str, request_id: int, image: QImage) -> None:
        self._image_cache[path] = image
        while len(self._image_cache) > IMAGE_CACHE:
            self._image_cache.popitem(last=False)
        if request_id != self._image_request:
            return          # the user moved on to another image meanwhile
        self.current_image = image
        self.scene.set_image(image)
        if self.view.fit_mode:
            self.view.fit()
        record = self.model.current
        if record is not None and record.analysed:
            self.gallery.set_cells(record.result.cells, image)
            if self.scene.selected_id >= 0:
                self.gallery.select(self.scene.selected_id)
        self.statusBar().showMessage(f"{Path(path).name}: {image.width()} × {image.height()} px", 5000)
        self.imageShown.emit(path)

    def _on_image_failed(self, path: str, request_id: int, message: str) -> None:
        if request_id != self._image_request:
            return
        self._set_banner(f"Cannot show this image: {message}", "image")
        self.show_error("Cannot open image", message, dialog=False)
        self.imageShown.emit(path)

    def _start_thumbnails(self, records: list[ImageRecord]) -> None:
        by_path = {str(r.path): r for r in records}
        worker = ThumbnailWorker(list(by_path), size=40)
        worker.signals.ready.connect(lambda path, image: self.image_list.set_thumbnail(by_path[path], image)
                                     if path in by_path else None)
        self._start(self.io_pool, worker)

    def _start(self, pool: QThreadPool, worker) -> None:
        """Run a worker, keeping it (and its signal object) alive until it reports its end."""
        self._workers.add(worker)

        def forget(*_args) -> None:
            self._workers.discard(worker)

        for name in ("finished", "loaded", "failed", "done"):
            signal = getattr(worker.signals, name, None)
            if signal is not None:
                signal.connect(forget)
        pool.start(worker)

    # -- threshold, labels, cells ------------------------------------------------------------------------------
    def _set_threshold_widgets(self, threshold: float) -> None:
        for widget in (self.slider, self.threshold_spin):
            widget.blockSignals(True)
        self.slider.setValue(round(threshold * SLIDER_STEPS))
        self.threshold_spin.setValue(threshold)
        for widget in (self.slider, self.threshold_spin):
            widget.blockSignals(False)

    def _apply_threshold(self, threshold: float) -> None:
        self._set_threshold_widgets(threshold)
        self.scene.set_threshold(threshold)
        self.gallery.set_threshold(threshold)
        if self.details.cell is not None and self.details.cell.det_conf < threshold:
            self.details.show_cell(None)
        self._update_shown_label()

    def set_threshold(self, threshold: float) -> None:
        self.model.set_threshold(threshold)

    def _update_shown_label(self) -> None:
        record = self.model.current
        if record is None or not record.analysed:
            self.shown_label.setText("not analysed" if record is not None and record.status != FAILED else "")
            return
        shown = len(self.scene.visible_items())
        self.shown_label.setText(f"{shown} of {len(record.result.cells)} cells shown")

    @property
    def visible_count(self) -> int:
        return len(self.scene.visible_items())

    def set_labels_visible(self, visible: bool) -> None:
        visible = bool(visible)
        self.scene.set_labels_visible(visible)
        for widget in (self.labels_box, self.act_labels):
            widget.blockSignals(True)
            widget.setChecked(visible)
            widget.blockSignals(False)

    def _cell(self, cell_id: int):
        item = self.scene.cell_items.get(cell_id)
        return item.cell if item is not None else None

    def _on_cell_hovered(self, cell_id: int) -> None:
        cell = self._cell(cell_id) if cell_id >= 0 else self._cell(self.scene.selected_id)
        self.details.show_cell(cell, self.current_image)

    def select_cell(self, cell_id: int) -> None:
        self.scene.select_cell(cell_id)
        self.gallery.select(cell_id)
        self.details.show_cell(self._cell(cell_id), self.current_image)

    def _on_gallery_cell(self, cell_id: int) -> None:
        self.select_cell(cell_id)
        self.view.centre_on_cell(cell_id)

    # ==========================================================================================================
    # analysis
    @property
    def analysis_running(self) -> bool:
        return self._analysis is not None

    def analyse_current(self) -> bool:
        record = self.model.current
        return self.analyse_records([record]) if record is not None else False

    def analyse_selection(self) -> bool:
        return self.analyse_records(self.image_list.selected_records() or
                                    ([self.model.current] if self.model.current else []))

    def analyse_all(self) -> bool:
        return self.analyse_records(self.model.records)

    def analyse_records(self, records: Sequence[ImageRecord]) -> bool:
        """Start a background analysis of `records`; False when nothing was started (busy, no images, bad
        settings: the reason is shown)."""
        records = list(dict.fromkeys(records))
        if not records:
            return False
        if self.analysis_running:
            self.statusBar().showMessage("An analysis is already running: cancel it or wait for it to finish.", 5000)
            return False
        try:
            config = self.settings.to_config()
        except WorkbenchError as exc:
            self.show_error("Invalid analysis settings", str(exc))
            return False
        self._job_records = records
        self._job_previous = [r.status for r in records]
        self._job_done = 0
        self._job_failed = False
        for record in records:
            self.model.set_status(record, QUEUED)
        worker = AnalysisWorker([(str(r.path), r.sample_id) for r in records], config)
        worker.signals.status.connect(lambda text: self.statusBar().showMessage(text))
        worker.signals.result.connect(self._on_analysis_result)
        worker.signals.progress.connect(self._on_analysis_progress)
        worker.signals.failed.connect(self._on_analysis_failed)
        worker.signals.finished.connect(self._on_analysis_finished)
        self._analysis = worker
        self.progress.setRange(0, len(records))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self._update_actions()
        self._start(self.analysis_pool, worker)
        return True

    def cancel_analysis(self) -> None:
        if self._analysis is not None:
            self._analysis.cancel()
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling after the current image…")

    def _on_analysis_result(self, index: int, result) -> None:
        if not 0 <= index < len(self._job_records):
            return
        record = self._job_records[index]
        self.model.set_result(record, result)
        self._job_done += 1
        if not result.ok:
            self.statusBar().showMessage(f"{record.name}: {result.error}", 8000)

    def _on_analysis_progress(self, done: int, total: int) -> None:
        self.progress.setValue(done)

    def _on_analysis_failed(self, message: str) -> None:
        self._job_failed = True
        self.show_error("Analysis failed", f"{message}\n\nCheck the weights and thresholds in Analyse → "
                                           "Analysis settings (Ctrl+,).")

    def _on_analysis_finished(self, cancelled: bool) -> None:
        for record, previous in zip(self._job_records, self._job_previous):
            if record.status == QUEUED:
                self.model.set_status(record, previous)
        done, total = self._job_done, len(self._job_records)
        self._analysis = None
        self._job_records, self._job_previous = [], []
        self.progress.hide()
        self.cancel_button.hide()
        failed = sum(1 for r in self.model.records if r.status == FAILED)
        text = f"Analysed {done} of {total} image(s)" + (" — cancelled" if cancelled else "")
        if failed:
            text += f" · {failed} image(s) failed"
        if not self._job_failed:    # a failed job keeps its error in the status bar
            self.statusBar().showMessage(text, 10000)
        self._update_actions()
        self.analysisFinished.emit(cancelled)

    def toggle_reviewed(self) -> None:
        record = self.model.current
        if record is not None and record.analysed:
            reviewed = record.status != REVIEWED
            if self.project is not None or self.editor.enabled:
                entry = self._project_entry(record)
                self.project.mark_reviewed(entry.id, reviewed, operator=self.operator)
            self.model.mark_reviewed(record, reviewed, user=self.operator)

    # ==========================================================================================================
    # annotation: edit mode, project store, label import, training set export, retraining
    @property
    def operator(self) -> str:
        """Who is annotating: the `annotation/operator` setting, else the login name."""
        name = self.store.value("annotation/operator")
        return str(name) if name else _user_name()

    def set_operator(self, name: str) -> None:
        name = name.strip()
        self.store.setValue("annotation/operator", name)
        if self.project is not None:
            self.project.operator = self.operator

    def operator_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        name, ok = QInputDialog.getText(self, "Operator", "Name recorded with every edit and review:",
                                        text=self.operator)
        if ok:
            self.set_operator(name)

    def open_project(self, folder: Path | str):
        """Use `folder/project.sqlite` for labels, reviews and the audit trail (created if missing)."""
        from workbench.annotation.store import ProjectStore

        if self.project is not None:
            self.project.close()
        self.project = ProjectStore.open(folder, operator=self.operator, labels=list(CLASS_MAP))
        self.editor.store = self.project
        self.editor.labels = self.project.labels
        if self.editor.enabled:
            self._attach_editor(self.model.current)
        self.statusBar().showMessage(f"Annotation project: {self.project.path}", 5000)
        return self.project

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Annotation project folder", self._last_folder())
        if folder:
            self.open_project(folder)

    def _project_entry(self, record: ImageRecord):
        """The record's image in the project (added, with the model's boxes at the display threshold, the first
        time: model-assisted labelling)."""
        if self.project is None:
            self.open_project(record.path.resolve().parent)
        entry = self.project.find_image(record.path)
        if entry is None:
            width, height = self._record_size(record)
            entry = self.project.add_image(record.path, width, height)
            if record.analysed and record.result.cells:
                self.project.replace_cells(entry.id, record.cells(self.model.threshold), "model predictions",
                                           "model")
        return entry

    def _record_size(self, record: ImageRecord) -> tuple[int, int]:
        if record.result is not None and record.result.width:
            return record.result.width, record.result.height
        if self.current_image is not None and record is self.model.current:
            return self.current_image.width(), self.current_image.height()
        return 0, 0

    def _attach_editor(self, record: ImageRecord | None) -> None:
        """Show the project's labels of `record` in the scene and point the editor at them."""
        from workbench.results import SmearResult

        if record is None:
            self.editor.set_image(None)
            return
        entry = self._project_entry(record)
        cells = self.project.cells(entry.id)
        current = record.result.cells if record.analysed else None
        if current is None or [c.cell_id for c in cells] != [c.cell_id for c in current] or cells != current:
            width, height = self._record_size(record)
            if record.result is None or not record.result.ok:
                record.result = SmearResult(image_path=str(record.path), width=entry.width or width,
                                            height=entry.height or height)
                record.error = None
                record.status = ANALYSED
            record.result.cells = cells
            record.result.recount()
            self._shown_result = None                  # rebuild the cell items from the project's labels
        if entry.status == "reviewed" and record.status != REVIEWED:
            record.reviewed_by, record.reviewed_at, record.status = entry.reviewed_by, entry.reviewed_at, REVIEWED
        self.model.notify("record_changed", record)
        self.editor.set_image(entry.id)

    def set_edit_mode(self, enabled: bool) -> None:
        enabled = bool(enabled)
        if enabled and self.model.current is None:
            enabled = False
        self.act_edit.blockSignals(True)
        self.act_edit.setChecked(enabled)
        self.act_edit.blockSignals(False)
        if enabled:
            self._attach_editor(self.model.current)
        self.editor.set_enabled(enabled)
        self.view.setFocus()
        self.statusBar().showMessage("Edit mode: drag to draw or move boxes, corners resize, Del deletes, "
                                     "1/2 relabel, Ctrl+Z undoes" if enabled else "Edit mode off", 8000)

    def _on_boxes_edited(self) -> None:
        record = self.model.current
        if record is None or record.result is None:
            return
        record.result.recount()
        self.model.notify("record_changed", record)
        self.gallery.set_cells(record.result.cells, self.current_image)
        self._update_shown_label()

    def import_labels(self, path: Path | str) -> bool:
        """Replace the current image's boxes by a label file (undoable, audited)."""
        from workbench.annotation import importers

        record = self.model.current
        if record is None:
            return False
        path = Path(path)
        if not self.editor.enabled:
            self.set_edit_mode(True)
        labels = self.project.labels
        try:
            suffix = path.suffix.lower()
            if suffix == ".xml":
                cells = importers.import_voc(path)[3]
            elif suffix == ".txt":
                width, height = self._record_size(record)
                cells = importers.import_yolo(path, width, height, labels)
            elif suffix == ".json":
                coco = importers.import_coco(path)
                cells = coco[record.name][2] if record.name in coco else []
            elif suffix == ".xyc":
                import cv2

                bgr = cv2.imread(str(record.path), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise ValueError(f"{record.path}: cannot read the image")
                cells, missed = importers.import_points(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                                                        importers.read_points(path))
                if missed:
                    self.statusBar().showMessage(f"{missed} point(s) gave no white-cell box", 8000)
            else:
                raise ValueError(f"{path.name}: not a YOLO .txt, VOC .xml, COCO .json or ALL-IDB .xyc file")
        except (OSError, ValueError, KeyError) as exc:
            self.show_error("Cannot import labels", str(exc))
            return False
        for label in dict.fromkeys(c.label for c in cells):
            if label not in self.project.labels:
                self.project.add_label(label)
        self.editor.labels = self.project.labels
        self.editor.replace_all(cells, f"Import {path.name}")
        return True

    def import_labels_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import labels", self._last_folder(),
                                              "Label files (*.txt *.xml *.json *.xyc);;All files (*)")
        if path:
            self.import_labels(path)

    def import_label_folder(self, folder: Path | str) -> dict[str, int]:
        """Import the label files of a folder for every session image into the project (audited; not undoable)."""
        from workbench.annotation.importers import import_label_folder

        if not self.model.records:
            return {}
        if self.project is None:
            self.open_project((self.model.current or self.model.records[0]).path.resolve().parent)
        try:
            counts = import_label_folder(self.project, [r.path for r in self.model.records], folder)
        except (OSError, ValueError, KeyError) as exc:
            self.show_error("Cannot import labels", str(exc))
            return {}
        self.editor.labels = self.project.labels
        if self.editor.enabled:
            self._attach_editor(self.model.current)
        self.statusBar().showMessage(f"Imported labels of {len(counts)} image(s) "
                                     f"({sum(counts.values())} boxes); edit mode shows them", 8000)
        return counts

    def import_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of label files", self._last_folder())
        if folder:
            self.import_label_folder(folder)

    def export_training_set(self, out: Path | str) -> bool:
        """Export the project's reviewed images in the background: detector/ (YOLO, one class wbc),
        classifier/ (crops per class), coco.json and voc/, all with the same split by image."""
        from workbench.annotation import exporters
        from workbench.annotation.store import ProjectStore

        if self.project is None:
            self.show_error("Nothing to export", "Review some images first (edit mode, Ctrl+M).", dialog=False)
            return False
        if self._export is not None:
            self.statusBar().showMessage("An export is already running.", 5000)
            return False
        out, db_path = Path(out), self.project.path

        def run(progress, cancel):
            with ProjectStore(db_path) as store:         # sqlite connections stay in their thread
                data = exporters.export_yolo(store, out / "detector", single_class="wbc")
                exporters.export_crops(store, out / "classifier")
                exporters.export_coco(store, out / "coco.json")
                exporters.export_voc(store, out / "voc")
            return [data]

        worker = TaskWorker(run)
        worker.signals.done.connect(self._on_training_export_done)
        worker.signals.failed.connect(self._on_export_failed)
        self._export = worker
        self.statusBar().showMessage(f"Exporting the training set to {out}…")
        self._start(self.io_pool, worker)
        return True

    def _on_training_export_done(self, written: list[Path]) -> None:
        self._export = None
        self.last_training_data = written[0]
        self.statusBar().showMessage(f"Training set exported: {written[0]}", 10000)
        self.exportFinished.emit(written)

    def export_training_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the training set into folder", self._last_folder())
        if folder:
            self.export_training_set(folder)

    def open_training_dialog(self, data_yaml: Path | str | None = None):
        from workbench.gui.training import TrainingDialog

        data_yaml = data_yaml or getattr(self, "last_training_data", None)
        if self.training_dialog is None:
            self.training_dialog = TrainingDialog(data_yaml, parent=self)
        if data_yaml:
            self.training_dialog.set_export(data_yaml)
        self.training_dialog.show()
        return self.training_dialog

    # ==========================================================================================================
    # export
    def export(self, current_only: bool = False, out: Path | None = None, png: bool = True) -> bool:
        records = ([self.model.current] if self.model.current else []) if current_only else self.model.records
        records = [r for r in records if r.result is not None]
        if not records:
            self.show_error("Nothing to export", "Analyse the image(s) first.", dialog=False)
            return False
        if self._export is not None:
            self.statusBar().showMessage("An export is already running.", 5000)
            return False
        if out is None:
            folder = QFileDialog.getExistingDirectory(self, "Export results into folder", self._last_folder())
            if not folder:
                return False
            out = Path(folder)
        from workbench.gui.export import export_batch

        batch = self.model.to_batch(records)
        try:
            font_scale = self.settings.to_config()["output"]["font_scale"]
        except WorkbenchError as exc:
            self.show_error("Invalid settings", str(exc))
            return False
        worker = TaskWorker(lambda progress, cancel: export_batch(batch, out, png, font_scale,
                                                                  self.settings.max_pixels, progress, cancel))
        worker.signals.done.connect(self._on_export_done)
        worker.signals.failed.connect(self._on_export_failed)
        self._export = worker
        self.statusBar().showMessage(f"Exporting {len(records)} image(s) to {out}…")
        self._start(self.io_pool, worker)
        return True

    def _on_export_done(self, written: list[Path]) -> None:
        self._export = None
        folder = written[0].parent if written else ""
        self.statusBar().showMessage(f"Exported {len(written)} file(s) to {folder}", 10000)
        self.exportFinished.emit(written)

    def _on_export_failed(self, message: str) -> None:
        self._export = None
        self.show_error("Export failed", message)
        self.exportFinished.emit(message)

    # ==========================================================================================================
    # settings, help, errors
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

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", SHORTCUTS_HELP,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_about(self) -> None:
        from workbench import __version__

        box = QMessageBox(QMessageBox.Icon.Information, "About Smear Workbench",
                          f"<b>Smear Workbench {__version__}</b><br>White blood cell detection (YOLOv8) and ALL "
                          "blast / normal classification (EfficientNet-B3) for peripheral blood smears.<br><br>"
                          "<b>Research use only. Not a medical device; not for diagnosis.</b><br>"
                          "Licence: AGPL-3.0-or-later.", QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

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

    def _update_actions(self) -> None:
        record = self.model.current
        running = self.analysis_running
        has_records = bool(self.model.records)
        self.act_analyse.setEnabled(record is not None and not running)
        self.act_analyse_selection.setEnabled(has_records and not running)
        self.act_analyse_all.setEnabled(has_records and not running)
        self.act_cancel.setEnabled(running)
        self.act_review.setEnabled(record is not None and record.analysed)
        self.act_edit.setEnabled(record is not None and not running)
        self.act_import_labels.setEnabled(record is not None and not running)
        self.act_import_folder.setEnabled(has_records and not running)
        self.act_review.setText("Mark &unreviewed" if record is not None and record.status == REVIEWED
                                else "Mark &reviewed")
        self.act_export_current.setEnabled(record is not None and record.result is not None)
        self.act_export_session.setEnabled(any(r.result is not None for r in self.model.records))
        self.act_next.setEnabled(record is not None and self.model.current_index < len(self.model.records) - 1)
        self.act_previous.setEnabled(record is not None and self.model.current_index > 0)

    def closeEvent(self, event) -> None:
        if self.training_dialog is not None:
            self.training_dialog.stop()
        if self._analysis is not None:
            self._analysis.cancel()
        for worker in list(self._workers):
            if hasattr(worker, "cancel"):
                worker.cancel()
        if self.tabs.currentWidget() is self.eval_view:
            self.tabs.setCurrentIndex(0)          # bring the docks back before their layout is saved
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.setValue("window/state", self.saveState())
        # the workers stop between images; wait for them so no signal reaches a deleted window
        self.analysis_pool.waitForDone(60_000)
        self.io_pool.waitForDone(10_000)
        if self.project is not None:
            self.project.close()
            self.project = None
        super().closeEvent(event)
