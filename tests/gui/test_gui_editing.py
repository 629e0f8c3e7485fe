"""Box editing driven by simulated mouse and keyboard on the real viewer (offscreen): draw, move, resize, relabel,
delete, multi-select, copy/paste; undo/redo restore exact coordinates; the project file on disk equals the scene."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from workbench.app.annotation.store import ProjectStore  # noqa: E402
from workbench.app.results import CellDetection, SmearResult  # noqa: E402

L = Qt.MouseButton.LeftButton
CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture()
def editor(qtbot, tmp_path):
    """A BoxEditor on a real view showing the one record of a SessionModel (the model is the truth)."""
    from workbench.app.results import BatchResult
    from workbench.app.session import SessionModel
    from workbench.gui.editing import BoxEditor
    from workbench.gui.viewer import SmearScene, SmearView

    scene = SmearScene()
    view = SmearView(scene)
    qtbot.addWidget(view)
    view.resize(500, 400)
    image = QImage(400, 300, QImage.Format.Format_RGB32)
    image.fill(0xC8B4C8)
    scene.set_image(image)
    model_cell = CellDetection(cell_id=0, xyxy=(250.5, 150.25, 330.75, 220.0), det_conf=0.8, label="blast",
                               label_conf=0.7, p_blast=0.7)
    model = SessionModel(threshold=0.0)
    [record] = model.load_batch(BatchResult(images=[
        SmearResult(image_path=str(tmp_path / "im.png"), width=400, height=300, cells=[model_cell])]))
    scene.set_result(record.result)
    view.show()
    qtbot.waitExposed(view)
    view.resetTransform()            # 1 screen pixel = 1 image pixel: simulated points land on exact scene points
    view.centerOn(QPointF(200.0, 150.0))
    store = ProjectStore.open(tmp_path, operator="tester")
    entry = store.add_image(tmp_path / "im.png", 400, 300)
    store.replace_cells(entry.id, [model_cell], "model predictions", "model")
    ed = BoxEditor(view, model, store=store)
    ed.set_image(entry.id, record)
    ed.set_enabled(True)
    yield ed
    store.close()


def vp(editor, x: float, y: float) -> QPoint:
    return editor.view.mapFromScene(QPointF(x, y))


def drag(qtbot, editor, start, end, modifier=Qt.KeyboardModifier.NoModifier):
    viewport = editor.view.viewport()
    a, b = vp(editor, *start), vp(editor, *end)
    qtbot.mousePress(viewport, L, modifier, a)
    qtbot.mouseMove(viewport, (a + b) / 2)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, L, modifier, b)
    return editor.view.mapToScene(a), editor.view.mapToScene(b)


def scene_boxes(editor):
    """{cell id: (xyxy of the item's rect, label)} as drawn."""
    out = {}
    for cell_id, item in editor.scene.cell_items.items():
        r = item.rect()
        out[cell_id] = ((r.left(), r.top(), r.right(), r.bottom()), item.cell.label)
    return out


def stored_boxes(editor):
    with ProjectStore(editor.store.path) as fresh:       # a second connection: what is on disk
        return {c.cell_id: (tuple(c.xyxy), c.label) for c in fresh.cells(editor.image_id)}


def test_draw_move_resize_relabel_delete_undo_redo(qtbot, editor):
    view, scene = editor.view, editor.scene
    history = [scene_boxes(editor)]

    a, b = drag(qtbot, editor, (40, 30), (120, 100))                       # draw
    assert set(scene.cell_items) == {0, 1}
    assert scene.cell_items[1].rect() == QRectF(a, b).normalized() and scene.cell_items[1].cell.label == "normal"
    assert editor.selected == [1] and scene.cell_items[1].cell.xyxy == (a.x(), a.y(), b.x(), b.y())
    history.append(scene_boxes(editor))

    start, end = drag(qtbot, editor, (80, 60), (100, 75))                   # move the new box
    delta = end - start
    assert scene.cell_items[1].rect() == QRectF(a, b).translated(delta)
    history.append(scene_boxes(editor))

    corner = scene.cell_items[1].rect().bottomRight()                        # resize by the corner handle
    _, grip = drag(qtbot, editor, (corner.x(), corner.y()), (corner.x() + 30, corner.y() + 15))
    assert scene.cell_items[1].rect() == QRectF(scene.cell_items[1].rect().topLeft(), grip)
    assert scene.cell_items[1].rect().topLeft() == a + delta
    history.append(scene_boxes(editor))

    qtbot.keyClick(view, Qt.Key.Key_1)                                       # relabel: 1 = blast
    assert scene.cell_items[1].cell.label == "blast" and scene.cell_items[1].cell.p_blast == 1.0
    history.append(scene_boxes(editor))

    qtbot.mouseClick(view.viewport(), L, pos=vp(editor, 290, 185))          # select the model box
    assert editor.selected == [0]
    qtbot.keyClick(view, Qt.Key.Key_2)
    qtbot.keyClick(view, Qt.Key.Key_Delete)                                 # delete it
    assert set(scene.cell_items) == {1}
    final = scene_boxes(editor)
    assert stored_boxes(editor) == final
    texts = [editor.undo_stack.text(i) for i in range(editor.undo_stack.count())]
    assert len(texts) == 6, texts

    # undo everything: each step restores the exact coordinates seen before it, in the scene and on disk
    qtbot.keyClick(view, Qt.Key.Key_Z, CTRL)                                 # undo delete
    assert scene_boxes(editor)[0] == ((250.5, 150.25, 330.75, 220.0), "normal")
    qtbot.keyClick(view, Qt.Key.Key_Z, CTRL)                                 # undo relabel of the model box
    assert scene_boxes(editor) == history[4] and stored_boxes(editor) == history[4]
    for expected in reversed(history[:4]):
        qtbot.keyClick(view, Qt.Key.Key_Z, CTRL)
        assert scene_boxes(editor) == expected and stored_boxes(editor) == expected
    assert scene.cell_items[0].cell == CellDetection(0, (250.5, 150.25, 330.75, 220.0), 0.8, "blast", 0.7, 0.7)
    for _ in range(6):
        qtbot.keyClick(view, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert scene_boxes(editor) == final and stored_boxes(editor) == final

    actions = [r.action for r in editor.store.audit(editor.image_id)]
    assert actions[:3] == ["add_image", "model predictions", "add"]
    assert {"move/resize", "relabel", "delete", "undo delete", "undo add"} <= set(actions)
    assert {r.operator for r in editor.store.audit(editor.image_id)} == {"tester"}


def test_multi_select_copy_paste_and_move_together(qtbot, editor):
    view, scene = editor.view, editor.scene
    drag(qtbot, editor, (20, 20), (60, 50))
    qtbot.mouseClick(view.viewport(), L, CTRL, vp(editor, 290, 185))        # ctrl+click adds the model box
    assert sorted(editor.selected) == [0, 1]
    before = {i: scene.cell_items[i].rect() for i in (0, 1)}
    start, end = drag(qtbot, editor, (40, 35), (52, 44))
    for i in (0, 1):
        assert scene.cell_items[i].rect() == before[i].translated(end - start)
    qtbot.keyClick(view, Qt.Key.Key_C, CTRL)
    qtbot.keyClick(view, Qt.Key.Key_V, CTRL)
    assert sorted(scene.cell_items) == [0, 1, 2, 3] and sorted(editor.selected) == [2, 3]
    assert scene.cell_items[2].rect() == scene.cell_items[0].rect().translated(10.0, 10.0)
    assert stored_boxes(editor) == scene_boxes(editor)
    qtbot.keyClick(view, Qt.Key.Key_Z, CTRL)
    assert sorted(scene.cell_items) == [0, 1] and stored_boxes(editor) == scene_boxes(editor)
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert editor.selected == []
    # a click (no drag) on empty space draws nothing
    qtbot.mouseClick(view.viewport(), L, pos=vp(editor, 150, 250))
    assert sorted(scene.cell_items) == [0, 1]


def test_edit_mode_off_restores_panning(qtbot, editor):
    editor.set_enabled(False)
    assert editor.view.dragMode() == editor.view.DragMode.ScrollHandDrag
    drag(qtbot, editor, (40, 30), (120, 100))
    assert set(editor.scene.cell_items) == {0}


def test_edits_go_into_the_model_and_the_scene_follows_it(qtbot, editor):
    from dataclasses import replace

    model, record, scene = editor.model, editor.record, editor.scene
    events = []
    model.subscribe(lambda event, payload: events.append((event, payload)))
    a, b = drag(qtbot, editor, (40, 30), (120, 100))                       # an edit changes the model's cells
    assert events == [("cells_changed", record)]
    assert [(c.cell_id, c.xyxy) for c in record.result.cells] == [(0, (250.5, 150.25, 330.75, 220.0)),
                                                                   (1, (a.x(), a.y(), b.x(), b.y()))]
    assert record.result.counts.wbc == 2 and scene.result is record.result

    # the model changes without the editor: the scene redraws only the boxes that differ
    kept = scene.cell_items[0]
    moved = replace(record.result.cells[1], xyxy=(10.0, 10.0, 50.0, 40.0))
    model.replace_cells(record, [record.result.cells[0], moved])
    assert scene.cell_items[0] is kept
    assert scene.cell_items[1].rect() == QRectF(QPointF(10.0, 10.0), QPointF(50.0, 40.0))
    model.replace_cells(record, record.result.cells[:1])
    assert set(scene.cell_items) == {0} and editor.selected == []

    # the scene is never read back: a box item changed behind the model's back does not leak into an edit
    scene.cell_items[0].setRect(QRectF(0.0, 0.0, 5.0, 5.0))
    editor.set_selection([0])
    qtbot.keyClick(editor.view, Qt.Key.Key_2)                                 # relabel normal
    assert record.result.cells[0].xyxy == (250.5, 150.25, 330.75, 220.0) and record.result.cells[0].label == "normal"
    assert scene_boxes(editor) == {0: ((250.5, 150.25, 330.75, 220.0), "normal")}
    assert stored_boxes(editor)[0] == ((250.5, 150.25, 330.75, 220.0), "normal")


def test_label_files_are_read_by_suffix(tmp_path):
    """The Qt-free dispatch behind "Import labels…": the suffix picks the importer."""
    from workbench.app.annotation.label_files import import_label_file
    from workbench.core.errors import LabelFileError
    from workbench.core.voc import VocAnnotation, VocObject, write_voc

    image = tmp_path / "im.png"
    (tmp_path / "im.txt").write_text("1 0.5 0.5 0.1 0.2\n")
    write_voc(tmp_path / "im.xml", VocAnnotation("im.png", 400, 300, [VocObject("blast", (1.5, 2.5, 50.0, 60.0))]))
    cells, missed = import_label_file(tmp_path / "im.txt", image, 400, 300, ["blast", "normal"])
    assert [(c.label, c.xyxy) for c in cells] == [("normal", pytest.approx((180.0, 120.0, 220.0, 180.0)))]
    assert missed == 0
    cells, _ = import_label_file(tmp_path / "im.xml", image, 0, 0, ["blast", "normal"])
    assert [(c.label, c.xyxy) for c in cells] == [("blast", (1.5, 2.5, 50.0, 60.0))]
    with pytest.raises(LabelFileError, match="not a YOLO .txt"):
        import_label_file(tmp_path / "im.csv", image, 400, 300, ["blast", "normal"])


# ---------------------------------------------------------------------------------------------------------------
# the main window (conftest's plain_window): model-assisted labelling, import, review with operator, status filter,
# export, retraining
def _analysed_image(tmp_path):
    import numpy as np
    from PIL import Image

    from workbench.app.results import BatchResult

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((300, 400, 3), 210, np.uint8)).save(folder / "im.png")
    cells = [CellDetection(0, (250.5, 150.25, 330.75, 220.0), 0.9, "blast", 0.7, 0.7),
             CellDetection(1, (10.0, 10.0, 30.0, 30.0), 0.05, "normal", 0.6, 0.4)]   # below the display threshold
    batch = BatchResult(images=[SmearResult(image_path="im.png", width=400, height=300, cells=cells)])
    (folder / "results.json").write_text(batch.to_json())
    return folder


def test_window_edit_import_review_filter_export_and_train(qtbot, plain_window, tmp_path):
    import sys

    from workbench.core.voc import VocAnnotation, VocObject, write_voc

    win = plain_window
    folder = _analysed_image(tmp_path)
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.open_paths([folder / "results.json"])
    record = win.model.current
    win.act_edit.trigger()                                        # edit mode: nothing changes until the first edit
    assert win.editor.enabled and win.project.path == win.cases.location and record.status == "analysed"
    entry = win.project.image(folder / "im.png")
    assert win.project.cells(entry.id) == []

    win.view.resetTransform()
    win.view.centerOn(QPointF(200.0, 150.0))
    a, b = drag(qtbot, win.editor, (40, 30), (120, 100))        # the first edit starts from the model's shown boxes
    assert win.project.sources(entry.id) == {0: "model", 1: "manual"} and record.status == "edited"
    assert [c.cell_id for c in record.model_cells] == [0, 1]      # the model layer stays, hidden box included
    assert [c.cell_id for c in record.result.cells] == [0, 1]     # the labels: the shown box and the drawn one
    assert record.counts().wbc == 2 and win.image_list.item_of(record).text(2) == "2"
    assert [c.xyxy for c in win.project.cells(entry.id)][1] == (a.x(), a.y(), b.x(), b.y())
    qtbot.keyClick(win.view, Qt.Key.Key_Z, CTRL)
    assert len(win.project.cells(entry.id)) == 1 and record.counts().wbc == 1
    win.act_redo.trigger()                                         # the Edit menu's redo / undo
    assert len(win.project.cells(entry.id)) == 2
    win.act_undo.trigger()
    assert len(win.project.cells(entry.id)) == 1

    labels = tmp_path / "im.xml"
    write_voc(labels, VocAnnotation("im.png", 400, 300, [VocObject("blast", (1.5, 2.5, 50.0, 60.0)),
                                                         VocObject("normal", (100.0, 100.0, 150.0, 160.0))]))
    assert win.import_labels(labels)
    assert [(c.xyxy, c.label) for c in win.project.cells(entry.id)] == [((1.5, 2.5, 50.0, 60.0), "blast"),
                                                                         ((100.0, 100.0, 150.0, 160.0), "normal")]
    assert set(win.project.sources(entry.id).values()) == {"import"}

    win.set_operator("dr-review")
    win.toggle_reviewed()
    reviewed = win.project.image(entry.id)
    assert (reviewed.status, reviewed.reviewed_by) == ("reviewed", "dr-review")
    assert record.reviewed_by == "dr-review"
    audit = win.project.audit(entry.id)
    assert audit[-1].action == "review" and audit[-1].operator == "dr-review" and audit[-1].time
    assert {r.operator for r in audit[:-1]} == {"dr-test"}
    win.image_list.set_status_filter("reviewed")
    assert win.image_list.shown_records() == [record]
    win.image_list.set_status_filter("new")
    assert win.image_list.shown_records() == []
    win.image_list.set_status_filter(None)

    with qtbot.waitSignal(win.exportFinished, timeout=30_000) as blocker:
        assert win.export_training_set(tmp_path / "train_set")
    data = blocker.args[0][0]
    assert data.name == "data.yaml" and (tmp_path / "train_set" / "coco.json").is_file()
    assert len(list((tmp_path / "train_set" / "classifier").rglob("*.png"))) == 2
    assert (tmp_path / "train_set" / "classifier" / "split.csv").is_file()

    dialog = win.open_training_dialog()
    assert dialog.data_edit.text() == str(data)
    assert dialog.command()[:7] == [sys.executable, "-m", "workbench.launch", "-v", "train", "detector", "--data"]
    fake = [sys.executable, "-c", "import time\nfor e in (1, 2):\n    print(f'      {e}/2   0G  1.0', flush=True)\n"
            "print('registered as x')"]
    with qtbot.waitSignal(dialog.finished_training, timeout=30_000):
        assert dialog.start(fake)
    assert dialog.exit_code == 0 and dialog.progress.value() == 2 and dialog.progress.maximum() == 2
    assert "registered as x" in dialog.log.toPlainText()
    dialog.model_box.setCurrentIndex(1)                           # the classifier on the exported crops
    assert dialog.data_edit.text() == str(tmp_path / "train_set" / "classifier")
    assert dialog.command()[4:7] == ["train", "classifier", "--data"]
    fake = [sys.executable, "-c", "print('12:00 INFO epoch 3/7 [train] loss 0.5', flush=True)"]
    with qtbot.waitSignal(dialog.finished_training, timeout=30_000):
        assert dialog.start(fake)
    assert dialog.progress.maximum() == 7 and dialog.exit_code == 0
    win.act_edit.trigger()
    assert not win.editor.enabled


def test_window_labels_an_unanalysed_image_from_scratch_and_keeps_labels_across_images(qtbot, plain_window, tmp_path):
    import numpy as np
    from PIL import Image

    win = plain_window
    folder = tmp_path / "fresh"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(folder / name)
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.open_paths([folder])
    first = win.model.current
    assert first.name == "a.png" and not first.analysed
    win.set_edit_mode(True)
    win.view.resetTransform()
    win.view.centerOn(QPointF(200.0, 150.0))
    a, b = drag(qtbot, win.editor, (50, 40), (90, 95))
    qtbot.keyClick(win.view, Qt.Key.Key_1)
    entry = win.project.image(folder / "a.png")
    assert [(c.xyxy, c.label) for c in win.project.cells(entry.id)] == [((a.x(), a.y(), b.x(), b.y()), "blast")]
    assert first.counts().blast == 1 and (entry.width, entry.height) == (400, 300)

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "b.txt").write_text("1 0.5 0.5 0.1 0.2\n")               # YOLO, class 1 = normal
    with qtbot.waitSignal(win.annotation.labelsImported, timeout=20_000) as imported:
        assert win.import_label_folder(labels)
    assert imported.args == [{"b.png": 1}]
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.model.next()
    assert win.model.current.name == "b.png" and win.editor.undo_stack.count() == 0
    assert [(item.cell.label, item.cell.xyxy) for item in win.scene.cell_items.values()] == [
        ("normal", pytest.approx((180.0, 120.0, 220.0, 180.0)))]
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.model.previous()
    assert [item.cell.xyxy for item in win.scene.cell_items.values()] == [(a.x(), a.y(), b.x(), b.y())]


def test_a_label_folder_is_read_off_the_ui_thread_and_a_bad_file_is_one_dialog(qtbot, plain_window, tmp_path,
                                                                               monkeypatch):
    """Reading a label folder opens every image and grows point files into boxes: it runs in the background, and a
    bad file there is shown as "Cannot import labels" with nothing imported."""
    import threading

    import numpy as np
    from PIL import Image

    from workbench.app.annotation import importers

    win = plain_window
    folder = tmp_path / "smears"
    folder.mkdir()
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(folder / "a.png")
    with qtbot.waitSignal(win.imageShown, timeout=20_000):
        win.open_paths([folder])
    threads = []
    real = importers.read_label_folder
    monkeypatch.setattr(importers, "read_label_folder",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 nan 0.2\n")
    assert win.import_label_folder(labels)
    qtbot.waitUntil(lambda: bool(win.errors), timeout=20_000)
    assert threads and threads[0] is not threading.main_thread()
    assert "a.txt" in win.errors[-1]
    assert win.error_box is not None and win.error_box.windowTitle() == "Cannot import labels"
    win.error_box.close()
    assert all(not win.project.cells(entry.id) for entry in win.project.images())


def test_a_box_changed_by_another_window_is_not_overwritten(qtbot, editor):
    """Two windows on one project: this window's stale move is refused (nothing saved, one clear message), the
    view shows the other window's box, and the history that no longer matches the file is dropped."""
    with ProjectStore(editor.store.path, operator="other") as other:
        [cell] = other.cells(editor.image_id)
        moved = CellDetection(cell_id=0, xyxy=(10.0, 10.0, 60.0, 60.0), det_conf=cell.det_conf, label="normal",
                              label_conf=1.0, p_blast=cell.p_blast)
        other.apply(editor.image_id, {0: cell}, {0: moved}, "move/resize", "manual")
    errors = []
    editor.storeFailed.connect(lambda title, text: errors.append(text))
    drag(qtbot, editor, (290, 185), (300, 190))                              # this window still had the old box
    assert errors and "another window" in errors[0] and len(errors[0].splitlines()) == 1
    assert stored_boxes(editor) == {0: ((10.0, 10.0, 60.0, 60.0), "normal")}
    assert scene_boxes(editor) == stored_boxes(editor)
    qtbot.waitUntil(lambda: editor.undo_stack.count() == 0)
