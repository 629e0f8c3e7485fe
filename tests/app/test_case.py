"""Cases (workbench.app.case, workbench.app.annotation.case_store), Qt-free: every change of the session is saved the
moment it happens and a case opens exactly as it was left; the per-image state machine of the session model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workbench.app.annotation.case_store import CaseStore
from workbench.app.annotation.store import ProjectStore
from workbench.app.case import CaseRecorder, auto_case_file, case_file_of, find_case, restore
from workbench.app.results import CellDetection, SmearResult
from workbench.app.session import ANALYSED, EDITED, FAILED, NEW, REVIEWED, SessionModel


def _result(path, n=3, conf0=0.9) -> SmearResult:
    cells = [CellDetection(cell_id=i, xyxy=(10.0 + 40 * i, 12.5, 45.25 + 40 * i, 50.0), det_conf=conf0 - 0.2 * i,
                           label="blast" if i % 2 == 0 else "normal", label_conf=0.75, p_blast=0.8 - 0.3 * i)
             for i in range(n)]
    result = SmearResult(image_path=str(path), width=320, height=240, cells=cells, settings={"det_conf": 0.1},
                         timings_ms={"total": 12.5})
    result.recount()
    return result


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "smears"
    folder.mkdir()
    paths = []
    for i in range(4):
        path = folder / f"im{i}.png"
        path.write_bytes(b"\x89PNG not decoded here")
        paths.append(path)
    return paths


def _facts(model: SessionModel) -> list[tuple]:
    return [(r.path.resolve(), r.status, r.edited, r.sample_id, r.note, r.reviewed_by, r.reviewed_at, r.error,
             None if r.result is None else r.result.to_dict(),
             None if r.model_cells is None else [c.cell_id for c in r.model_cells]) for r in model.records]


def _reopen(case: Path) -> SessionModel:
    model = SessionModel(threshold=0.0)
    with CaseStore(case) as store:
        restore(model, store)
    return model



def test_every_change_is_saved_and_the_case_opens_exactly_as_left(images, tmp_path):
    case = tmp_path / "case" / "project.sqlite"
    model = SessionModel(threshold=0.55)
    model.operator = "tech1"
    recorder = CaseRecorder(model, create=lambda: CaseStore(case, operator="tech1"))
    model.add_paths(images)
    assert not case.exists(), "looking at images makes no case file"
    first, second, third, fourth = model.records
    model.set_result(first, _result(first.path))
    assert case.exists()
    model.set_result(second, _result(second.path, n=2))
    model.set_result(third, SmearResult(image_path=str(third.path), error="cannot decode"))
    model.set_metadata(first, sample_id="P-7", note="smudge cells")
    model.mark_reviewed(first)
    model.replace_cells(second, [second.result.cells[0]])                 # an edit: the model layer is kept
    model.replace_cells(fourth, [CellDetection(0, (1.0, 2.0, 30.0, 40.0), 1.0, "normal", 1.0, 0.0)], size=(320, 240))
    model.set_current(1)
    model.set_threshold(0.45)
    recorder.flush_view()
    assert [r.status for r in model.records] == [REVIEWED, EDITED, FAILED, EDITED]
    assert second.model_cells is not None and len(second.model_cells) == 2
    before = _facts(model)

    reopened = _reopen(case)
    assert _facts(reopened) == before
    assert reopened.current_index == 1 and reopened.threshold == 0.45
    with ProjectStore(case) as project:                                   # what the training export reads
        reviewed = project.images("reviewed")
        assert [e.name for e in reviewed] == ["im0.png"] and reviewed[0].reviewed_by == "tech1"
        # the approved boxes are the ones shown at the display threshold when it was reviewed (0.55)
        assert [c.cell_id for c in project.cells(reviewed[0].id)] == [0, 1]
        assert [c.cell_id for c in project.cells(project.image(images[1]).id)] == [0]
    recorder.detach()


def test_analyse_all_plan_never_takes_edits_or_reviews(images):
    model = SessionModel()
    model.add_paths(images)
    a, b, c, d = model.records
    model.set_result(a, _result(a.path))
    model.set_result(b, _result(b.path))
    model.mark_reviewed(b, user="x")
    model.set_result(c, SmearResult(image_path=str(c.path), error="broken"))
    run, ask = model.analysis_plan(model.records)
    assert run == [c, d] and ask == []                     # not analysed and failed only
    run, ask = model.analysis_plan(model.records, redo=True)
    assert run == [a, c, d] and ask == [b]                 # a review: ask first


def test_keep_edits_makes_the_new_analysis_a_separate_layer(images):
    model = SessionModel(threshold=0.0)
    model.add_paths(images[:1])
    record = model.records[0]
    model.set_result(record, _result(record.path))
    shown = record.result
    drawn = CellDetection(7, (100.0, 100.0, 150.0, 160.0), 1.0, "blast", 1.0, 1.0)
    model.replace_cells(record, [*shown.cells, drawn])
    model.mark_reviewed(record, user="dr")
    model.set_result(record, _result(record.path, n=1), keep_edits=True)
    assert record.result is shown and drawn in record.result.cells and record.status == REVIEWED
    assert [c.cell_id for c in record.model_cells] == [0] and record.reviewed_by == "dr"
    assert record.analysis().cells == record.model_cells
    model.set_result(record, _result(record.path, n=2))                  # replace: edits and review go
    assert record.status == ANALYSED and not record.edited and record.reviewed_at is None
    assert len(record.result.cells) == 2 and record.model_cells is None


def test_labelling_an_unanalysed_image_makes_it_edited_not_analysed(images):
    model = SessionModel()
    model.add_paths(images[:1])
    record = model.records[0]
    model.replace_cells(record, [], size=(64, 48))
    assert record.status == EDITED and record.analysis() is None and not record.needs_analysis
    model.mark_reviewed(record, user="a")
    model.mark_reviewed(record, False)
    assert record.status == EDITED


def test_a_project_from_before_cases_opens_with_its_labels_and_reviews(images, tmp_path):
    with ProjectStore.open(images[0].parent, operator="old") as project:
        entry = project.add_image(images[0], 320, 240)
        project.replace_cells(entry.id, [CellDetection(0, (5.0, 5.0, 25.0, 30.0), 1.0, "blast", 1.0, 1.0)],
                              "import voc", "import")
        project.mark_reviewed(entry.id)
        project.add_image(images[1], 320, 240)
    case = case_file_of(images[0].parent)
    assert case == images[0].parent / "project.sqlite"
    model = _reopen(case)
    by_name = {r.name: r for r in model.records}
    assert by_name["im0.png"].status == REVIEWED and by_name["im0.png"].counts().blast == 1
    assert by_name["im1.png"].status == NEW


def test_case_locations(images, tmp_path):
    root = tmp_path / "cases"
    auto = auto_case_file(images[0].parent, root)
    assert auto.parent.parent == root and auto.parent.name.startswith("smears-")
    assert auto_case_file(tmp_path / "other" / "smears", root) != auto
    assert find_case(images[:1], root) == (None, auto)
    CaseStore(auto).close()
    assert find_case([images[0].parent], root) == (auto, auto)
    named = tmp_path / "named"
    CaseStore(named / "project.sqlite").close()
    assert find_case([named, images[0]], root) == (named / "project.sqlite",) * 2


def test_save_as_keeps_everything_and_rewrites_image_paths(images, tmp_path):
    case = images[0].parent / "project.sqlite"         # beside the images: paths stored relative to it
    model = SessionModel(threshold=0.0)
    recorder = CaseRecorder(model, create=lambda: CaseStore(case))
    model.add_paths(images[:2])
    model.set_result(model.records[0], _result(images[0]))
    model.set_metadata(model.records[1], note="second")
    before = _facts(model)
    copy = recorder.store.copy_to(tmp_path / "elsewhere" / "Patient 12")
    recorder.detach()
    recorder.store.close()
    with CaseStore(copy) as store:
        assert store.name == "Patient 12"
    assert _facts(_reopen(copy)) == before
    with pytest.raises(Exception, match="already saved there"):
        with CaseStore(copy) as store:
            store.copy_to(copy.parent)


def test_a_change_that_cannot_be_saved_is_reported_and_kept(images, tmp_path):
    case = tmp_path / "case" / "project.sqlite"
    model = SessionModel()
    errors = []
    recorder = CaseRecorder(model, create=lambda: CaseStore(case), on_error=errors.append)
    model.add_paths(images[:1])
    record = model.records[0]
    model.set_metadata(record, note="first")
    # another program holds the write lock: the next change cannot be written
    recorder.store._db.conn.execute("PRAGMA busy_timeout=50")     # give up after 50 ms instead of 10 s
    blocker = sqlite3.connect(str(case), timeout=0.05)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        model.set_metadata(record, note="second")
        assert errors and "lock" in errors[-1] and recorder.unsaved_records() == [record]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert recorder.retry() == 0
    assert _reopen(case).records[0].note == "second"


def test_the_first_change_saves_every_image_in_one_commit(images, tmp_path):
    """Making the case writes every image already analysed in ONE transaction (one fsync): a transaction per image
    froze the window for seconds at hundreds of images. The case still opens exactly as left."""
    case = tmp_path / "case" / "project.sqlite"
    model = SessionModel()
    model.add_paths(images)
    for record in model.records:
        model.set_result(record, _result(record.path))
    model.set_metadata(model.records[2], sample_id="P-9", note="late")
    store = CaseStore(case)
    begins = []
    execute = store._db.execute

    def counting(sql, *args):
        if sql.startswith("BEGIN"):
            begins.append(sql)
        return execute(sql, *args)

    store._db.execute = counting
    recorder = CaseRecorder(model, store=store)
    recorder._add(model.records)
    assert len(begins) == 2, begins                         # add_images, then every save in one transaction
    recorder._add(model.records)                            # nothing new: no transaction at all
    assert len(begins) == 2
    assert _facts(_reopen(case)) == _facts(model)
    recorder.detach()
    store.close()


def test_a_failing_save_inside_a_batch_is_rolled_back_alone(tmp_path):
    """Nested transactions are savepoints: the failed one leaves nothing, the others commit together."""
    with ProjectStore(tmp_path / "p" / "project.sqlite", labels=["blast", "normal"]) as store:
        with store.transaction():
            with store.transaction() as db:
                db.execute("INSERT INTO meta VALUES ('kept', '1')")
            with pytest.raises(RuntimeError):
                with store.transaction() as db:
                    db.execute("INSERT INTO meta VALUES ('dropped', '1')")
                    raise RuntimeError("a save failed half-way")
        assert store._meta("kept") == "1" and store._meta("dropped") == ""
