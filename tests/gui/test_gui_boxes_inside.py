"""Every box stays inside its image, whatever the edit path (issue 16, item 7): draw past the border, drag a box off
the image, resize a corner outside, paste near an edge, import a label file with boxes outside, add one through the
API. Driven by simulated mouse and keys on the real viewer; the project file on disk is what is checked."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from workbench.app.annotation.store import ProjectStore  # noqa: E402
from workbench.app.results import CellDetection, SmearResult  # noqa: E402

L = Qt.MouseButton.LeftButton
W, H = 400, 300


@pytest.fixture()
def box_editor(qtbot, tmp_path):
    """A BoxEditor on a 400 x 300 image with one model box near the top-left corner, at 1 screen px = 1 image px,
    the view showing a margin around the image (so the mouse can go outside it)."""
    from workbench.app.results import BatchResult
    from workbench.app.session import SessionModel
    from workbench.gui.editing import BoxEditor
    from workbench.gui.viewer import SmearScene, SmearView

    scene = SmearScene()
    view = SmearView(scene)
    qtbot.addWidget(view)
    view.resize(700, 600)
    image = QImage(W, H, QImage.Format.Format_RGB32)
    image.fill(0xD0C0D0)
    scene.set_image(image)
    cell = CellDetection(cell_id=0, xyxy=(20.0, 20.0, 60.0, 50.0), det_conf=0.9, label="normal", label_conf=0.8,
                         p_blast=0.2)
    model = SessionModel(threshold=0.0)
    [record] = model.load_batch(BatchResult(images=[SmearResult(image_path=str(tmp_path / "im.png"), width=W,
                                                                height=H, cells=[cell])]))
    scene.setSceneRect(QRectF(-250, -250, W + 500, H + 500))
    scene.set_result(record.result)
    view.show()
    qtbot.waitExposed(view)
    view.resetTransform()
    view.centerOn(QPointF(W / 2, H / 2))
    store = ProjectStore.open(tmp_path, operator="tester")
    entry = store.add_image(tmp_path / "im.png", W, H)
    editor = BoxEditor(view, model, store=store)
    editor.set_image(entry.id, record)
    editor.set_enabled(True)
    yield editor
    store.close()


def _drag(qtbot, editor, start, end):
    viewport = editor.view.viewport()
    a, b = (editor.view.mapFromScene(QPointF(*p)) for p in (start, end))
    qtbot.mousePress(viewport, L, Qt.KeyboardModifier.NoModifier, a)
    qtbot.mouseMove(viewport, (a + b) / 2)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, L, Qt.KeyboardModifier.NoModifier, b)


def _stored(editor) -> dict[int, tuple]:
    with ProjectStore(editor.store.path) as fresh:           # a second connection: what is on disk
        return {c.cell_id: tuple(c.xyxy) for c in fresh.cells(editor.image_id)}


def _inside(box) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H


def test_a_box_dragged_off_the_image_stops_at_the_border(qtbot, box_editor):
    """The issue's case: dragged far up-left, the box was saved at (-149.9,-129.4)-(-20.7,-19.7)."""
    _drag(qtbot, box_editor, (40, 35), (-130, -140))
    box = _stored(box_editor)[0]
    assert box == (0.0, 0.0, 40.0, 30.0)                      # at the corner, its size kept
    _drag(qtbot, box_editor, (20, 15), (W + 200, H + 100))    # and off the opposite corner
    assert _stored(box_editor)[0] == (W - 40.0, H - 30.0, float(W), float(H))
    assert box_editor.scene.cell_items[0].rect() == QRectF(W - 40.0, H - 30.0, 40.0, 30.0)


def test_a_box_drawn_past_the_border_is_cut_at_it(qtbot, box_editor):
    _drag(qtbot, box_editor, (350, 250), (W + 120, H + 90))
    new = {i: b for i, b in _stored(box_editor).items() if i != 0}
    assert list(new.values()) == [(350.0, 250.0, float(W), float(H))]


def test_a_corner_resized_outside_stays_on_the_border(qtbot, box_editor):
    box_editor.set_selection([0])
    _drag(qtbot, box_editor, (20, 20), (-80, -60))            # the top-left handle, pulled out of the image
    assert _stored(box_editor)[0] == (0.0, 0.0, 60.0, 50.0)


def test_a_paste_near_the_edge_lands_inside(qtbot, box_editor):
    _drag(qtbot, box_editor, (40, 35), (W + 200, H + 200))   # the box now sits in the bottom-right corner
    box_editor.set_selection([0])
    box_editor.copy_selected()
    box_editor.paste()                                       # +10 px would put it 10 px outside
    stored = _stored(box_editor)
    assert len(stored) == 2 and all(map(_inside, stored.values()))
    assert stored[1] == stored[0]                            # pushed back by the 10 px, same size


def test_imported_and_api_boxes_are_clipped_and_those_outside_refused(qtbot, box_editor):
    boxes = [CellDetection(0, (-30.0, 100.0, 40.0, 150.0), 1.0, "blast", 1.0, 1.0),       # partly outside
             CellDetection(1, (500.0, 400.0, 560.0, 460.0), 1.0, "normal", 1.0, 0.0),     # entirely outside
             CellDetection(2, (100.0, 100.0, 140.0, 150.0), 1.0, "normal", 1.0, 0.0)]
    box_editor.replace_all(boxes)
    assert _stored(box_editor) == {0: (0.0, 100.0, 40.0, 150.0), 2: (100.0, 100.0, 140.0, 150.0)}
    assert box_editor.add_box(QRectF(QPointF(-50, -50), QPointF(-10, -10))) == -1         # nothing inside: refused
    new = box_editor.add_box(QRectF(QPointF(380, 280), QPointF(450, 330)))
    assert _stored(box_editor)[new] == (380.0, 280.0, float(W), float(H))
    box_editor.set_rects({2: QRectF(QPointF(-60, 10), QPointF(-20, 40))})                 # moved fully out: kept
    assert _stored(box_editor)[2] == (100.0, 100.0, 140.0, 150.0)
    assert all(map(_inside, _stored(box_editor).values()))
