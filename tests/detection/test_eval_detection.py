"""Detection evaluation on real BCCD ground truth: known answers, and agreement with pycocotools run independently on
the written predictions.json / gt_coco.json."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from workbench.core.errors import DatasetFormatError
from detection.evaluate import evaluate_detections, load_ground_truth, run_predictions, write_detection_outputs
from workbench.cli import EXIT_ERROR, EXIT_OK, main


def reference_ap(out: Path, max_dets: int | None = None, cat_id: int | None = None) -> tuple[float, float]:
    """AP50-95 and AP50 from pycocotools on the files the eval wrote.

    max_dets None: COCOeval's defaults and its own summarize() (stats[0], stats[1]), the numbers papers quote; valid
    when no image has over 100 predictions of a class. With max_dets: maxDets [1, 10, max_dets] and the mean of the
    accumulated precision at that maxDets, because summarize() hard-codes maxDets=100 for stats[0] (it returns -1
    when 100 is not in maxDets)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out / "gt_coco.json"))
        dt = gt.loadRes(str(out / "predictions.json"))
        ev = COCOeval(gt, dt, "bbox")
        if max_dets is not None:
            ev.params.maxDets = [1, 10, max_dets]
        if cat_id is not None:
            ev.params.catIds = [cat_id]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if max_dets is None:
        return float(ev.stats[0]), float(ev.stats[1])
    p = ev.eval["precision"][:, :, :, 0, -1]
    return float(np.mean(p[p > -1])), float(np.mean(p[0][p[0] > -1]))


@pytest.fixture(scope="module")
def wbc_gt(bccd_root):
    return load_ground_truth(bccd_root, "test", classes=["wbc"])


def predictor(gt, edit=None):
    """Ground truth as predictions (conf 0.9), optionally edited per image: edit(image, list) -> list."""
    def predict(path):
        image = next(i for i in gt.images if i.path == path)
        preds = [(list(box), 0.9, gt.class_names[c]) for box, c in image.boxes]
        return edit(image, preds) if edit else preds
    return predict


def test_bccd_test_split_as_published(wbc_gt):
    assert len(wbc_gt.images) == 72 and wbc_gt.instances() == [71]
    assert sum(not i.boxes for i in wbc_gt.images) == 4  # BCCD test images without a WBC
    assert [i.image_id for i in wbc_gt.images] == list(range(1, 73))
    coco = wbc_gt.to_coco()
    assert min(a["id"] for a in coco["annotations"]) == 1  # pycocotools reads annotation id 0 as "unmatched"


def test_perfect_predictions(tmp_path, wbc_gt):
    preds = run_predictions(wbc_gt, predictor(wbc_gt))
    m = evaluate_detections(wbc_gt, preds, conf=0.25)
    s = m.summary()
    assert s["ap50"] == s["ap50_95"] == 1.0
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    assert (s["images"], s["instances"]) == (72, 71)
    assert m.confusion == [[71, 0], [0, 0]]
    files = write_detection_outputs(tmp_path, wbc_gt, preds, m)
    assert reference_ap(tmp_path) == (1.0, 1.0)
    for rel in [*files["plots"].values(), *files["tables"].values(), *files["files"].values()]:
        assert (tmp_path / rel).stat().st_size > 0


def test_shifted_and_dropped_box_agree_with_pycocotools(tmp_path, wbc_gt):
    first_with_box = next(i.image_id for i in wbc_gt.images if i.boxes)
    second = next(i.image_id for i in wbc_gt.images if i.boxes and i.image_id != first_with_box)

    def edit(image, preds):
        if image.image_id == first_with_box:  # shifted by 15% of its width: still IoU >= 0.5, worse at high IoU
            (x1, y1, x2, y2), conf, name = preds[0]
            dx = 0.15 * (x2 - x1)
            preds[0] = ([x1 + dx, y1, x2 + dx, y2], 0.6, name)
        if image.image_id == second:
            preds = preds[1:]  # dropped
        return preds

    preds = run_predictions(wbc_gt, predictor(wbc_gt, edit))
    m = evaluate_detections(wbc_gt, preds, conf=0.25)
    write_detection_outputs(tmp_path, wbc_gt, preds, m)
    ap50_95, ap50 = reference_ap(tmp_path)
    assert m.overall.ap50 == pytest.approx(ap50, abs=1e-3)
    assert m.overall.ap50_95 == pytest.approx(ap50_95, abs=1e-3)
    assert ap50 < 1.0 and ap50_95 < ap50
    assert (m.overall.tp, m.overall.fp, m.overall.fn) == (70, 0, 1)
    assert m.overall.recall == pytest.approx(70 / 71) and m.overall.precision == 1.0


def test_false_box_on_image_without_wbc(tmp_path, wbc_gt):
    empty = next(i for i in wbc_gt.images if not i.boxes)

    def edit(image, preds):
        return preds + [([10.0, 10.0, 200.0, 200.0], 0.5, "wbc")] if image.image_id == empty.image_id else preds

    preds = run_predictions(wbc_gt, predictor(wbc_gt, edit))
    m = evaluate_detections(wbc_gt, preds, conf=0.25)
    write_detection_outputs(tmp_path, wbc_gt, preds, m)
    ap50_95, ap50 = reference_ap(tmp_path)
    # COCOeval counts detections on an image without ground truth as false positives, and so do we
    assert (m.overall.ap50, m.overall.ap50_95) == (pytest.approx(ap50, abs=1e-3), pytest.approx(ap50_95, abs=1e-3))
    assert (m.overall.tp, m.overall.fp, m.overall.fn) == (71, 1, 0)
    assert m.overall.precision == pytest.approx(71 / 72)
    # the false box scores 0.5, every true one 0.9: the best-F1 threshold leaves it out
    assert m.overall.best_f1_conf == pytest.approx(0.9) and m.overall.best_f1 == 1.0
    assert m.confusion == [[71, 0], [1, 0]]
    row = next(r for r in m.per_image if r["image"] == empty.path.name)
    assert (row["instances"], row["fp"]) == (0, 1)


def test_empty_predictions(tmp_path, wbc_gt):
    m = evaluate_detections(wbc_gt, [], conf=0.25)
    s = m.summary()
    assert (s["ap50"], s["ap50_95"], s["recall"], s["precision"]) == (0.0, 0.0, 0.0, 0.0)
    assert s["best_f1_conf"] is None
    files = write_detection_outputs(tmp_path, wbc_gt, [], m)
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert (tmp_path / files["plots"]["pr_curve"]).is_file()


def test_three_classes_per_class_ap_matches_pycocotools(tmp_path, bccd_root):
    gt = load_ground_truth(bccd_root, "test")
    assert gt.class_names == ["wbc", "rbc", "platelets"]
    rng = np.random.default_rng(0)

    def edit(image, preds):
        out = []
        for box, _, name in preds:
            if name == "platelets" and rng.random() < 0.3:
                continue  # missed
            jitter = rng.normal(0, 4, 4) if name == "rbc" else np.zeros(4)
            out.append((list(np.asarray(box) + jitter), float(rng.uniform(0.3, 1.0)), name))
        return out

    preds = run_predictions(gt, predictor(gt, edit))
    m = evaluate_detections(gt, preds, conf=0.25)
    write_detection_outputs(tmp_path, gt, preds, m)
    ap50_95, ap50 = reference_ap(tmp_path)
    assert (m.overall.ap50, m.overall.ap50_95) == (pytest.approx(ap50, abs=1e-3), pytest.approx(ap50_95, abs=1e-3))
    for k, name in enumerate(gt.class_names):
        ref = reference_ap(tmp_path, cat_id=k + 1)
        got = m.per_class[name]
        assert (got.ap50_95, got.ap50) == (pytest.approx(ref[0], abs=1e-3), pytest.approx(ref[1], abs=1e-3)), name
    assert m.per_class["wbc"].ap50 == 1.0 and m.per_class["platelets"].recall < 1.0


def test_voc_folder_and_yolo_yaml_give_the_same_ground_truth(tmp_path, bccd_root, wbc_gt):
    from workbench.builders.bccd import build_bccd_yolo

    build_bccd_yolo(bccd_root, tmp_path / "yolo", classes=("wbc",), splits=("test",))
    yolo = load_ground_truth(tmp_path / "yolo" / "data.yaml", "test")
    assert yolo.class_names == wbc_gt.class_names
    assert [i.path.name for i in yolo.images] == [i.path.name for i in wbc_gt.images]
    for a, b in zip(yolo.images, wbc_gt.images):
        assert (a.width, a.height) == (b.width, b.height)
        assert len(a.boxes) == len(b.boxes), a.path.name
        for (box_a, ca), (box_b, cb) in zip(a.boxes, b.boxes):
            assert ca == cb and np.allclose(box_a, box_b, atol=0.01)


def test_yolo_yaml_variants_and_errors(tmp_path, bccd_root):
    from workbench.builders.bccd import build_bccd_yolo

    build_bccd_yolo(bccd_root, tmp_path / "yolo", classes=("wbc", "rbc"), splits=("val", "test"), limit=3)
    root = tmp_path / "yolo"
    # list-valued split, names as a list, a missing label file
    (root / "labels" / "test" / sorted((root / "labels" / "test").iterdir())[0].name).unlink()
    data = tmp_path / "list.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "test": ["images/val", "images/test"], "names": ["WBC", "RBC"]}))
    gt = load_ground_truth(data, "test")
    assert gt.class_names == ["wbc", "rbc"] and len(gt.images) == 6
    assert len(gt.notes["images_without_label_file"]) == 1
    assert gt.select(["wbc"]).instances()[0] == sum(c == 0 for i in gt.images for _, c in i.boxes)
    with pytest.raises(DatasetFormatError, match="do not include"):
        gt.select(["platelets"])
    # a class id out of range names the file and line
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text(label.read_text() + "5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetFormatError, match=rf"{label.name}:\d+: class id 5 is out of range"):
        load_ground_truth(data, "test")
    with pytest.raises(DatasetFormatError, match="has no 'train' split"):
        load_ground_truth(data, "train")
    with pytest.raises(DatasetFormatError, match="not found"):
        load_ground_truth(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def small_yolo(tmp_path_factory, bccd_root):
    """BCCD test as YOLO, first 3 images, plus one image without any label file."""
    from workbench.builders.bccd import build_bccd_yolo

    root = tmp_path_factory.mktemp("eval_det") / "yolo"
    build_bccd_yolo(bccd_root, root, classes=("wbc",), splits=("test",), limit=3)
    return root / "data.yaml"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_eval_detection_writes_everything(capsys, tmp_path, small_yolo, tiny_detector):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "eval", "detection", "--data", small_yolo, "--weights", tiny_detector,
                            "--out", out, "--conf", "0.01")
    assert code == EXIT_OK, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "detection" and metrics["split"] == "test" and metrics["data"] == str(small_yolo)
    assert set(metrics) >= {"created", "workbench_version", "weights", "thresholds", "summary", "per_class", "plots"}
    assert metrics["weights"]["path"] == str(tiny_detector) and len(metrics["weights"]["sha256"]) == 64
    t = metrics["thresholds"]
    assert (t["conf"], t["ap_conf"], t["iou_match"], t["coco_max_dets"]) == (0.01, 0.001, 0.5, 300)
    s = metrics["summary"]
    assert (s["images"], s["instances"]) == (3, 3)
    assert set(metrics["per_class"]) == {"wbc"}
    for rel in [*metrics["plots"].values(), *metrics["tables"].values()]:
        assert (out / rel).stat().st_size > 0
    assert set(metrics["plots"]) == {"pr_curve", "confusion_matrix"}
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and min(p["score"] for p in preds) >= 0.001
    ap50_95, ap50 = reference_ap(out, t["coco_max_dets"])
    assert s["ap50"] == pytest.approx(ap50, abs=1e-3) and s["ap50_95"] == pytest.approx(ap50_95, abs=1e-3)
    assert "AP50" in stdout and str(out) in stdout


def test_cli_eval_detection_on_voc_folder(capsys, tmp_path, bccd_root, tiny_detector):
    voc = tmp_path / "voc"  # a 2-image VOC split, linked from BCCD
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    stems = (bccd_root / "ImageSets" / "Main" / "test.txt").read_text().split()[:2]
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(stems) + "\n")
    for sub, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
        (voc / sub).mkdir()
        for stem in stems:
            (voc / sub / f"{stem}{suffix}").symlink_to(bccd_root / sub / f"{stem}{suffix}")
    code, _, err = run(capsys, "eval", "detection", "--data", voc, "--weights", tiny_detector, "--out", tmp_path / "r")
    assert code == EXIT_OK, err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["ground_truth"]["source"] == "voc" and metrics["ground_truth"]["classes"] == ["wbc"]
    assert metrics["summary"]["images"] == 2


def test_cli_eval_detection_bad_inputs(capsys, tmp_path, small_yolo, tiny_detector):
    code, _, err = run(capsys, "eval", "detection", "--data", tmp_path / "missing.yaml", "--weights", tiny_detector)
    assert code == EXIT_ERROR and err.startswith("error: data yaml not found") and len(err.splitlines()) == 1
    # names that do not include the detector's class
    other = tmp_path / "rbc.yaml"
    raw = yaml.safe_load(small_yolo.read_text())
    other.write_text(yaml.safe_dump({**raw, "names": {0: "rbc"}}))
    code, _, err = run(capsys, "eval", "detection", "--data", other, "--weights", tiny_detector, "--out", tmp_path)
    assert code == EXIT_ERROR and "do not include ['wbc']" in err and len(err.splitlines()) == 1
    # a label with a class id out of range
    bad_root = tmp_path / "bad"
    shutil.copytree(small_yolo.parent, bad_root, symlinks=True)
    label = sorted((bad_root / "labels" / "test").iterdir())[0]
    label.write_text("3 0.5 0.5 0.2 0.2\n")
    bad = bad_root / "data.yaml"
    bad.write_text(yaml.safe_dump({**raw, "path": str(bad_root)}))
    code, _, err = run(capsys, "eval", "detection", "--data", bad, "--weights", tiny_detector, "--out", tmp_path)
    assert code == EXIT_ERROR and "class id 3 is out of range" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "metrics.json").exists()


def test_help(capsys):
    for argv in (["eval", "--help"], ["eval", "detection", "--help"], ["eval", "classifier", "--help"],
                 ["eval", "pipeline", "--help"], ["eval", "list", "--help"]):
        assert main(argv) == 0
        assert "usage: workbench eval" in capsys.readouterr().out
    assert main(["eval"]) == EXIT_OK and "detection" in capsys.readouterr().out
