"""Detection evaluation per source and pooled over sources, and ignore regions, against pycocotools directly."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
import pytest

from detection.evaluate import GroundTruth, GtImage, drop_ignored, evaluate_detections
from workbench.app.eval_detection import _pool, detection_sources, false_cells_per_image


def _gt(name: str, boxes_per_image, ignore_per_image=None) -> GroundTruth:
    images = [GtImage(i + 1, Path(f"/{name}/{i}.jpg"), 640, 480, [(b, 0) for b in boxes],
                      list((ignore_per_image or {}).get(i, [])))
              for i, boxes in enumerate(boxes_per_image)]
    return GroundTruth(["wbc"], images, name, "test", "yolo")


def _pred(image_id: int, xyxy, score: float) -> dict:
    x1, y1, x2, y2 = xyxy
    return {"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def _coco_ap50(gt: GroundTruth, predictions) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt.to_coco()
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(predictions))
        ev = COCOeval(coco, dt, "bbox")
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][0, :, 0, 0, -1]
    return float(np.mean(p[p > -1]))


A = (100, 100, 200, 200)
B = (300, 200, 420, 330)


@pytest.fixture()
def two_sources():
    # source a: 2 images, each one cell, found (one with a lower score); source b: 1 image, 2 cells, one found, plus
    # a false box
    gt_a = _gt("a", [[A], [B]])
    gt_b = _gt("b", [[A, B]])
    pred_a = [_pred(1, A, 0.9), _pred(2, B, 0.6)]
    pred_b = [_pred(1, A, 0.8), _pred(1, (500, 10, 600, 90), 0.7)]
    return (gt_a, pred_a), (gt_b, pred_b)


def test_per_source_and_pooled_match_pycocotools(two_sources):
    (gt_a, pred_a), (gt_b, pred_b) = two_sources
    ma = evaluate_detections(gt_a, pred_a, conf=0.25, max_dets=300)
    mb = evaluate_detections(gt_b, pred_b, conf=0.25, max_dets=300)
    assert ma.overall.ap50 == pytest.approx(_coco_ap50(gt_a, pred_a)) == pytest.approx(1.0)
    assert mb.overall.ap50 == pytest.approx(_coco_ap50(gt_b, pred_b))
    assert (mb.overall.precision, mb.overall.recall) == (0.5, 0.5)
    assert false_cells_per_image(ma) == 0.0 and false_cells_per_image(mb) == 1.0
    results = {"a": (gt_a, pred_a, ma), "b": (gt_b, pred_b, mb)}
    pooled_gt, pooled_pred = _pool(results)
    assert [i.image_id for i in pooled_gt.images] == [1, 2, 3]        # ids renumbered, none shared
    assert {p["image_id"] for p in pooled_pred} == {1, 2, 3}
    pooled = evaluate_detections(pooled_gt, pooled_pred, conf=0.25, max_dets=300)
    # an independent computation: the same boxes in one COCO set built here
    merged = _gt("m", [[A], [B], [A, B]])
    merged_pred = [_pred(1, A, 0.9), _pred(2, B, 0.6), _pred(3, A, 0.8), _pred(3, (500, 10, 600, 90), 0.7)]
    assert pooled.overall.ap50 == pytest.approx(_coco_ap50(merged, merged_pred))
    assert (pooled.overall.precision, pooled.overall.recall) == (0.75, 0.75)
    assert false_cells_per_image(pooled) == round(1 / 3, 4)


def test_ignore_regions_take_predictions_out_of_both_ap_and_pr():
    blob = (450, 300, 600, 450)
    gt = _gt("a", [[A]], {0: [blob]})
    preds = [_pred(1, A, 0.9), _pred(1, (460, 310, 590, 440), 0.95)]   # the second lies in the ignore region
    kept, dropped = drop_ignored(gt, preds)
    assert dropped == 1 and kept == preds[:1]
    metrics = evaluate_detections(gt, preds, conf=0.25, max_dets=300)
    assert metrics.overall.precision == 1.0 and metrics.overall.ap50 == pytest.approx(1.0)
    assert metrics.thresholds["ignored_predictions"] == 1
    # without the region the same box is a false positive, ranked first: AP and precision drop
    plain = evaluate_detections(_gt("a", [[A]]), preds, conf=0.25, max_dets=300)
    assert plain.overall.precision == 0.5 and plain.overall.ap50 < 1.0
    # a prediction that matches a labelled cell is never ignored, even inside a region
    gt2 = _gt("a", [[A]], {0: [(90, 90, 210, 210)]})
    assert drop_ignored(gt2, preds[:1])[1] == 0


def test_eval_list_yaml(tmp_path):
    (tmp_path / "eval.yaml").write_text("sources:\n  bccd: eval/bccd/data.yaml\n  raabin: ../r\n")
    assert detection_sources(tmp_path / "eval.yaml") == {"bccd": tmp_path / "eval/bccd/data.yaml",
                                                         "raabin": tmp_path / "../r"}
    (tmp_path / "data.yaml").write_text("names: {0: wbc}\ntest: images\n")
    assert detection_sources(tmp_path / "data.yaml") is None
    (tmp_path / "bad.yaml").write_text("sources: [a, b]\n")
    from workbench.core.errors import DatasetError

    with pytest.raises(DatasetError, match="sources"):
        detection_sources(tmp_path / "bad.yaml")
