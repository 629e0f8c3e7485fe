"""The GUI's plain-Python session model and exports (no Qt): observers, metadata, review, the live threshold and
the results schema round trip."""

from __future__ import annotations

import json
import shutil
import sys
import subprocess

import pytest

from workbench.app.session import ANALYSED, EDITED, FAILED, NEW, REVIEWED, SessionModel
from workbench.app.results import BatchResult, CellDetection, SmearResult, load_results


def make_result(path, confs=(0.9, 0.6, 0.3), labels=("blast", "normal", "normal"), det_conf=0.25) -> SmearResult:
    cells = [CellDetection(cell_id=i, xyxy=(10.0 + 50 * i, 20.0, 50.0 + 50 * i, 70.5), det_conf=c, label=lab,
                           label_conf=0.8, p_blast=0.8 if lab == "blast" else 0.2)
             for i, (c, lab) in enumerate(zip(confs, labels))]
    result = SmearResult(image_path=str(path), width=640, height=480, cells=cells, settings={"det_conf": det_conf})
    result.recount()
    return result


@pytest.fixture()
def images(tmp_path, bccd_root):
    folder = tmp_path / "a"
    folder.mkdir()
    paths = []
    for image in sorted((bccd_root / "JPEGImages").glob("BloodImage_*.jpg"))[:3]:
        target = folder / image.name
        shutil.copy(image, target)
        paths.append(target)
    return paths


def test_session_module_is_qt_free():
    code = ("import sys, workbench.app.session, workbench.app.outputs; "
            "bad = [m for m in ('PySide6', 'torch', 'ultralytics', 'cv2') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_add_paths_observers_and_navigation(images, tmp_path):
    model = SessionModel(threshold=0.25)
    events = []
    unsubscribe = model.subscribe(lambda event, payload: events.append(event))
    added, problems = model.add_paths([images[0].parent, tmp_path / "missing.jpg"])
    assert [r.path for r in added] == images and problems == [f"{tmp_path / 'missing.jpg'}: file not found"]
    assert events == ["records_added", "current_changed"] and model.current is added[0]
    assert model.add_paths([images[1]]) == ([], [])            # already open
    model.next()
    model.next()
    model.next()                                              # stays on the last image
    assert model.current_index == 2
    model.previous()
    assert model.current_index == 1
    unsubscribe()
    model.next()
    assert events.count("current_changed") == 4   # add, next, next, previous (not the clamped next)


def test_threshold_counts_metadata_review_and_export(images):
    model = SessionModel(threshold=0.25)
    model.add_paths(images)
    first, second, third = model.records
    assert first.counts() is None and first.status == NEW
    model.mark_reviewed(first)                                 # nothing to review before an analysis
    assert first.status == NEW
    model.set_metadata(first, sample_id="  P-000 ", note="note 1")
    model.apply_metadata_to_folder(first)
    assert [r.sample_id for r in model.records] == ["P-000"] * 3 and third.note == "note 1"
    model.set_result(first, make_result(first.path))
    model.set_result(second, make_result(second.path, confs=(0.4,), labels=("blast",)))
    model.set_result(third, SmearResult(image_path=str(third.path), error="broken"))
    assert (first.status, second.status, third.status) == (ANALYSED, ANALYSED, FAILED)
    assert first.result.sample_id == "P-000" and first.result.note == "note 1"
    session = model.session_counts()
    assert (session.wbc, session.blast, session.normal) == (4, 2, 2) and session.blast_pct == 50.0

    model.set_threshold(0.5)
    assert first.counts(model.threshold).wbc == 2 and model.session_counts().wbc == 2
    exported = first.export_result(model.threshold)
    assert [c.cell_id for c in exported.cells] == [0, 1] and exported.counts.wbc == 2
    assert exported.settings["det_conf"] == 0.5
    assert len(first.result.cells) == 3, "the live threshold never changes the analysis result"

    model.mark_reviewed(first, user="tech1")
    assert first.status == REVIEWED and first.reviewed_by == "tech1" and first.reviewed_at
    batch = model.to_batch()
    data = json.loads(batch.to_json())
    assert data["n_images"] == 3 and data["n_failed"] == 1 and data["totals"]["wbc"] == 2
    assert data["images"][0]["note"] == "note 1" and data["images"][0]["reviewed_by"] == "tech1"
    assert json.loads(BatchResult.from_dict(data).to_json()) == data

    model.set_result(first, make_result(first.path))          # a new analysis clears the review
    assert first.status == ANALYSED and first.reviewed_by is None


def test_replace_cells_is_how_cells_change(images):
    model = SessionModel(threshold=0.5)
    model.add_paths(images[:2])
    first, second = model.records
    model.set_result(first, make_result(first.path))
    result = first.result
    events = []
    model.subscribe(lambda event, payload: events.append((event, payload)))
    model.replace_cells(first, result.cells[:1])
    assert events == [("cells_changed", first)] and first.result is result      # the same result object
    assert result.counts.wbc == 1 and first.counts(model.threshold).wbc == 1

    model.mark_reviewed(second)                      # not analysed: nothing to review yet
    model.replace_cells(second, make_result(second.path).cells[:2], size=(640, 480))   # labelled from scratch
    assert second.analysed and second.status == EDITED and second.result.counts.wbc == 2   # edited, not analysed
    assert second.analysis() is None and not second.needs_analysis
    assert (second.result.width, second.result.height) == (640, 480)
    model.mark_reviewed(second, user="tech2", at="2026-11-28T10:00:00+00:00")
    assert (second.reviewed_by, second.reviewed_at) == ("tech2", "2026-11-28T10:00:00+00:00")


def test_old_results_without_the_new_fields_still_load(tmp_path, images):
    model = SessionModel()
    result = make_result(images[0]).to_dict()
    for key in ("note", "reviewed_by", "reviewed_at"):
        result.pop(key)
    old = {"schema_version": 1, "workbench_version": "0.1.0", "created": "", "images": [result]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    batch = load_results(tmp_path / "results.json")
    assert batch.images[0].note is None
    added = model.load_batch(batch, base=tmp_path)
    assert added[0].status == ANALYSED and added[0].note == ""


def test_export_batch_writes_the_cli_layout(tmp_path, images):
    import cv2

    from workbench.app.outputs import export_batch

    model = SessionModel(threshold=0.0)
    model.add_paths(images[:2])
    for record in model.records:
        model.set_result(record, make_result(record.path))
    progress = []
    written = export_batch(model.to_batch(), tmp_path / "out", progress=lambda d, t: progress.append((d, t)))
    names = sorted(p.name for p in written)
    assert names == sorted(["results.json", "cells.csv", f"{images[0].stem}.annotated.png",
                            f"{images[1].stem}.annotated.png"])
    assert progress == [(1, 2), (2, 2)]
    png = cv2.imread(str(tmp_path / "out" / f"{images[0].stem}.annotated.png"))
    assert png.shape == (480, 640, 3)
    assert load_results(tmp_path / "out" / "results.json").totals.wbc == 6
