"""A case you never lose (issue 16): each observed problem replayed through the real window on real BCCD smears
with the tiny real models (tests/conftest.py), then checked against what comes back when the case is opened again.

1. quit (Ctrl+Q) and reopen from "Open recent": the analyses, sample ID and note come back;
2. "Analyse all" leaves analysed images, and their reviews, alone;
3. the panel's "Reviewed" box is written to the project, so the training export has the image;
4. opening a folder whose project.sqlite has labels and reviews shows them;
5. moving through unanalysed images in edit mode changes nothing; imported labels make an image "edited";
6. Ctrl+R on an edited image asks first; keeping the edits keeps the view, the project and the undo history;
and a session killed with SIGKILL comes back with every analysis and review.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from workbench.app.annotation.store import ProjectStore  # noqa: E402
from workbench.app.results import CellDetection  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def smears(tmp_path, bccd_root) -> Path:
    """A folder of 8 real BCCD smears (copies: the test may write beside them)."""
    folder = tmp_path / "smears"
    folder.mkdir()
    for image in sorted((bccd_root / "JPEGImages").glob("BloodImage_*.jpg"))[:8]:
        shutil.copy(image, folder / image.name)
    return folder


def facts(model) -> list:
    """Everything a case must give back, per image, as plain JSON."""
    return json.loads(json.dumps([
        {"name": r.name, "status": r.status, "sample_id": r.sample_id, "note": r.note, "edited": r.edited,
         "reviewed_by": r.reviewed_by, "reviewed_at": r.reviewed_at,
         "result": None if r.result is None else r.result.to_dict()} for r in model.records]))


def answer_next_question(button_text: str, seen: list) -> None:
    """Click `button_text` in the next modal question box (the window asks with exec())."""

    def click():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(0, click)


# ---------------------------------------------------------------------------------------------------------------
def test_1_quit_and_reopen_from_recent_restores_analyses_sample_id_and_note(qtbot, window, make_window, smears,
                                                                            open_and_wait, analyse_and_wait):
    open_and_wait(window, [smears])
    assert analyse_and_wait(window, window.analyse_all) == [False]
    assert all(r.status == "analysed" for r in window.model.records) and len(window.model.records) == 8
    window.metadata.sample_edit.setFocus()
    qtbot.keyClicks(window.metadata.sample_edit, "P-2024-0153")        # typed, never confirmed with Enter
    qtbot.keyClicks(window.metadata.note_edit, "smudge cells, check morphology")
    window.model.set_current(3)
    window.set_threshold(0.2)
    before = facts(window.model)
    assert before[0]["sample_id"] == "P-2024-0153" and before[0]["note"] == "smudge cells, check morphology"
    assert [s.toString() for s in window.act_quit.shortcuts()] == ["Ctrl+Q"]
    window.act_quit.trigger()                                           # Ctrl+Q
    assert not window.isVisible() and QApplication.activeModalWidget() is None   # closed, nothing asked

    again = make_window()
    assert again.model.records == []
    again.opener.fill_recent_menu(again.recent_menu)
    [case_action] = [a for a in again.recent_menu.actions() if a.data()]
    assert "8 image(s)" in case_action.text() and case_action.isEnabled()
    with qtbot.waitSignal(again.imageShown, timeout=20_000):
        case_action.trigger()
    assert facts(again.model) == before
    assert again.model.current_index == 3 and again.model.threshold == pytest.approx(0.2)
    assert again.image_list.summary.text().startswith("8 images · 8 analysed")
    again.model.set_current(0)
    assert again.metadata.sample_edit.text() == "P-2024-0153"


def test_2_analyse_all_leaves_analysed_images_and_reviews_alone(qtbot, window, smears, open_and_wait,
                                                                analyse_and_wait):
    images = sorted(smears.glob("*.jpg"))
    open_and_wait(window, images[:3])
    analyse_and_wait(window, window.analyse_all)
    first, second, third = window.model.records
    window.act_review.trigger()                                         # Ctrl+M on the first image
    results = [r.result for r in window.model.records]
    assert first.status == "reviewed" and first.reviewed_by
    assert not window.analyse_all()                                     # nothing left to analyse
    assert "analysed already" in window.statusBar().currentMessage()
    window.open_paths([images[3]])
    assert analyse_and_wait(window, window.analyse_all) == [False]
    assert window.analysis.summary.total == 1                           # only the new image ran
    assert [r.result for r in window.model.records[:3]] == results and first.reviewed_by is not None
    assert [r.status for r in window.model.records] == ["reviewed", "analysed", "analysed", "analysed"]


def test_3_the_panel_review_box_reaches_the_training_export(qtbot, window, smears, tmp_path, open_and_wait,
                                                            analyse_and_wait):
    open_and_wait(window, sorted(smears.glob("*.jpg"))[:2])
    analyse_and_wait(window, window.analyse_all)
    window.set_threshold(0.0)
    record = window.model.current
    qtbot.mouseClick(window.metadata.review_box, Qt.MouseButton.LeftButton)   # the checkbox, not Ctrl+M
    assert record.status == "reviewed"
    with ProjectStore(window.cases.location) as project:
        [entry] = project.images("reviewed")
        assert entry.name == record.name and entry.reviewed_by == record.reviewed_by
        assert [c.xyxy for c in project.cells(entry.id)] == [c.xyxy for c in record.cells(0.0)]
    with qtbot.waitSignal(window.exportFinished, timeout=60_000):
        assert window.export_training_set(tmp_path / "train_set")
    coco = json.loads((tmp_path / "train_set" / "coco.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == [record.name]
    assert len(coco["annotations"]) == len(record.result.cells)


def test_4_opening_a_folder_shows_its_project_and_its_case(qtbot, window, make_window, smears, open_and_wait,
                                                           analyse_and_wait):
    images = sorted(smears.glob("*.jpg"))
    with ProjectStore.open(smears, operator="annotator") as project:      # labels made the old way, beside the images
        entry = project.add_image(images[1], 640, 480)
        project.replace_cells(entry.id, [CellDetection(0, (100.0, 120.0, 180.0, 200.0), 1.0, "blast", 1.0, 1.0),
                                         CellDetection(1, (300.0, 50.0, 360.0, 110.0), 1.0, "normal", 1.0, 0.0)],
                              "import voc", "import")
        project.mark_reviewed(entry.id)
    open_and_wait(window, [smears])
    by_name = {r.name: r for r in window.model.records}
    assert len(by_name) == 8                                             # the case's image and the folder's others
    reviewed = by_name[images[1].name]
    assert reviewed.status == "reviewed" and reviewed.reviewed_by == "annotator"
    assert window.image_list.item_of(reviewed).text(1) == "reviewed"
    assert window.image_list.item_of(reviewed).text(2) == "2"               # counts without entering edit mode
    assert window.image_list.summary.text() == "8 images · 1 analysed · 1 reviewed"
    assert window.project.path == smears / "project.sqlite"

    # a folder without a project: its case is kept in the cases folder, and opening the folder brings it back
    other = smears.parent / "other"
    other.mkdir()
    for image in images[:2]:
        shutil.copy(image, other / image.name)
    second = make_window()
    open_and_wait(second, [other])
    analyse_and_wait(second, second.analyse_all)
    second.act_review.trigger()
    before = facts(second.model)
    second.close()
    third = make_window()
    open_and_wait(third, [other])
    assert facts(third.model) == before


def test_5_edit_mode_changes_nothing_until_an_edit_and_imports_are_edits(qtbot, window, smears, tmp_path,
                                                                         open_and_wait):
    images = sorted(smears.glob("*.jpg"))[:3]
    open_and_wait(window, images)
    window.act_edit.trigger()
    for _ in range(2):
        with qtbot.waitSignal(window.imageShown, timeout=20_000):
            window.act_next.trigger()
    assert [r.status for r in window.model.records] == ["new"] * 3
    assert [window.image_list.item_of(r).text(1) for r in window.model.records] == ["not analysed"] * 3
    assert [window.image_list.item_of(r).text(2) for r in window.model.records] == [""] * 3   # no "0 WBC"
    from workbench.core.voc import VocAnnotation, VocObject, write_voc

    labels = tmp_path / "labels"
    write_voc(labels / f"{images[0].stem}.xml", VocAnnotation(images[0].name, 640, 480, [
        VocObject("blast", (100.0, 100.0, 160.0, 170.0)), VocObject("blast", (300.0, 200.0, 370.0, 260.0))]))
    with qtbot.waitSignal(window.annotation.labelsImported, timeout=20_000) as imported:
        assert window.import_label_folder(labels)              # read off the UI thread, stored in it
    assert imported.args == [{images[0].name: 2}]
    first = window.model.records[0]
    assert first.status == "edited" and window.image_list.item_of(first).text(1) == "edited"
    assert first.analysis() is None and first.needs_analysis is False
    assert window.analyse_all()                                           # the other two only
    assert [r.status for r in window.model.records] == ["edited", "queued", "queued"]
    window.cancel_analysis()
    qtbot.waitUntil(lambda: not window.analysis_running, timeout=120_000)


def test_6_reanalysing_an_edited_image_asks_and_keeps_edits_view_project_and_undo(qtbot, window, smears,
                                                                                  open_and_wait, analyse_and_wait):
    open_and_wait(window, [sorted(smears.glob("*.jpg"))[0]])
    analyse_and_wait(window, window.analyse_current)
    record = window.model.current
    window.set_threshold(0.5)              # the tiny model's boxes (confidence ~0.01) hidden: an edit starts from none
    window.set_edit_mode(True)
    window.view.resetTransform()
    window.view.centerOn(QPointF(320.0, 240.0))
    start = _empty_spot(window, record, 50)                     # draw where the mouse meets no box
    viewport = window.view.viewport()
    a, b = window.view.mapFromScene(start), window.view.mapFromScene(start + QPointF(50, 50))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    drawn = [c for c in record.result.cells if c.det_conf == 1.0]          # a person's box (the model's: ~0.01)
    assert len(drawn) == 1 and record.status == "edited" and window.editor.undo_stack.count() == 1
    entry = window.project.image(record.path)

    asked = []
    answer_next_question("Keep my edits", asked)
    assert "Ctrl+R" in [s.toString() for s in window.act_analyse.shortcuts()]
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.act_analyse.trigger()                                        # Ctrl+R
    assert asked and "edited by hand" in asked[0]
    assert drawn[0] in record.result.cells and drawn[0].cell_id in window.scene.cell_items   # still in the view
    assert drawn[0] in window.project.cells(entry.id)                                        # and in the project
    assert record.status == "edited" and record.model_cells is not None
    assert window.editor.undo_stack.count() == 1
    window.act_undo.trigger()                                              # the history still works
    assert drawn[0] not in record.result.cells and drawn[0] not in window.project.cells(entry.id)
    window.act_redo.trigger()

    answer_next_question("Replace them", asked)
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.act_analyse.trigger()
    assert record.status == "analysed" and not record.edited and drawn[0] not in record.result.cells
    assert window.project.cells(entry.id) == [] and window.editor.undo_stack.count() == 0
    assert set(window.scene.cell_items) == {c.cell_id for c in record.result.cells}


def _empty_spot(window, record, size: float) -> QPointF:
    """A point from which a size x size square touches none of the shown boxes."""
    boxes = [c.xyxy for c in record.cells(window.model.threshold)]
    for y in range(10, 480 - int(size) - 10, 20):
        for x in range(10, 640 - int(size) - 10, 20):
            if all(x + size < x1 or x > x2 or y + size < y1 or y > y2 for x1, y1, x2, y2 in boxes):
                return QPointF(x, y)
    raise AssertionError("no empty spot in the image")


# ---------------------------------------------------------------------------------------------------------------
KILLED_SESSION = textwrap.dedent("""
    import json, sys
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    from workbench.gui.main_window import MainWindow
    from workbench.gui.settings_dialog import GuiSettings

    folder, settings_file, detector, classifier = sys.argv[1:5]
    app = QApplication([])
    settings = GuiSettings.defaults()
    settings.detector, settings.classifier = detector, classifier
    settings.det_conf, settings.max_det, settings.classifier_batch = 0.0001, 40, 16
    store = QSettings(settings_file, QSettings.Format.IniFormat)
    store.setValue("annotation/operator", "tech-killed")
    win = MainWindow(settings=settings, store=store)
    win.show()
    win.open_paths([folder])
    win.analysisFinished.connect(lambda cancelled: app.exit(0))
    assert win.analyse_all()
    app.exec()
    for index in (1, 4, 6):                       # three reviews, through the panel's checkbox
        win.model.set_current(index)
        win.metadata.review_box.setChecked(True)
    facts = [{"name": r.name, "status": r.status, "reviewed_by": r.reviewed_by, "reviewed_at": r.reviewed_at,
              "result": r.result.to_dict()} for r in win.model.records]
    print("READY " + json.dumps(facts), flush=True)
    app.exec()                                    # working on, until killed
""")


def test_a_session_killed_with_sigkill_comes_back_whole(qtbot, make_window, smears, tmp_path, tiny_detector,
                                                        tiny_classifier, cases_dir, open_and_wait):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SMEAR_CASES_DIR": str(cases_dir)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SESSION, str(smears), str(tmp_path / "killed.ini"),
                             str(tiny_detector), str(tiny_classifier)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()
            assert line, f"the session ended before it was ready: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    expected = json.loads(line[len("READY "):])
    assert sum(f["status"] == "reviewed" for f in expected) == 3 and len(expected) == 8

    again = make_window()
    open_and_wait(again, [smears])                                 # the folder: its case opens
    restored = facts(again.model)
    assert [r["name"] for r in restored] == [f["name"] for f in expected]
    for fact, back in zip(expected, restored):                     # 8 analyses and 3 reviews: 11 facts
        assert back["result"] == json.loads(json.dumps(fact["result"])), fact["name"]
        assert (back["status"], back["reviewed_by"], back["reviewed_at"]) == \
            (fact["status"], fact["reviewed_by"], fact["reviewed_at"]), fact["name"]
    assert {f["reviewed_by"] for f in restored if f["reviewed_at"]} == {"tech-killed"}
