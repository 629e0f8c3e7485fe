"""The window's actions (menu entries, toolbar buttons, shortcuts), its menus and toolbar, and when each action is
enabled. Like Qt Designer's `setupUi`, `create_actions` makes them attributes of the window (`window.act_open`, ...),
so menus, toolbar, shortcuts and tests reach the same objects; each action calls into the window or one of its
controllers (`window.analysis`, `window.annotation`, `window.exports`, `window.opener`)."""

from __future__ import annotations

from typing import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QStyle, QToolBar

from workbench.app.session import REVIEWED

SHORTCUTS_HELP = """<table>
<tr><td><b>Ctrl+O</b> / <b>Ctrl+Shift+O</b></td><td>open images / a folder</td></tr>
<tr><td><b>PgDown</b> / <b>PgUp</b> (Alt+→ / Alt+←)</td><td>next / previous image</td></tr>
<tr><td><b>+</b> / <b>−</b>, wheel</td><td>zoom in / out</td></tr>
<tr><td><b>F</b> (Ctrl+0) / <b>1</b> (Ctrl+1)</td><td>fit the image / 100 %</td></tr>
<tr><td><b>L</b></td><td>show / hide box labels</td></tr>
<tr><td><b>Ctrl+R</b> (F5)</td><td>analyse the current image</td></tr>
<tr><td><b>Ctrl+Shift+R</b></td><td>analyse the selected images</td></tr>
<tr><td><b>Ctrl+Alt+R</b> (Shift+F5)</td><td>analyse the images not analysed yet</td></tr>
<tr><td><b>Ctrl+N</b> / <b>Ctrl+Shift+S</b></td><td>new case / save the case as (every change is saved as you work)</td></tr>
<tr><td><b>Esc</b></td><td>cancel the analysis</td></tr>
<tr><td><b>Ctrl+M</b></td><td>mark the image reviewed</td></tr>
<tr><td><b>E</b></td><td>edit boxes (drag: draw / move; corner: resize)</td></tr>
<tr><td><b>Del</b>, <b>1</b> / <b>2</b></td><td>in edit mode: delete / relabel blast / normal</td></tr>
<tr><td><b>Ctrl+C</b> / <b>Ctrl+V</b>, <b>Ctrl+A</b></td><td>in edit mode: copy / paste boxes, select all</td></tr>
<tr><td><b>Ctrl+Z</b> / <b>Ctrl+Shift+Z</b></td><td>undo / redo a box edit</td></tr>
<tr><td><b>Ctrl+E</b> / <b>Ctrl+Shift+E</b></td><td>export the image / the session</td></tr>
<tr><td><b>Ctrl+,</b></td><td>analysis settings</td></tr>
</table>"""

ABOUT = ("<b>Smear Workbench {version}</b><br>White blood cell detection (YOLOv8) and ALL blast / normal "
         "classification (EfficientNet-B3) for peripheral blood smears.<br><br>"
         "<b>Research use only. Not a medical device; not for diagnosis.</b><br>Licence: AGPL-3.0-or-later.")


def _action(window: QMainWindow, text: str, slot: Callable,
            shortcuts: Sequence[str | QKeySequence.StandardKey] = (),
            icon: QStyle.StandardPixmap | None = None, tip: str = "", checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if icon is not None:
        action.setIcon(window.style().standardIcon(icon))
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
    window.addAction(action)
    return action


def create_actions(w: QMainWindow) -> None:
    P = QStyle.StandardPixmap
    a = _action
    opener, analysis, annotation, exports, view = w.opener, w.analysis, w.annotation, w.exports, w.view
    w.act_open = a(w, "&Open images…", opener.open_images_dialog, [QKeySequence.StandardKey.Open],
                   P.SP_DialogOpenButton, "Open smear images")
    w.act_open_folder = a(w, "Open &folder…", opener.open_folder_dialog, ["Ctrl+Shift+O"], P.SP_DirOpenIcon,
                          "Open every image of a folder")
    w.act_open_results = a(w, "Open &results…", opener.open_results_dialog, [], None,
                           "Open a results.json saved by an export or `workbench analyze`")
    w.act_new_case = a(w, "&New case…", w.cases.new_case_dialog, [QKeySequence.StandardKey.New], None,
                       "Start an empty case under a name (the current one is saved already)")
    w.act_open_case = a(w, "Open &case…", w.cases.open_case_dialog, [], None,
                        "Open a case as it was left: images, analyses, edits, reviews, sample IDs and notes")
    w.act_save_case_as = a(w, "Save case &as…", w.cases.save_as_dialog, [QKeySequence.StandardKey.SaveAs], None,
                           "Keep this case in a folder of your choice, under that folder's name (every change is "
                           "saved as you work; there is nothing else to save)")
    w.act_export_current = a(w, "&Export image…", lambda: exports.export(current_only=True), ["Ctrl+E"], None,
                             "Export the current image's results and PNG")
    w.act_export_session = a(w, "Export &session…", lambda: exports.export(current_only=False), ["Ctrl+Shift+E"],
                             P.SP_DialogSaveButton, "Export the session: results.json, cells.csv, annotated PNGs")
    w.act_quit = a(w, "&Quit", w.close, ["Ctrl+Q"])   # (StandardKey.Quit is empty on some platforms)
    w.act_analyse = a(w, "&Analyse image", w.analyse_current, ["Ctrl+R", "F5"], P.SP_MediaPlay,
                      "Analyse the current image")
    w.act_analyse_selection = a(w, "Analyse &selection", w.analyse_selection, ["Ctrl+Shift+R"], None,
                                "Analyse the images selected in the list")
    w.act_analyse_all = a(w, "Analyse a&ll", w.analyse_all, ["Ctrl+Alt+R", "Shift+F5"], P.SP_MediaSeekForward,
                          "Analyse the images not analysed yet (edits and reviews are never touched)")
    w.act_reanalyse_all = a(w, "Re-analyse all…", w.reanalyse_all, [], None,
                            "Analyse every image again (asks first about edited and reviewed images)")
    w.act_cancel = a(w, "&Cancel analysis", analysis.cancel, ["Esc"], P.SP_MediaStop, "Stop after the current image")
    w.act_review = a(w, "Mark &reviewed", annotation.toggle_reviewed, ["Ctrl+M"], P.SP_DialogApplyButton,
                     "Mark the current image reviewed")
    w.act_next = a(w, "&Next image", w.model.next, ["PgDown", "Alt+Right"], P.SP_ArrowForward)
    w.act_previous = a(w, "&Previous image", w.model.previous, ["PgUp", "Alt+Left"], P.SP_ArrowBack)
    w.act_zoom_in = a(w, "Zoom &in", view.zoom_in, ["Ctrl++", "+", "="])
    w.act_zoom_out = a(w, "Zoom &out", view.zoom_out, ["Ctrl+-", "-"])
    w.act_fit = a(w, "&Fit image", view.fit, ["F", "Ctrl+0"])
    w.act_actual = a(w, "&100 %", view.actual_size, ["1", "Ctrl+1"])
    w.act_labels = a(w, "Show &labels", w.set_labels_visible, ["L"], None, checkable=True)
    w.act_labels.setChecked(True)
    w.act_settings = a(w, "Analysis &settings…", w.open_settings, ["Ctrl+,"], P.SP_FileDialogDetailedView,
                       "Weights and thresholds")
    w.act_edit = a(w, "&Edit boxes", annotation.set_edit_mode, ["E"], None,
                   "Draw, move, resize, relabel and delete boxes", checkable=True)
    w.act_undo = annotation.editor.undo_action
    w.act_redo = annotation.editor.redo_action
    for action in (w.act_undo, w.act_redo):
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        w.addAction(action)
    w.act_operator = a(w, "Set &operator name…", annotation.operator_dialog, [], None,
                       "The name recorded with every edit and review")
    w.act_open_project = a(w, "Open annotation &project…", annotation.open_project_dialog, [], None,
                           "Use a folder's project.sqlite as this session's case (opened if it exists, else the "
                           "case is saved there)")
    w.act_import_labels = a(w, "&Import labels…", annotation.import_labels_dialog, [], None,
                            "Replace the image's boxes by a YOLO txt, VOC xml, COCO json or ALL-IDB point (.xyc) file")
    w.act_import_folder = a(w, "Import labels for &all images…", annotation.import_folder_dialog, [], None,
                            "Replace the boxes of every session image that has a label file "
                            "(<stem>.xml / .txt / .xyc or a COCO .json) in a folder")
    w.act_export_training = a(w, "Export &training set…", annotation.export_training_dialog, [], None,
                              "Reviewed images as YOLO (detector), crops per class, COCO and VOC")
    w.act_train = a(w, "T&rain model…", annotation.open_training_dialog, [], None,
                    "Run `workbench train detector` / `train classifier` on an exported training set")
    w.act_eval = a(w, "&Evaluation runs", lambda: w.tabs.setCurrentWidget(w.eval_view), [])
    w.act_shortcuts = a(w, "&Keyboard shortcuts", lambda: show_message(w, "Keyboard shortcuts", SHORTCUTS_HELP), [])
    w.act_about = a(w, "&About", lambda: show_about(w), [])


def build_menus_and_toolbar(w: QMainWindow) -> QToolBar:
    menu = w.menuBar()
    file_menu = menu.addMenu("&File")
    file_menu.addActions([w.act_open, w.act_open_folder, w.act_open_results])
    w.recent_menu = file_menu.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(lambda: w.opener.fill_recent_menu(w.recent_menu))
    file_menu.addSeparator()
    file_menu.addActions([w.act_new_case, w.act_open_case, w.act_save_case_as])
    file_menu.addSeparator()
    file_menu.addActions([w.act_export_current, w.act_export_session])
    file_menu.addSeparator()
    file_menu.addAction(w.act_quit)
    view_menu = menu.addMenu("&View")
    view_menu.addActions([w.act_zoom_in, w.act_zoom_out, w.act_fit, w.act_actual])
    view_menu.addSeparator()
    view_menu.addActions([w.act_labels, w.act_next, w.act_previous])
    view_menu.addSeparator()
    view_menu.addActions([w.images_dock.toggleViewAction(), w.cells_dock.toggleViewAction(), w.act_eval])
    edit_menu = menu.addMenu("&Edit")
    edit_menu.addActions([w.act_undo, w.act_redo])
    edit_menu.addSeparator()
    edit_menu.addActions([w.act_edit, w.act_review, w.act_import_labels, w.act_import_folder])
    edit_menu.addSeparator()
    edit_menu.addActions([w.act_operator, w.act_open_project, w.act_export_training, w.act_train])
    analyse_menu = menu.addMenu("&Analyse")
    analyse_menu.addActions([w.act_analyse, w.act_analyse_selection, w.act_analyse_all, w.act_reanalyse_all,
                             w.act_cancel])
    analyse_menu.addSeparator()
    analyse_menu.addActions([w.act_review, w.act_settings])
    help_menu = menu.addMenu("&Help")
    help_menu.addActions([w.act_shortcuts, w.act_about])

    toolbar = QToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for group in ([w.act_open, w.act_open_folder], [w.act_analyse, w.act_analyse_all, w.act_cancel],
                  [w.act_previous, w.act_next], [w.act_zoom_out, w.act_zoom_in, w.act_fit, w.act_actual],
                  [w.act_review, w.act_export_session, w.act_settings]):
        if toolbar.actions():
            toolbar.addSeparator()
        toolbar.addActions(group)
    for action in (w.act_previous, w.act_next):
        button = toolbar.widgetForAction(action)
        if button is not None:
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    for action, text in ((w.act_zoom_out, "−"), (w.act_zoom_in, "+"), (w.act_actual, "1:1"), (w.act_fit, "Fit")):
        action.setIconText(text)
    w.addToolBar(toolbar)
    return toolbar


def update_actions(w: QMainWindow) -> None:
    """Enable what makes sense now: an image is current, an analysis runs, results exist."""
    model = w.model
    record = model.current
    running = w.analysis.running
    has_records = bool(model.records)
    w.act_analyse.setEnabled(record is not None and not running)
    w.act_analyse_selection.setEnabled(has_records and not running)
    w.act_analyse_all.setEnabled(has_records and not running)
    w.act_reanalyse_all.setEnabled(has_records and not running)
    w.act_save_case_as.setEnabled(has_records)
    w.act_cancel.setEnabled(running)
    w.act_review.setEnabled(record is not None and record.analysed)
    w.act_edit.setEnabled(record is not None and not running)
    w.act_import_labels.setEnabled(record is not None and not running)
    w.act_import_folder.setEnabled(has_records and not running)
    w.act_review.setText("Mark &unreviewed" if record is not None and record.status == REVIEWED else "Mark &reviewed")
    w.act_export_current.setEnabled(record is not None and record.result is not None)
    w.act_export_session.setEnabled(any(r.result is not None for r in model.records))
    w.act_next.setEnabled(record is not None and model.current_index < len(model.records) - 1)
    w.act_previous.setEnabled(record is not None and model.current_index > 0)


def show_message(w: QMainWindow, title: str, text: str) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, w)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_about(w: QMainWindow) -> QMessageBox:
    from workbench import __version__

    return show_message(w, "About Smear Workbench", ABOUT.format(version=__version__))
