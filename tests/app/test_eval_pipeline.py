"""End-to-end (pipeline) evaluation: known answers on real BCCD boxes and ALL-IDB1 expert points, the CLI with the
tiny models, saved runs and `workbench eval list`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from detection.evaluate import load_ground_truth
from workbench.app import eval_store
from workbench.cli import EXIT_ERROR, EXIT_OK, main
from workbench.core.errors import EvalRunError
from workbench.app.evaluation import ImageTruth, TrueCell, evaluate_pipeline, load_point_truth
from workbench.app.results import CellDetection, SmearResult

from tests.conftest import ALLIDB1, need


@pytest.fixture(scope="module")
def bccd_truth(bccd_root):
    """BCCD test WBC boxes; the cells of every third image are called blasts (so a third of the images are
    'leukaemic'), the rest normal: real boxes, known labels."""
    gt = load_ground_truth(bccd_root, "test", classes=["wbc"])
    truths = {}
    for n, image in enumerate(gt.images):
        label = "blast" if n % 3 == 0 else "normal"
        truths[str(image.path)] = ImageTruth(cells=[TrueCell(tuple(box), label) for box, _ in image.boxes])
    return gt, truths


def cell(i, box, label, det_conf=0.9):
    p = 0.9 if label == "blast" else 0.1
    return CellDetection(cell_id=i, xyxy=tuple(box), det_conf=det_conf, label=label, label_conf=0.9, p_blast=p)


def perfect_results(gt, truths):
    return [SmearResult(image_path=str(i.path), width=i.width, height=i.height,
                        cells=[cell(k, c.xyxy, c.label) for k, c in enumerate(truths[str(i.path)].cells)])
            for i in gt.images]


def test_perfect_predictions(bccd_truth):
    gt, truths = bccd_truth
    m = evaluate_pipeline(perfect_results(gt, truths), truths)
    s = m.summary()
    assert s["wbc_precision"] == s["wbc_recall"] == 1.0
    assert s["blast_precision"] == s["blast_recall"] == s["blast_f1"] == 1.0
    assert s["count_mae"] == 0.0 and m.counts["wbc_mae"] == 0.0
    assert s["image_sensitivity"] == s["image_specificity"] == 1.0
    n_blast = sum(c.label == "blast" for t in truths.values() for c in t.cells)
    assert m.blast["tp"] == n_blast and m.wbc["tp"] == 71
    assert m.cell_confusion == [[n_blast, 0, 0], [0, 71 - n_blast, 0], [0, 0, 0]]


def test_mislabelled_blast_and_false_blast_on_healthy_image(bccd_truth):
    gt, truths = bccd_truth
    results = perfect_results(gt, truths)
    n_blast = sum(c.label == "blast" for t in truths.values() for c in t.cells)
    # a true blast labelled normal: detected, but not a found blast
    blast_image = next(r for r in results if any(c.label == "blast" for c in r.cells))
    first = next(k for k, c in enumerate(blast_image.cells) if c.label == "blast")
    blast_image.cells[first] = cell(first, blast_image.cells[first].xyxy, "normal")
    # a healthy image (all cells normal) with one normal cell called blast
    healthy = next(r for r in results if r.cells and truths[r.image_path].n_blast == 0)
    healthy.cells[0] = cell(0, healthy.cells[0].xyxy, "blast")
    m = evaluate_pipeline(results, truths)
    assert m.wbc["precision"] == m.wbc["recall"] == 1.0  # detection is untouched
    assert (m.blast["tp"], m.blast["fp"], m.blast["fn"]) == (n_blast - 1, 1, 1)
    assert m.blast["recall"] == pytest.approx((n_blast - 1) / n_blast)
    assert m.blast["precision"] == pytest.approx((n_blast - 1) / n_blast)
    assert m.counts["blast_mae"] == pytest.approx(2 / len(results))
    negatives = sum(1 for t in truths.values() if t.n_blast == 0)
    assert m.image_level["fp"] == 1 and m.image_level["specificity"] == pytest.approx((negatives - 1) / negatives)
    row = next(r for r in m.per_image if r["image"] == Path(healthy.image_path).name)
    assert (row["true_blast"], row["pred_blast"], row["blast_fp"], row["blast_count_error"]) == (0, 1, 1, 1)
    assert m.cell_confusion[0][1] == 1 and m.cell_confusion[1][0] == 1


def test_missed_and_spurious_cells(bccd_truth):
    gt, truths = bccd_truth
    results = perfect_results(gt, truths)
    target = next(r for r in results if len(r.cells) >= 1 and r.cells[0].label == "blast")
    target.cells.pop(0)  # missed blast
    empty = next(r for r in results if not r.cells)  # an image without any WBC
    empty.cells.append(cell(0, (0.0, 0.0, 150.0, 150.0), "blast", det_conf=0.4))  # spurious blast
    m = evaluate_pipeline(results, truths)
    assert (m.wbc["tp"], m.wbc["fp"], m.wbc["fn"]) == (70, 1, 1)
    assert (m.blast["fp"], m.blast["fn"]) == (1, 1)
    assert m.cell_confusion[0][2] == 1 and m.cell_confusion[2][0] == 1
    # the failed images are left out, not counted as misses
    failed = SmearResult(image_path=str(gt.images[1].path), error="cannot decode")
    m2 = evaluate_pipeline([r for r in results if r.image_path != failed.image_path] + [failed], truths)
    assert m2.images == len(results) - 1


def test_points_mode_hits(tmp_path):
    xyc = need(ALLIDB1 / "xyc")
    labels = {name: xyc / f"{name}.xyc" for name in ("Im006_1", "Im100_0")}
    images = [ALLIDB1 / "im" / f"{name}.jpg" for name in labels]
    truths = load_point_truth(images, xyc)
    points = truths[images[0]].points
    assert len(points) == 15 and truths[images[1]].points == []  # a healthy image's file is empty
    # a 60 px box around every point, blast: all hit; a second box on the first point only one hit; a box on empty
    # background and a blast on the healthy image are false
    cells = [cell(k, (x - 30, y - 30, x + 30, y + 30), "blast") for k, (x, y) in enumerate(points)]
    x, y = points[0]
    cells.append(cell(len(cells), (x - 25, y - 25, x + 35, y + 35), "blast", det_conf=0.5))
    cells.append(cell(len(cells), (0.0, 0.0, 5.0, 5.0), "blast", det_conf=0.5))
    cells.append(cell(len(cells), (x - 30, y - 30, x + 30, y + 30), "normal", det_conf=0.5))  # normal: not judged
    results = [SmearResult(image_path=str(images[0]), cells=cells),
               SmearResult(image_path=str(images[1]), cells=[cell(0, (100.0, 100.0, 200.0, 200.0), "blast")])]
    m = evaluate_pipeline(results, {str(k): v for k, v in truths.items()})
    assert m.mode == "points" and m.wbc is None and m.cell_confusion is None
    assert (m.blast["tp"], m.blast["fp"], m.blast["fn"]) == (15, 3, 0)
    assert m.image_level == {**m.image_level, "tp": 1, "fp": 1, "sensitivity": 1.0, "specificity": 0.0}
    s = m.summary()
    assert s["wbc_precision"] is None and s["blast_recall"] == 1.0
    assert s["count_mae"] == pytest.approx((2 + 1) / 2)


# --------------------------------------------------------------------------------------------------------------------
# CLI


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def smears(tmp_path_factory, bccd_root):
    """Two BCCD test images (linked) with YOLO labels of their WBCs: the first image's cells blast, the second's
    normal; classes.txt names them. And a settings file keeping the tiny detector's boxes few."""
    gt = load_ground_truth(bccd_root, "test", classes=["wbc"])
    root = tmp_path_factory.mktemp("smears")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    chosen = [i for i in gt.images if i.boxes][:2]
    for n, image in enumerate(chosen):
        (root / "images" / image.path.name).symlink_to(image.path)
        lines = []
        for (x1, y1, x2, y2), _ in image.boxes:
            cx, cy = (x1 + x2) / 2 / image.width, (y1 + y2) / 2 / image.height
            lines.append(f"{0 if n == 0 else 1} {cx:.6f} {cy:.6f} {(x2 - x1) / image.width:.6f} "
                         f"{(y2 - y1) / image.height:.6f}\n")
        (root / "labels" / f"{image.path.stem}.txt").write_text("".join(lines))
    (root / "labels" / "classes.txt").write_text("blast\nnormal\n")
    (root / "few.yaml").write_text(yaml.safe_dump({"detector": {"max_det": 10}, "tiling": {"mode": "off"}}))
    return root


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "eval-runs"
    monkeypatch.setattr(eval_store, "EVAL_RUNS_DIR", root)
    return root


def weights(tiny_detector, tiny_classifier):
    return ["--detector", tiny_detector, "--classifier", tiny_classifier, "--conf", "0.0001"]


def test_cli_eval_pipeline_boxes_points_and_list(capsys, tmp_path, smears, runs_root, tiny_detector,
                                                 tiny_classifier):
    code, stdout, err = run(capsys, "eval", "pipeline", "--images", smears / "images", "--labels", smears / "labels",
                            "--config", smears / "few.yaml", *weights(tiny_detector, tiny_classifier))
    assert code == EXIT_OK, err
    (box_run,) = [p for p in runs_root.iterdir() if p.is_dir()]
    assert box_run.name.endswith("-pipeline")
    m = json.loads((box_run / "metrics.json").read_text())
    assert m["kind"] == "pipeline" and m["mode"] == "boxes" and m["names"] == ["blast", "normal"]
    assert set(m["summary"]) >= set(eval_store.SUMMARY_KEYS["pipeline"])
    assert m["weights"]["detector"]["path"] == str(tiny_detector)
    assert m["weights"]["classifier"]["path"] == str(tiny_classifier)
    assert m["summary"]["images"] == 2 and m["summary"]["true_blasts"] >= 1
    assert m["thresholds"]["iou_match"] == 0.5 and m["thresholds"]["det_conf"] == 0.0001
    # the tiny classifier stores no operating threshold: the run must not claim one chosen on validation
    assert m["thresholds"]["blast"] == "classifier label: p_blast >= 0.5 (the arg-max: these weights store no " \
                                      "operating threshold)"
    for rel in [*m["plots"].values(), *m["tables"].values()]:
        assert (box_run / rel).stat().st_size > 0
    per_image = (box_run / "per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("image,") and len(per_image) == 3
    results = json.loads((box_run / "results.json").read_text())
    assert sum(len(i["cells"]) for i in results["images"]) == m["wbc"]["tp"] + m["wbc"]["fp"]
    assert "blasts P" in stdout

    # points mode on one ALL-IDB1 smear, written outside the runs root with --out: still listed
    pts = tmp_path / "pts"
    (pts / "images").mkdir(parents=True)
    (pts / "images" / "Im006_1.jpg").symlink_to(need(ALLIDB1 / "im" / "Im006_1.jpg"))
    time.sleep(1.1)  # distinct 'created' seconds, so the listing order is defined
    code, _, err = run(capsys, "eval", "pipeline", "--images", pts / "images", "--labels", ALLIDB1 / "xyc", "--points",
                       "--config", smears / "few.yaml", "--out", tmp_path / "points-run",
                       *weights(tiny_detector, tiny_classifier))
    assert code == EXIT_OK, err
    pm = json.loads((tmp_path / "points-run" / "metrics.json").read_text())
    assert pm["mode"] == "points" and pm["summary"]["wbc_precision"] is None
    assert pm["summary"]["true_blasts"] == 15 and "cell_confusion" not in pm["plots"]

    runs = eval_store.list_eval_runs()
    assert [r.path.resolve() for r in runs] == [(tmp_path / "points-run").resolve(), box_run.resolve()]
    assert all(r.kind == "pipeline" and r.plots and all(p.is_file() for p in r.plots.values()) for r in runs)
    code, listed, _ = run(capsys, "eval", "list")
    lines = listed.strip().splitlines()
    assert code == EXIT_OK and len(lines) == 2 and str(tmp_path / "points-run") in lines[0]
    assert "blast F1" in lines[1] and str(box_run) in lines[1]
    code, listed, _ = run(capsys, "eval", "list", "--kind", "detection")
    assert "no eval runs" in listed


def test_saved_run_errors(tmp_path):
    with pytest.raises(EvalRunError, match="not an eval run"):
        eval_store.load_eval_run(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(EvalRunError, match="unreadable"):
        eval_store.load_eval_run(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.json").write_text(json.dumps({"kind": "other"}))
    assert eval_store.list_eval_runs(tmp_path) == []  # damaged runs are skipped, never fatal


def test_cli_eval_pipeline_bad_inputs(capsys, tmp_path, smears, runs_root, tiny_detector, tiny_classifier):
    import shutil

    args = weights(tiny_detector, tiny_classifier)
    code, _, err = run(capsys, "eval", "pipeline", "--images", smears / "images", "--labels", tmp_path / "no", *args)
    assert code == EXIT_ERROR and err.startswith("error: labels folder not found") and len(err.splitlines()) == 1
    labels = tmp_path / "labels"
    shutil.copytree(smears / "labels", labels)
    (labels / "classes.txt").write_text("lymphocyte\nnormal\n")  # names that are not the classifier's
    code, _, err = run(capsys, "eval", "pipeline", "--images", smears / "images", "--labels", labels, *args)
    assert code == EXIT_ERROR and "must be blast / normal" in err and len(err.splitlines()) == 1
    (labels / "classes.txt").write_text("blast\nnormal\n")
    label = sorted(labels.glob("*.txt"))[0]
    label.write_text("2 0.5 0.5 0.1 0.1\n")  # class id out of range
    code, _, err = run(capsys, "eval", "pipeline", "--images", smears / "images", "--labels", labels, *args)
    assert code == EXIT_ERROR and "class id 2 is out of range" in err and len(err.splitlines()) == 1
    assert not runs_root.exists() or not any(runs_root.iterdir())  # nothing saved for a refused run


def test_per_group_numbers_against_a_hand_computed_case(bccd_truth):
    """Same errors as above, read per camera x diagnosis: the false blast of the healthy image shows only in the
    'no blasts' group, the missed blast only in the 'blasts' group."""
    gt, truths = bccd_truth
    results = perfect_results(gt, truths)
    healthy = next(r for r in results if r.cells and truths[r.image_path].n_blast == 0)
    healthy.cells[0] = cell(0, healthy.cells[0].xyxy, "blast")
    leukaemic = next(r for r in results if any(c.label == "blast" for c in r.cells))
    k = next(i for i, c in enumerate(leukaemic.cells) if c.label == "blast")
    leukaemic.cells[k] = cell(k, leukaemic.cells[k].xyxy, "normal")
    m = evaluate_pipeline(results, truths)
    assert set(m.per_group) == {"640x480 / blasts", "640x480 / no blasts"}
    with_blasts, without = m.per_group["640x480 / blasts"], m.per_group["640x480 / no blasts"]
    n_with = sum(1 for t in truths.values() if t.n_blast > 0)
    n_blast = sum(t.n_blast for t in truths.values())
    assert with_blasts["images"] == n_with and without["images"] == len(results) - n_with
    assert (with_blasts["blast"]["tp"], with_blasts["blast"]["fp"], with_blasts["blast"]["fn"]) == (n_blast - 1, 0, 1)
    assert (without["blast"]["tp"], without["blast"]["fp"], without["blast"]["fn"]) == (0, 1, 0)
    assert without["false_blasts_per_image"] == round(1 / without["images"], 4)
    assert m.summary()["false_blasts_per_image_without_blasts"] == round(1 / without["images"], 4)
    assert {r["group"] for r in m.per_image} == set(m.per_group)
