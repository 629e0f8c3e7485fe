"""Reviewing like a hematology lab in the window (issue 17), driven by keys, clicks and drops offscreen: the session
gallery by class, reclassification by key from the gallery and the viewer in any mode (counts, undo stack, one
audit row each; undo restores both), the unidentified band holding cells out of the counts until reviewed, the
label list, right-click menus on boxes, next unreviewed cell / image, Grad-CAM off the UI thread, the GUI report."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QContextMenuEvent  # noqa: E402

from workbench.app.results import BatchResult, CellDetection, ModelInfo, SmearResult  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CTRL = Qt.KeyboardModifier.ControlModifier


def cell(i, label, p, unidentified=False, det=0.9) -> CellDetection:
    x = 60.0 + 110.0 * (i % 5)
    y = 60.0 + 150.0 * (i // 5)
    return CellDetection(cell_id=i, xyxy=(x, y, x + 90.0, y + 90.0), det_conf=det, label=label,
                         label_conf=max(p, 1.0 - p), p_blast=p, analysed_label=label, unidentified=unidentified)


@pytest.fixture()
def session(qtbot, plain_window, tmp_path, bccd_root):
    """Two analysed BCCD images (real pixels) with hand-made cells: a certain blast, two normal cells and two cells
    in the unidentified band on the first; one blast and one normal on the second."""
    from workbench.app.weights import Manifest

    manifest = Manifest.load(REPO / "weights" / "manifest.yaml")
    entry = manifest.default("classify")
    classifier = ModelInfo(entry.name, str(manifest.file_of(entry)), entry.sha256, entry.architecture,
                           entry.class_names, entry.input_size)
    images = []
    for name in ("BloodImage_00000.jpg", "BloodImage_00001.jpg"):
        shutil.copy(bccd_root / "JPEGImages" / name, tmp_path / name)
        images.append(tmp_path / name)
    first = SmearResult(image_path=str(images[0]), width=640, height=480, sample_id="S-1", classifier=classifier,
                        cells=[cell(0, "blast", 0.95), cell(1, "normal", 0.1), cell(2, "blast", 0.62, True),
                               cell(3, "normal", 0.3), cell(4, "normal", 0.48, True)],
                        settings={"det_conf": 0.25, "unidentified_band": [0.45, 0.87]})
    second = SmearResult(image_path=str(images[1]), width=640, height=480, sample_id="S-1", classifier=classifier,
                         cells=[cell(0, "blast", 0.91), cell(1, "normal", 0.05)], settings={"det_conf": 0.25})
    for result in (first, second):
        result.recount()
    win = plain_window
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.model.load_batch(BatchResult(images=[first, second]))
    win.set_threshold(0.25)
    qtbot.waitUntil(lambda: win.review_tools.gallery.summary.text().endswith("of 7 cells reviewed"), timeout=5000)
    return win


def counts(win, column=0):
    return {row: win.counts.value(row, column) for row in ("WBC", "Blasts", "Normal", "Unidentified", "Blast %")}


def audit(win, action):
    return [row for row in win.project.audit() if row.action == action]


def select_in_gallery(win, group, cell_id, record=None):
    gallery = win.review_tools.gallery
    record = record or win.model.records[0]
    model = gallery.models[group]
    row = next(i for i, e in enumerate(model.entries) if e.record is record and e.cell.cell_id == cell_id)
    view = gallery.views[group]
    view.setFocus()
    view.selectionModel().clearSelection()
    view.setCurrentIndex(model.index(row))
    return view


def test_gallery_groups_the_session_and_a_click_shows_the_cell_in_its_smear(qtbot, session):
    win = session
    gallery = win.review_tools.gallery
    names = {g: [(e.record.name[-6:-4], e.cell.cell_id) for e in gallery.entries(g)] for g in gallery.models}
    assert names == {"blast": [("00", 0), ("01", 0)], "unidentified": [("00", 2), ("00", 4)],
                     "non-blast": [("00", 3), ("00", 1), ("01", 1)]}          # each sorted by p(blast), highest first
    gallery.set_sort("det_conf")
    gallery.set_image_filter(win.model.records[1])
    assert [len(gallery.entries(g)) for g in ("blast", "unidentified", "non-blast")] == [1, 0, 1]
    gallery.set_image_filter(None)
    # the virtualised view: one delegate paints every crop, no widget per cell
    assert gallery.views["blast"].indexWidget(gallery.models["blast"].index(0)) is None
    # clicking a crop of the second image shows that cell in its smear
    view = gallery.views["non-blast"]
    row = next(i for i, e in enumerate(gallery.entries("non-blast")) if e.record is win.model.records[1])
    rect = view.visualRect(gallery.models["non-blast"].index(row))
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.model.current is win.model.records[1] and win.scene.selected_id == 1
    # crops are cut in the background and then painted from the cache
    qtbot.waitUntil(lambda: len(gallery.cache.crops) == 7, timeout=20_000)


def test_reclassify_by_key_from_the_gallery_counts_undo_and_audit(qtbot, session):
    win = session
    gallery = win.review_tools.gallery
    record = win.model.records[0]
    assert counts(win) == {"WBC": "5", "Blasts": "1", "Normal": "2", "Unidentified": "2", "Blast %": "33.3 %"}
    analysed = counts(win, 2)
    assert analysed == counts(win)
    view = select_in_gallery(win, "unidentified", 2)
    stack = win.editor.undo_stack
    n_undo = stack.count()
    qtbot.keyClick(view, Qt.Key.Key_1)                                     # 1 = blast: the cell is a blast
    changed = next(c for c in record.result.cells if c.cell_id == 2)
    assert (changed.label, changed.reviewed, changed.p_blast, changed.analysed_label) == ("blast", True, 0.62, "blast")
    assert counts(win) == {"WBC": "5", "Blasts": "2", "Normal": "2", "Unidentified": "1", "Blast %": "50.0 %"}
    assert counts(win, 2) == analysed                                      # as analysed: unchanged
    assert stack.count() == n_undo + 1 and stack.undoText().startswith("Reclassify 1 cell")
    [row] = audit(win, "reclassify")
    assert row.operator == "dr-test" and row.cell_id == 2 and row.time
    assert (row.before["label"], row.before["reviewed"], row.after["label"], row.after["reviewed"]) == \
        ("blast", False, "blast", True)
    qtbot.waitUntil(lambda: [e.cell.cell_id for e in gallery.entries("unidentified")] == [4], timeout=3000)
    assert (record, 2) in [(e.record, e.cell.cell_id) for e in gallery.entries("blast")]
    # a waiting cell relabelled: 2 = normal
    view = select_in_gallery(win, "unidentified", 4)
    assert gallery.selected() == [(record, 4)]
    qtbot.keyClick(view, Qt.Key.Key_2)
    assert counts(win) == {"WBC": "5", "Blasts": "2", "Normal": "3", "Unidentified": "0", "Blast %": "40.0 %"}
    assert len(audit(win, "reclassify")) == 2
    # undo restores the counts and the cell; the undo is audited too
    win.act_undo.trigger()
    win.act_undo.trigger()
    assert counts(win) == {"WBC": "5", "Blasts": "1", "Normal": "2", "Unidentified": "2", "Blast %": "33.3 %"}
    assert not next(c for c in record.result.cells if c.cell_id == 2).reviewed
    assert [r.cell_id for r in audit(win, "undo reclassify")] == [4, 2]
    qtbot.waitUntil(lambda: [e.cell.cell_id for e in gallery.entries("unidentified")] == [2, 4], timeout=3000)
    win.act_redo.trigger()
    assert counts(win)["Unidentified"] == "1"


def test_reclassify_from_the_viewer_in_view_and_edit_mode(qtbot, session):
    win = session
    record = win.model.current
    view = win.view
    view.setFocus()
    scale = view.scale_factor
    qtbot.keyClick(view, Qt.Key.Key_1)                                     # nothing selected: "1" is still 100 %
    assert view.scale_factor == pytest.approx(1.0) and scale != pytest.approx(1.0)
    win.select_cell(3)
    qtbot.keyClick(view, Qt.Key.Key_1)                                     # the selected normal cell is a blast
    assert next(c for c in record.result.cells if c.cell_id == 3).label == "blast"
    assert counts(win)["Blasts"] == "2" and len(audit(win, "reclassify")) == 1
    qtbot.keyClick(view, Qt.Key.Key_Space)                                 # Space confirms cell 3 as it is now
    assert len(audit(win, "confirm")) == 0                                 # (already reviewed: nothing to do)
    # edit mode: 1..9 reclassify the editor's selection the same way (reviewed, the model's p_blast kept)
    win.set_edit_mode(True)
    win.editor.set_selection([1])
    qtbot.keyClick(view, Qt.Key.Key_1)
    cell1 = next(c for c in record.result.cells if c.cell_id == 1)
    assert (cell1.label, cell1.reviewed, cell1.p_blast) == ("blast", True, 0.1)
    assert counts(win)["Blasts"] == "3" and len(audit(win, "reclassify")) == 2
    qtbot.keyClick(view, Qt.Key.Key_Z, CTRL)
    assert next(c for c in record.result.cells if c.cell_id == 1).label == "normal" and counts(win)["Blasts"] == "2"
    # the per-image gallery in edit mode: click a crop, then 2 (today's bug: nothing happened)
    panel = win.gallery
    item = next(panel.list.item(i) for i in range(panel.list.count())
                if panel.list.item(i).data(Qt.ItemDataRole.UserRole) == 0)
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=panel.list.visualItemRect(item).center())
    assert win.editor.selected == [0]
    qtbot.keyClick(panel.list, Qt.Key.Key_2)
    assert next(c for c in record.result.cells if c.cell_id == 0).label == "normal"
    assert counts(win)["Blasts"] == "1"


@pytest.mark.parametrize("mode", ["view", "edit"])
@pytest.mark.parametrize("source", ["gallery", "viewer"])
def test_one_key_in_every_mode_one_step_one_audit_row_undo_restores(qtbot, session, source, mode):
    """The acceptance item, each (source, mode) on its own: one key press changes the counts at once, pushes one
    undo step and writes exactly one audit row; undo restores the counts and the cell (and is audited itself)."""
    win = session
    record = win.model.records[0]
    win.set_edit_mode(mode == "edit")
    assert win.editor.enabled == (mode == "edit")
    shown, analysed = counts(win), counts(win, 2)
    stack = win.editor.undo_stack
    n_undo = stack.count()
    if source == "gallery":
        target = select_in_gallery(win, "non-blast", 3)
        assert win.review_tools.gallery.selected() == [(record, 3)]
    else:
        win.select_cell(3)
        if mode == "edit":
            win.editor.set_selection([3])
        target = win.view
        target.setFocus()
        assert win.review_tools.reviewer.viewer_targets() == [(record, 3)]
    qtbot.keyClick(target, Qt.Key.Key_1)                                   # cell 3 (normal 0.30) is a blast
    cell3 = next(c for c in record.result.cells if c.cell_id == 3)
    assert (cell3.label, cell3.reviewed, cell3.p_blast, cell3.analysed_label) == ("blast", True, 0.3, "normal")
    assert counts(win) == {"WBC": "5", "Blasts": "2", "Normal": "1", "Unidentified": "2", "Blast %": "66.7 %"}
    assert counts(win, 2) == analysed
    assert stack.count() == n_undo + 1 and stack.index() == n_undo + 1
    rows = [r for r in win.project.audit() if r.action in ("reclassify", "confirm", "undo reclassify")]
    assert len(rows) == 1 and rows[0].action == "reclassify" and rows[0].cell_id == 3
    assert (rows[0].before["label"], rows[0].after["label"], rows[0].after["reviewed"]) == ("normal", "blast", True)
    win.act_undo.trigger()
    cell3 = next(c for c in record.result.cells if c.cell_id == 3)
    assert (cell3.label, cell3.reviewed) == ("normal", False)
    assert counts(win) == shown and counts(win, 2) == analysed
    assert stack.index() == n_undo
    assert [r.cell_id for r in audit(win, "reclassify")] == [3] and [r.cell_id for r in audit(win, "undo reclassify")] \
        == [3]


def test_unidentified_cells_wait_until_reviewed(qtbot, session):
    win = session
    assert counts(win)["Unidentified"] == "2" and counts(win, 1)["Unidentified"] == "2"
    assert "2 unidentified wait for review" in win.counts.caption.text()
    win.select_cell(2)
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_Space)                             # confirmed as called (blast)
    assert counts(win) == {"WBC": "5", "Blasts": "2", "Normal": "2", "Unidentified": "1", "Blast %": "50.0 %"}
    assert [r.cell_id for r in audit(win, "confirm")] == [2]
    assert counts(win, 2)["Unidentified"] == "2"                           # as analysed, two waited


def test_drag_a_crop_onto_another_group(qtbot, session):
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    win = session
    gallery = win.review_tools.gallery
    source = gallery.models["non-blast"]
    row = next(i for i, e in enumerate(source.entries) if e.cell.cell_id == 3 and e.record is win.model.records[0])
    mime: QMimeData = source.mimeData([source.index(row)])
    target = gallery.views["blast"]
    pos = QPointF(target.viewport().rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target.viewport(), enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target.viewport(), drop)
    assert next(c for c in win.model.records[0].result.cells if c.cell_id == 3).label == "blast"
    assert len(audit(win, "reclassify")) == 1 and counts(win)["Blasts"] == "2"
    # the unidentified group takes no drops: a person decides with a key or a menu, not by parking a cell there
    refuse = QDragEnterEvent(pos.toPoint(), Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(gallery.views["unidentified"].viewport(), refuse)
    assert not refuse.isAccepted()


def test_label_list_and_box_menu(qtbot, session):
    from PySide6.QtWidgets import QApplication

    win = session
    tools = win.review_tools
    assert tools.labels.texts() == ["1   Blast", "2   Normal"]
    win.select_cell(0)
    tools._update_current()
    assert tools.labels.current == "blast" and "selected cell" in tools.labels.current_label.text()
    # right-click on box 1 (a normal cell): its menu, with the classes, mark reviewed and delete
    centre = win.view.mapFromScene(QPointF(60.0 + 110.0 + 45.0, 105.0))
    with qtbot.waitSignal(tools.reviewer.menuShown, timeout=3000) as shown:
        event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, centre, win.view.viewport().mapToGlobal(centre))
        QApplication.sendEvent(win.view.viewport(), event)
    menu = shown.args[0]
    texts = [a.text().split("\t")[0] for a in menu.actions() if a.text()]
    assert texts[:4] == ["Blast", "Normal", "Mark reviewed", "Delete box"] and win.scene.selected_id == 1
    assert [a.isChecked() for a in menu.actions()[:2]] == [False, True]
    next(a for a in menu.actions() if a.text().startswith("Mark reviewed")).trigger()
    assert next(c for c in win.model.current.result.cells if c.cell_id == 1).reviewed
    menu.close()
    menu = tools.reviewer.box_menu(win.model.current, 1)
    next(a for a in menu.actions() if a.text().startswith("Delete")).trigger()
    assert 1 not in {c.cell_id for c in win.model.current.result.cells} and counts(win)["WBC"] == "4"
    win.act_undo.trigger()
    assert counts(win)["WBC"] == "5"
    # clicking a class in the list reclassifies the selected cell
    win.select_cell(3)
    tools.labels.labelChosen.emit("blast")
    assert next(c for c in win.model.current.result.cells if c.cell_id == 3).label == "blast"


def test_next_unreviewed_cell_and_image(qtbot, session):
    win = session
    tools = win.review_tools
    win.select_cell(0)
    tools.act_next_cell.trigger()
    assert win.scene.selected_id == 1
    for cell_id in (1, 2, 3, 4):                                            # review the rest of the first image
        win.select_cell(cell_id)
        win.view.setFocus()
        qtbot.keyClick(win.view, Qt.Key.Key_Space)
    win.select_cell(4)
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        tools.act_next_cell.trigger()                                      # on to the next image
    assert win.model.current is win.model.records[1] and win.scene.selected_id == 0
    win.model.set_current(0)
    win.toggle_reviewed()
    tools.act_next_image.trigger()
    assert win.model.current is win.model.records[1]


def test_grad_cam_explains_the_weights_that_labelled_the_cell_or_none(tmp_path, tiny_classifier, tiny_config):
    """Grad-CAM uses the weights whose sha256 the result records: weights replaced under the same path are not
    taken from the cache, the configured classifier stands in only when it is those weights (or no model labelled
    the cell), and a cell whose weights are gone is refused rather than explained by another model."""
    from classification.model import build_efficientnet_b3, save_classifier
    from workbench.core.errors import WeightsError
    from workbench.core.fileio import sha256_file
    from workbench.gui import cam_panel

    def info(path: Path, sha: str) -> ModelInfo:
        return ModelInfo("b3", str(path), sha, "efficientnet_b3", ["blast", "normal"], 64)

    labelled_by = tmp_path / "b3.pt"
    shutil.copy(tiny_classifier, labelled_by)
    sha = sha256_file(tiny_classifier)
    first = cam_panel._classifier(tiny_config, info(labelled_by, sha))
    assert cam_panel._classifier(tiny_config, info(labelled_by, sha)) is first
    other = tmp_path / "other.pt"
    save_classifier(other, build_efficientnet_b3(2), ["blast", "normal"], input_size=64, meta={"note": "other"})
    shutil.copy(other, labelled_by)                                   # retrained under the same name
    stand_in = cam_panel._classifier(tiny_config, info(labelled_by, sha))
    assert stand_in is not first                                      # the configured file: the same weights
    assert cam_panel._classifier(tiny_config, None) is stand_in       # a hand-drawn box: the configured one
    with pytest.raises(WeightsError, match="no longer at"):
        cam_panel._classifier(tiny_config, info(labelled_by, "0" * 64))


def test_grad_cam_is_computed_off_the_ui_thread(qtbot, session):
    from workbench.gui import cam_panel

    win = session
    cam = win.review_tools.cam
    threads = []
    real = cam_panel.compute_cam
    cam_panel.compute_cam = lambda *a: (threads.append(threading.get_ident()), real(*a))[1]
    try:
        win.select_cell(0)
        start = time.perf_counter()
        with qtbot.waitSignal(cam.computed, timeout=120_000) as blast:
            worker = cam.explain(class_name="blast")
            assert worker is not None and time.perf_counter() - start < 0.5      # the UI thread did not wait
        blast_image = cam.cam_label.pixmap().toImage()
        with qtbot.waitSignal(cam.computed, timeout=120_000) as normal:
            cam.explain(class_name="normal")
    finally:
        cam_panel.compute_cam = real
    assert threads and threading.get_ident() not in threads
    assert blast.args[0][2] == "blast" and normal.args[0][2] == "normal"
    assert abs(blast.args[0][3] + normal.args[0][3] - 1.0) < 1e-5            # p(blast) + p(normal) of one crop
    assert cam.cam_label.pixmap().toImage() != blast_image                  # the map follows the class


def test_report_from_the_window(qtbot, session, tmp_path):
    from pypdf import PdfReader

    win = session
    out = tmp_path / "reports" / "session.pdf"
    worker = win.review_tools.make_report(out, signed_by="Dr Signer")       # two cells still wait: refused
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert not out.exists() and "still wait" in win.errors[-1]
    for cell_id in (2, 4):
        win.select_cell(cell_id)
        win.view.setFocus()
        qtbot.keyClick(win.view, Qt.Key.Key_Space)
    worker = win.review_tools.make_report(out, signed_by="Dr Signer")
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    text = "\n".join(p.extract_text() for p in PdfReader(str(out)).pages)
    assert "Dr Signer" in text and "S-1" in text and "dr-test" in text
    assert (out.parent / "session.results.json").is_file()


def test_unidentified_cells_look_the_same_in_the_window_and_the_pngs():
    import numpy as np

    from workbench.app.render import UNIDENTIFIED_BGR, render_result
    from workbench.gui.style import UNIDENTIFIED_RGB, cell_colour
    from workbench.gui.viewer import cell_text

    assert UNIDENTIFIED_RGB == tuple(reversed(UNIDENTIFIED_BGR))
    waiting = cell(0, "blast", 0.6, True)
    assert cell_colour(waiting).getRgb()[:3] == UNIDENTIFIED_RGB and cell_text(waiting).startswith("? blast")
    from workbench.app.cell_review import reviewed_cell

    assert cell_text(reviewed_cell(waiting)).endswith("✓") and cell_colour(reviewed_cell(waiting)).getRgb()[:3] != \
        UNIDENTIFIED_RGB
    result = SmearResult(image_path="x.png", width=400, height=300, cells=[waiting])
    result.recount()
    canvas = render_result(np.full((300, 400, 3), 255, np.uint8), result)
    assert tuple(canvas[105, 60]) == UNIDENTIFIED_RGB            # the box's left edge, drawn amber (RGB out)
