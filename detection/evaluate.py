"""Detection evaluation: ground truth (detection.ground_truth) from a YOLO data yaml or a Pascal VOC folder, COCO AP,
precision / recall at an operating confidence and at the best-F1 confidence, confusion matrix, plots.

AP50 and AP50-95 come from pycocotools' COCOeval (101 recall points, IoU .50:.05:.95, area "all"), never from our
own code: they are the numbers papers quote, so they must be the reference implementation's. Everything pycocotools
needs is written beside the metrics (`gt_coco.json`, `predictions.json`), so anyone can recompute them.

Precision / recall at a confidence use greedy matching per image and class: predictions in decreasing confidence
each take the unmatched ground-truth box of highest IoU, if that IoU is >= `iou_match`. Because a prediction's match
never depends on lower-confidence predictions, the matches at any threshold are a prefix of the matches at the
lowest one, so one pass over the low-confidence predictions gives P/R at every threshold exactly.

COCO ids: images, annotations and categories are numbered from 1. pycocotools records a matched ground truth by its
annotation id and treats id 0 as "unmatched", so a ground-truth id of 0 would silently count as a miss.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from detection.ground_truth import (IOU_MATCH, GroundTruth, GtImage, _xyxy, drop_ignored, load_ground_truth,
                                    load_voc_split, load_yolo_split, read_yolo_labels)
from workbench.core.boxes import pairwise_overlaps
from workbench.core.fileio import csv_text, write_atomic
from workbench.core.plots import new_figure, plot_confusion_matrix, save_figure

__all__ = [
    "AP_CONF",
    "COCO_MAX_DETS",
    "ClassMetrics",
    "DetectionMetrics",
    "GroundTruth",
    "GtImage",
    "drop_ignored",
    "Predictor",
    "evaluate_detections",
    "greedy_match",
    "load_ground_truth",
    "load_voc_split",
    "load_yolo_split",
    "coco_eval",
    "read_yolo_labels",
    "run_predictions",
    "write_detection_outputs",
]

log = logging.getLogger(__name__)

AP_CONF = 0.001        # predictions for AP are collected down to this confidence (the PR curve needs the tail)
COCO_MAX_DETS = 300    # per image and class; COCO's default 100 would cut a smear with many cells
# image path -> detections as (xyxy in original pixels, confidence, class name)
Predictor = Callable[[Path], Sequence[tuple[Sequence[float], float, str]]]


# --------------------------------------------------------------------------------------------------------------------
# predictions


def run_predictions(gt: GroundTruth, predict: Predictor,
                    progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run `predict` on every ground-truth image and return COCO results (image_id, category_id, bbox xywh, score),
    rounded as they will be written, so metrics and the written file agree exactly. Predictions of classes the
    ground truth does not have are left out (and counted in the log)."""
    index = {name: k for k, name in enumerate(gt.class_names)}
    results: list[dict[str, Any]] = []
    foreign = 0
    for n, image in enumerate(gt.images, start=1):
        for xyxy, conf, name in predict(image.path):
            k = index.get(str(name).lower())
            if k is None:
                foreign += 1
                continue
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            results.append({"image_id": image.image_id, "category_id": k + 1,
                            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                            "score": round(float(conf), 6)})
        if progress is not None:
            progress(n, len(gt.images))
    if foreign:
        log.info("left out %d predictions of classes not in the ground truth %s", foreign, gt.class_names)
    return results


# --------------------------------------------------------------------------------------------------------------------
# metrics


@dataclass
class ClassMetrics:
    """One class (or all classes together: micro-averaged P/R, COCO's mean AP over classes with instances)."""

    images: int                   # images holding at least one instance (all images for the overall row)
    instances: int
    predictions: int              # predictions at the operating confidence
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    best_f1_conf: float | None    # the confidence threshold with the highest F1 (None without predictions)
    best_f1_precision: float
    best_f1_recall: float
    best_f1: float
    ap50: float | None            # None when the class has no instances (pycocotools gives -1)
    ap50_95: float | None


@dataclass
class DetectionMetrics:
    class_names: list[str]
    overall: ClassMetrics
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]    # rows: true class, then "background"; columns: predicted class, then background
    confusion_labels: list[str]
    per_image: list[dict[str, Any]]
    thresholds: dict[str, Any]
    # plot data: per class, COCOeval's interpolated precision at IoU .5 on its 101 recall points, and our P/R/F1
    # against confidence
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        o = self.overall
        return {"precision": o.precision, "recall": o.recall, "f1": o.f1, "ap50": o.ap50, "ap50_95": o.ap50_95,
                "images": len(self.per_image), "instances": o.instances,
                "best_f1_conf": o.best_f1_conf, "best_f1_precision": o.best_f1_precision,
                "best_f1_recall": o.best_f1_recall, "best_f1": o.best_f1}

    def per_class_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(m) for name, m in self.per_class.items()}


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0  # scikit-learn's zero_division=0 convention


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def greedy_match(pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou_match: float) -> np.ndarray:
    """For predictions sorted by decreasing confidence: index of the matched ground truth, or -1."""
    matched = np.full(len(pred_boxes), -1, dtype=int)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return matched
    iou, _ = pairwise_overlaps(pred_boxes, gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    for i in range(len(pred_boxes)):
        candidates = np.where(free, iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_match:
            matched[i] = j
            free[j] = False
    return matched


def _sweep(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> dict[str, np.ndarray]:
    """P, R, F1 at every distinct confidence threshold (predictions with score >= threshold kept)."""
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)  # end of each tie group
    conf, ctp, cfp = scores[last], ctp[last], cfp[last]
    precision = np.where(ctp + cfp > 0, ctp / np.maximum(ctp + cfp, 1), 0.0)
    recall = ctp / n_gt if n_gt else np.zeros_like(precision, dtype=float)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"conf": conf, "precision": precision, "recall": recall, "f1": f1}


def _best(sweep: dict[str, np.ndarray]) -> tuple[float | None, float, float, float]:
    if len(sweep["conf"]) == 0:
        return None, 0.0, 0.0, 0.0
    i = int(np.argmax(sweep["f1"]))  # first maximum: the highest threshold reaching the best F1
    return float(sweep["conf"][i]), float(sweep["precision"][i]), float(sweep["recall"][i]), float(sweep["f1"][i])


def coco_eval(gt_coco: dict[str, Any], predictions: list[dict[str, Any]], max_dets: int) -> np.ndarray:
    """pycocotools COCOeval (bbox) and its accumulated precision array [T=10 IoUs, R=101, K, A=4 areas, M=3].
    `maxDets` is [1, 10, max_dets]; AP is read at area "all" and max_dets, as COCOeval.summarize does."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise RuntimeError("pycocotools is needed for detection AP: pip install pycocotools") from exc

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt_coco)
        coco_gt.createIndex()
        if predictions:
            coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))  # loadRes adds fields to the dicts it is given
        else:  # loadRes cannot take an empty list (it reads anns[0]); an empty result set is still a valid answer
            coco_dt = COCO()
            coco_dt.dataset = {"info": {}, "images": list(gt_coco["images"]),
                               "categories": copy.deepcopy(gt_coco["categories"]), "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.maxDets = [1, 10, int(max_dets)]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"]


def _ap(precision: np.ndarray, k: int | None = None, iou_index: int | None = None) -> float | None:
    """COCOeval.summarize's mean over entries > -1, at area 'all' and the largest maxDets."""
    p = precision[:, :, :, 0, -1]
    if iou_index is not None:
        p = p[iou_index : iou_index + 1]
    if k is not None:
        p = p[:, :, k]
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else None


def evaluate_detections(gt: GroundTruth, predictions: list[dict[str, Any]], conf: float = 0.25,
                        iou_match: float = IOU_MATCH, max_dets: int = COCO_MAX_DETS,
                        ap_conf: float = AP_CONF) -> DetectionMetrics:
    """Metrics of COCO-format `predictions` (from run_predictions, collected down to `ap_conf`) against `gt`.

    AP50 / AP50-95 from pycocotools with maxDets [1, 10, max_dets] (raised, and logged, when an image has more
    predictions of a class, so none is cut). Precision / recall at the operating `conf` and at the best-F1 conf
    with greedy IoU >= `iou_match` matching. The confusion matrix (classes + background) is at `conf`."""
    n_cls = len(gt.class_names)
    predictions, n_ignored = drop_ignored(gt, predictions, iou_match)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        by_image.setdefault(int(p["image_id"]), []).append(p)
    most = max((sum(1 for p in ps if p["category_id"] == k + 1) for ps in by_image.values() for k in range(n_cls)),
               default=0)
    if most > max_dets:
        log.warning("an image has %d predictions of one class, more than maxDets %d: using maxDets %d so COCOeval "
                    "cuts none", most, max_dets, most)
        max_dets = most
    precision = coco_eval(gt.to_coco(), predictions, max_dets)

    scores: list[list[float]] = [[] for _ in range(n_cls)]
    hits: list[list[bool]] = [[] for _ in range(n_cls)]
    confusion = np.zeros((n_cls + 1, n_cls + 1), dtype=int)
    per_image = []
    for image in gt.images:
        preds = sorted(by_image.get(image.image_id, []), key=lambda p: -p["score"])
        row = {"image": image.path.name, "width": image.width, "height": image.height,
               "instances": len(image.boxes), "predictions": 0, "tp": 0, "fp": 0, "fn": 0}
        for k in range(n_cls):
            pk = [p for p in preds if p["category_id"] == k + 1]
            gk = np.array([b for b, c in image.boxes if c == k], dtype=float).reshape(-1, 4)
            matched = greedy_match(np.array([_xyxy(p["bbox"]) for p in pk], dtype=float).reshape(-1, 4), gk,
                                    iou_match)
            scores[k] += [p["score"] for p in pk]
            hits[k] += list(matched >= 0)
            operating = np.array([p["score"] >= conf for p in pk], dtype=bool)
            tp = int(np.sum((matched >= 0) & operating))
            row["predictions"] += int(operating.sum())
            row["tp"] += tp
            row["fp"] += int(operating.sum()) - tp
            row["fn"] += len(gk) - tp
        _confusion_add(confusion, image, [p for p in preds if p["score"] >= conf], iou_match)
        per_image.append(row)

    instances, images_with = gt.instances(), gt.images_with()
    per_class: dict[str, ClassMetrics] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for k, name in enumerate(gt.class_names):
        s, h = np.array(scores[k], dtype=float), np.array(hits[k], dtype=bool)
        per_class[name] = _class_metrics(s, h, instances[k], images_with[k], conf,
                                         _ap(precision, k, iou_index=0), _ap(precision, k))
        sweep = _sweep(s, h, instances[k])
        curves[name] = {"recall_points": np.linspace(0, 1, 101).tolist(),
                        "precision_iou50": np.where(precision[0, :, k, 0, -1] > -1,
                                                    precision[0, :, k, 0, -1], np.nan).tolist(),
                        **{key: value.tolist() for key, value in sweep.items()}}
    all_s = np.concatenate([np.array(s, dtype=float) for s in scores]) if n_cls else np.zeros(0)
    all_h = np.concatenate([np.array(h, dtype=bool) for h in hits]) if n_cls else np.zeros(0, bool)
    overall = _class_metrics(all_s, all_h, sum(instances), len(gt.images), conf, _ap(precision, iou_index=0),
                             _ap(precision))
    thresholds = {"conf": conf, "ap_conf": ap_conf, "iou_match": iou_match,
                  "ap_iou": [round(0.5 + 0.05 * i, 2) for i in range(10)], "coco_max_dets": max_dets,
                  "coco_area": "all", "best_f1_conf": overall.best_f1_conf,
                  "ignore_regions": sum(len(i.ignore) for i in gt.images), "ignored_predictions": n_ignored}
    return DetectionMetrics(class_names=list(gt.class_names), overall=overall, per_class=per_class,
                            confusion=confusion.tolist(), confusion_labels=[*gt.class_names, "background"],
                            per_image=per_image, thresholds=thresholds, curves=curves)


def _class_metrics(scores: np.ndarray, hits: np.ndarray, n_gt: int, n_images: int, conf: float,
                   ap50: float | None, ap50_95: float | None) -> ClassMetrics:
    operating = scores >= conf
    tp = int(np.sum(hits & operating))
    n_pred = int(operating.sum())
    p, r = _ratio(tp, n_pred), _ratio(tp, n_gt)
    best_conf, bp, br, bf = _best(_sweep(scores, hits, n_gt))
    return ClassMetrics(images=n_images, instances=n_gt, predictions=n_pred, tp=tp, fp=n_pred - tp, fn=n_gt - tp,
                        precision=p, recall=r, f1=_f1(p, r), best_f1_conf=best_conf, best_f1_precision=bp,
                        best_f1_recall=br, best_f1=bf, ap50=ap50, ap50_95=ap50_95)


def _confusion_add(confusion: np.ndarray, image: GtImage, preds: list[dict[str, Any]], iou_match: float) -> None:
    """Class-agnostic greedy matching (so a box of the wrong class shows as a confusion, not as a miss plus a false
    alarm); rows are the true class, columns the predicted one, the last row/column is background."""
    background = confusion.shape[0] - 1
    gt_boxes = np.array([b for b, _ in image.boxes], dtype=float).reshape(-1, 4)
    matched = greedy_match(np.array([_xyxy(p["bbox"]) for p in preds], dtype=float).reshape(-1, 4), gt_boxes,
                            iou_match)
    for p, j in zip(preds, matched):
        confusion[image.boxes[j][1] if j >= 0 else background, p["category_id"] - 1] += 1
    for j in set(range(len(image.boxes))) - set(int(m) for m in matched if m >= 0):
        confusion[image.boxes[j][1], background] += 1


# --------------------------------------------------------------------------------------------------------------------
# outputs


def _plot_pr(path: Path, metrics: DetectionMetrics) -> None:
    fig = new_figure(11, 4.5)
    ax_pr, ax_conf = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name in metrics.class_names:
        c, m = metrics.curves[name], metrics.per_class[name]
        ap = f"{m.ap50:.3f}" if m.ap50 is not None else "n/a"
        line, = ax_pr.plot(c["recall_points"], c["precision_iou50"], label=f"{name} AP50 {ap}")
        ax_pr.plot([m.recall], [m.precision], "o", color=line.get_color())
        if m.best_f1_conf is not None:
            ax_pr.plot([m.best_f1_recall], [m.best_f1_precision], "*", ms=11, color=line.get_color())
        ax_conf.plot(c["conf"], c["precision"], "--", color=line.get_color(), label=f"{name} precision")
        ax_conf.plot(c["conf"], c["recall"], ":", color=line.get_color(), label=f"{name} recall")
        ax_conf.plot(c["conf"], c["f1"], "-", color=line.get_color(), label=f"{name} F1")
    conf = metrics.thresholds["conf"]
    ax_conf.axvline(conf, color="grey", lw=0.8)
    ax_pr.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
              title=f"PR at IoU 0.5 (pycocotools); o conf {conf:g}, * best F1")
    ax_conf.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold",
                title=f"P / R / F1 vs confidence (IoU >= {metrics.thresholds['iou_match']:g})")
    ax_pr.legend(loc="lower left", fontsize=8)
    ax_conf.legend(loc="lower left", fontsize=7)
    save_figure(fig, path)


METRIC_COLUMNS = ["class", "images", "instances", "predictions", "tp", "fp", "fn", "precision", "recall", "f1",
                  "best_f1_conf", "best_f1_precision", "best_f1_recall", "best_f1", "ap50", "ap50_95"]
PER_IMAGE_COLUMNS = ["image", "width", "height", "instances", "predictions", "tp", "fp", "fn"]


def write_detection_outputs(out_dir: Path, gt: GroundTruth, predictions: list[dict[str, Any]],
                            metrics: DetectionMetrics) -> dict[str, dict[str, str]]:
    """Write predictions.json (COCO results), gt_coco.json, metrics.csv (all + per class, at the operating and the
    best-F1 confidence), per_image.csv, pr_curve.png and confusion_matrix.png into `out_dir`. Returns
    {"plots": {name: file}, "tables": {name: file}, "files": {name: file}} with names relative to `out_dir`."""
    out_dir = Path(out_dir)
    write_atomic(out_dir / "predictions.json", json.dumps(predictions))
    write_atomic(out_dir / "gt_coco.json", json.dumps(gt.to_coco()))
    rows = [{"class": "all", **asdict(metrics.overall)}]
    rows += [{"class": name, **asdict(m)} for name, m in metrics.per_class.items()]
    write_atomic(out_dir / "metrics.csv", csv_text(rows, METRIC_COLUMNS))
    write_atomic(out_dir / "per_image.csv", csv_text(metrics.per_image, PER_IMAGE_COLUMNS))
    _plot_pr(out_dir / "pr_curve.png", metrics)
    plot_confusion_matrix(out_dir / "confusion_matrix.png", metrics.confusion, metrics.confusion_labels,
                          f"detections at conf {metrics.thresholds['conf']:g}, IoU >= "
                          f"{metrics.thresholds['iou_match']:g}")
    return {"plots": {"pr_curve": "pr_curve.png", "confusion_matrix": "confusion_matrix.png"},
            "tables": {"metrics": "metrics.csv", "per_image": "per_image.csv"},
            "files": {"predictions": "predictions.json", "ground_truth": "gt_coco.json"}}
