"""`workbench eval`: detection, classifier and end-to-end (pipeline) evaluation runs, each saved as a run folder with
metrics.json (see workbench.eval_runs), CSV tables and PNG plots.

- detection: detection.evaluate (pycocotools AP, P/R at the operating and the best-F1 confidence) on a YOLO data
  yaml or VOC folder split, with the detector run exactly as `analyze` runs it (tiling included).
- classifier: classification.evaluate on labelled crops, optionally against a second classifier (McNemar).
- pipeline: the whole SmearAnalyzer on smear images against per-image cell boxes labelled blast / normal (YOLO txt
  + names file) or, with points=True, expert blast points (ALL-IDB .xyc).

Pipeline matching: predicted cells, in decreasing detector confidence, each take the unmatched true cell of highest
IoU if it is >= 0.5 (label ignored), which gives WBC detection P/R. A true blast counts as found only if its matched
cell is labelled blast; a predicted blast is false unless matched to a true blast. With points, a predicted blast box
(again in decreasing detector confidence) hits the unhit point inside it nearest its centre; points mark blasts only,
so WBC detection P/R are not defined there (null).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from detection.fileio import csv_text
from workbench.errors import DatasetError, WorkbenchError
from workbench.eval_runs import base_metrics, new_run_dir, save_run
from workbench.results import SmearResult, write_atomic

log = logging.getLogger(__name__)

IOU_MATCH = 0.5
POINTS_SUFFIX = ".xyc"
NAMES_FILES = ("classes.txt", "names.txt", "data.yaml", "names.yaml")
Progress = Callable[[int, int], None]
XYXY = tuple[float, float, float, float]


@dataclass
class EvalOutcome:
    """What a finished eval run wrote: its folder, the metrics.json content, and images that could not be used."""

    run_dir: Path
    metrics: dict[str, Any]
    failed: list[str] = field(default_factory=list)


def _weights_info(info) -> dict[str, str]:
    return {"name": info.name, "path": info.path, "sha256": info.sha256}


def _dataset_error(exc: Exception) -> DatasetError:
    return DatasetError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# --------------------------------------------------------------------------------------------------------------------
# detection


def detection_sources(data: Path | str) -> dict[str, Path] | None:
    """{source name: data} when `data` is an eval list (a yaml with `sources: {name: data yaml or VOC folder}`, as
    `workbench dataset detection` writes it), else None (one dataset)."""
    path = Path(data)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None   # load_ground_truth reports what is wrong with it
    if not isinstance(raw, dict) or "sources" not in raw:
        return None
    sources = raw["sources"]
    if not isinstance(sources, dict) or not sources or not all(isinstance(k, str) and isinstance(v, str)
                                                                 for k, v in sources.items()):
        raise DatasetError(f"{path}: 'sources' must map source names to data yaml / VOC folder paths")
    return {name: (path.parent / value) for name, value in sources.items()}


def false_cells_per_image(metrics) -> float:
    """Mean false positives per image at the operating threshold (per_image rows of detection.evaluate)."""
    rows = metrics.per_image
    return round(float(np.mean([r["fp"] for r in rows])), 4) if rows else 0.0


def run_detection_eval(data: Path | str, split: str, config: dict[str, Any], out: Path | str | None = None,
                       progress: Progress | None = None, manifest=None) -> EvalOutcome:
    """Evaluate the detector of `config` (detector.weights, conf = the operating threshold, tiling) on a split of
    one dataset, or of each source of an eval list (detection_sources): per source and pooled over the sources.

    The detector is run once at detection.evaluate.AP_CONF (0.001) with the configured NMS IoU, imgsz, max_det and
    tiling, after the pixel-size estimate and resampling of `analyze` (one case per source); AP uses all those
    predictions, precision / recall and the false white cells per image keep those >= the operating conf."""
    from detection.evaluate import (AP_CONF, DatasetFormatError, drop_ignored, evaluate_detections,
                                    load_ground_truth, run_predictions, write_detection_outputs)
    from workbench.images import load_image
    from workbench.pipeline import load_detector  # the loader analyze uses: same weights checks and tiling
    from workbench.pixel_size import PixelSizeRuler
    from workbench.weights import Manifest

    if importlib.util.find_spec("pycocotools") is None:  # AP comes from it: say so before any work is done
        raise WorkbenchError("detection eval needs pycocotools: pip install pycocotools")
    sources = detection_sources(data) or {"": Path(data)}
    gts = {}
    for name, source in sources.items():
        try:
            gts[name] = load_ground_truth(source, split)  # data problems come before the (slower) model load
        except DatasetFormatError as exc:
            raise _dataset_error(exc if not name else DatasetFormatError(f"source {name}: {exc}")) from None
    operating_conf = float(config["detector"]["conf"])
    if not 0 < operating_conf <= 1:
        raise WorkbenchError(f"detector conf must be in (0, 1], not {operating_conf}")
    ap_config = copy.deepcopy(config)
    ap_config["detector"]["conf"] = min(AP_CONF, operating_conf)
    detector, info = load_detector(ap_config, manifest or Manifest.load())
    max_pixels = config["images"]["max_pixels"]
    max_dets = max(300, int(config["detector"]["max_det"]))
    run_dir = new_run_dir("detection", out)
    per_source: dict[str, dict[str, Any]] = {}
    scales: dict[str, list[dict[str, Any]]] = {}
    results = {}
    for name, gt in gts.items():
        try:
            gt = gt.select([detector.class_name])
        except DatasetFormatError as exc:
            raise _dataset_error(exc) from None
        ruler = PixelSizeRuler(config["scale"], detector.red_cell_ruler)   # a source is one microscope: one case
        measured: list[dict[str, Any]] = []

        def predict(path: Path, ruler=ruler, measured=measured):
            image = load_image(path, max_pixels)
            scale = ruler.measure(image)
            out_ = detector.detect(image, scale["um_per_px"])
            measured.append({"image": Path(path).name, **scale, "resample": out_.resample})
            return [(b.xyxy, b.conf, b.class_name) for b in out_.boxes]

        # predictions in a region nobody could label are left out here, so that predictions.json holds exactly
        # what the metrics were computed from (README: recomputing AP from the files)
        predictions, _ = drop_ignored(gt, run_predictions(gt, predict, progress), IOU_MATCH)
        metrics = evaluate_detections(gt, predictions, conf=operating_conf, iou_match=IOU_MATCH, max_dets=max_dets,
                                      ap_conf=ap_config["detector"]["conf"])
        results[name] = (gt, predictions, metrics)
        scales[name] = measured
        if name:
            write_detection_outputs(run_dir / name, gt, predictions, metrics)
            per_source[name] = {**metrics.summary(), "false_wbc_per_image": false_cells_per_image(metrics),
                                "scale_sources": _count_sources(measured)}
    if len(results) == 1 and "" in results:
        gt, predictions, metrics = results[""]
    else:
        gt, predictions = _pool(results)
        metrics = evaluate_detections(gt, predictions, conf=operating_conf, iou_match=IOU_MATCH, max_dets=max_dets,
                                      ap_conf=ap_config["detector"]["conf"])
    files = write_detection_outputs(run_dir, gt, predictions, metrics)
    write_atomic(run_dir / "scale.csv", csv_text(
        [{"source": n, "image": m["image"], "um_per_px": m["um_per_px"], "scale_from": m["source"],
          "rbc_diameter_px": m.get("rbc_diameter_px"), "n_cells": m.get("n_cells"), "confident": m.get("confident"),
          "resample": m["resample"]} for n, ms in scales.items() for m in ms],
        ["source", "image", "um_per_px", "scale_from", "rbc_diameter_px", "n_cells", "confident", "resample"]))
    files["tables"]["scale"] = "scale.csv"
    det, til = config["detector"], config["tiling"]
    thresholds = {**metrics.thresholds, "nms_iou": det["iou"], "imgsz": det["imgsz"], "max_det": det["max_det"],
                  "tile_mode": til["mode"], "tile_overlap": til["overlap"],
                  "detector_um_per_px": detector.pixel_size_um}
    summary = {**metrics.summary(), "false_wbc_per_image": false_cells_per_image(metrics)}
    result = base_metrics(
        "detection", _weights_info(info), str(data), split, thresholds, summary, metrics.per_class_dict(),
        files["plots"], files["tables"], files=files["files"],
        overall=asdict(metrics.overall),
        per_source=per_source,
        confusion_matrix={"labels": metrics.confusion_labels, "matrix": metrics.confusion,
                          "rows": "true", "columns": "predicted"},
        ground_truth={"source": gt.source, "classes": gt.class_names, "images": len(gt.images),
                      "instances": gt.instances(), "notes": gt.notes},
        detector={"class_names": info.class_names, "architecture": info.architecture},
        notes=["AP50 and AP50-95 are pycocotools COCOeval (bbox, area all, 101 recall points, maxDets "
               f"{metrics.thresholds['coco_max_dets']}) on predictions.json against gt_coco.json",
               f"predictions were collected at conf >= {ap_config['detector']['conf']:g}; precision/recall at "
               f"conf {operating_conf:g} keep the predictions >= it (on tiled images the tile merge can differ "
               "slightly from an analyze run at that conf)",
               "false_wbc_per_image: predictions >= the operating conf not matched to a labelled white cell "
               "(IoU >= 0.5), per image",
               "each image's pixel size as analyze measures it (scale.csv); each source is one case"],
    )
    save_run(run_dir, result)
    return EvalOutcome(run_dir, result)


def _count_sources(measured: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in measured:
        counts[m["source"]] = counts.get(m["source"], 0) + 1
    return counts


def _pool(results: dict[str, tuple]) -> tuple[Any, list[dict[str, Any]]]:
    """One GroundTruth and prediction list over every source (image ids renumbered so they stay unique)."""
    from detection.evaluate import GroundTruth, GtImage

    first = next(iter(results.values()))[0]
    images, predictions, notes, offset = [], [], {}, 0
    for name, (gt, preds, _) in results.items():
        images += [GtImage(i.image_id + offset, i.path, i.width, i.height, list(i.boxes), list(i.ignore))
                   for i in gt.images]
        predictions += [{**p, "image_id": p["image_id"] + offset} for p in preds]
        notes.update({f"{name}: {k}": v for k, v in gt.notes.items()})
        offset += max((i.image_id for i in gt.images), default=0)
    return GroundTruth(list(first.class_names), images, ", ".join(results), first.split, first.source,
                       notes), predictions


# --------------------------------------------------------------------------------------------------------------------
# classifier


def _classifier_from(config: dict[str, Any], weights: str | None):
    from workbench.pipeline import load_classifier_weights  # same weights checks as analyze
    from workbench.weights import Manifest

    cfg = copy.deepcopy(config)
    if weights is not None:
        cfg["classifier"]["weights"] = weights
    return load_classifier_weights(cfg, Manifest.load())


def run_classifier_eval(data: Path | str, config: dict[str, Any], split: str | None = None,
                        compare: str | None = None, threshold: float | None = None, out: Path | str | None = None,
                        progress: Progress | None = None, include_extra_normal: bool = True) -> EvalOutcome:
    """Evaluate the classifier of `config` (and optionally `compare`, a second weight file or manifest name) on
    labelled crops; see classification.evaluate for the layouts. `threshold`: blast at p_blast >= it (default: the
    operating threshold stored with the weights, chosen on validation; 0.5 for weights without one). Reported
    overall, per group of crops (a crop build's group x diagnosis, and the non-blast cells of ALL images as their
    own row) and as calibration (reliability curve, ECE)."""
    from classification.calibration import plot_reliability, reliability
    from classification.evaluate import (DatasetFormatError, classifier_metrics, group_table, load_crop_dataset,
                                         mcnemar, metrics_dict, predict_crops, write_classifier_outputs)

    if threshold is not None and not 0 < threshold < 1:
        raise WorkbenchError(f"--threshold must be between 0 and 1, not {threshold}")
    if not Path(data).expanduser().exists():
        raise DatasetError(f"crop data not found: {data}")
    classifier, info = _classifier_from(config, None)
    threshold_source = "given" if threshold is not None else "weights (chosen on validation)" \
        if classifier.spec.meta.get("threshold") else "default (arg-max)"
    threshold = float(threshold) if threshold is not None else classifier.threshold
    second = _classifier_from(config, compare) if compare is not None else None
    blast = config["classifier"]["blast_class"].lower()
    try:
        samples, used_split = load_crop_dataset(data, classifier.class_names, split, include_extra_normal)
        if second is not None:
            foreign = {s.label for s in samples} - {c.lower() for c in second[0].class_names}
            if foreign:
                raise DatasetFormatError(f"{data}: labels {sorted(foreign)} are not classes of the compared "
                                         f"classifier {second[0].class_names}")
        y = np.array([s.label == blast for s in samples])
        p = predict_crops(classifier, samples, blast, progress)
        p2 = predict_crops(second[0], samples, blast, progress) if second is not None else None
    except DatasetFormatError as exc:
        raise _dataset_error(exc) from None
    metrics = classifier_metrics(y, p, threshold)
    run_dir = new_run_dir("classifier", out)
    extra: dict[str, Any] = {}
    compare_args = None
    if second is not None:
        m2 = classifier_metrics(y, p2, threshold)
        test = mcnemar((p >= threshold) == y, (p2 >= threshold) == y)
        compare_args = (second[1].name, p2, m2)
        extra["compare"] = {"weights": _weights_info(second[1]), "summary": m2.summary(),
                            "metrics": metrics_dict(m2), "mcnemar": asdict(test)}
    files = write_classifier_outputs(run_dir, samples, p, metrics, info.name, compare_args)
    groups = group_table(samples, y, p, threshold)
    if groups:
        write_atomic(run_dir / "per_group.csv", csv_text([{"group": g, **v} for g, v in groups.items()],
                                                         ["group", "n", "n_blast", "correct", "precision", "recall",
                                                          "specificity", "f1", "tp", "fp", "fn", "tn"]))
        files["tables"]["per_group"] = "per_group.csv"
    calibration = reliability(y, p)
    plot_reliability(run_dir / "reliability.png", calibration, f"{info.name}: reliability of p_blast")
    files["plots"]["reliability"] = "reliability.png"
    from classification.sheets import hardest_sheet

    # the reviewer's view of what is still confused: the most blast-like non-blasts, the least blast-like blasts
    if hardest_sheet(run_dir / "hardest_non_blasts.jpg", samples, p, blast=False):
        files["plots"]["hardest_non_blasts"] = "hardest_non_blasts.jpg"
    if hardest_sheet(run_dir / "hardest_blasts.jpg", samples, p, blast=True):
        files["plots"]["hardest_blasts"] = "hardest_blasts.jpg"
    summary = {**metrics.summary(), "ece": calibration["ece"]}
    if second is not None:
        summary["mcnemar_p"] = extra["compare"]["mcnemar"]["p_value"]
    result = base_metrics(
        "classifier", _weights_info(info), str(data), used_split,
        {"blast": threshold, "blast_from": threshold_source, "best_f1": metrics.best_f1["threshold"],
         "positive_class": blast, "extra_normal": include_extra_normal},
        summary, metrics.per_class, files["plots"], files["tables"], per_group=groups, calibration=calibration,
        ci95=metrics.ci95, bootstrap=metrics.bootstrap, best_f1=metrics.best_f1,
        confusion_matrix={"labels": metrics.labels, "matrix": metrics.confusion, "rows": "true",
                          "columns": "predicted"},
        classifier={"class_names": info.class_names, "input_size": info.input_size}, **extra,
    )
    save_run(run_dir, result)
    return EvalOutcome(run_dir, result)


# --------------------------------------------------------------------------------------------------------------------
# pipeline: ground truth


@dataclass
class TrueCell:
    xyxy: XYXY
    label: str                                    # blast | normal (lowercased names-file class)


@dataclass
class ImageTruth:
    """One image's truth: cell boxes (box mode) or blast points (points mode)."""

    cells: list[TrueCell] = field(default_factory=list)
    points: list[tuple[float, float]] | None = None   # set in points mode
    label_file: bool = True                            # False: no label file, counted as an image without cells

    @property
    def n_blast(self) -> int:
        return len(self.points) if self.points is not None else sum(c.label == "blast" for c in self.cells)


def read_names(path: Path) -> list[str]:
    """Class names in id order from a .txt (one per line) or a yaml (`names:` list or mapping, or a bare list)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read names file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        names = raw.get("names") if isinstance(raw, dict) else raw
        if isinstance(names, dict):
            try:
                names = [names[k] for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: 'names' keys must be class ids 0..N-1") from None
        if not isinstance(names, list):
            raise DatasetError(f"{path}: expected a list of class names or a 'names:' entry")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    names = [str(n).strip().lower() for n in names]
    if not names:
        raise DatasetError(f"names file {path} lists no classes")
    return names


def find_names_file(labels_dir: Path, names: Path | None) -> Path:
    if names is not None:
        if not names.is_file():
            raise DatasetError(f"names file not found: {names}")
        return names
    for candidate in NAMES_FILES:
        if (labels_dir / candidate).is_file():
            return labels_dir / candidate
    raise DatasetError(f"{labels_dir} has no names file ({', '.join(NAMES_FILES)}); pass --names FILE")


def load_box_truth(images: Sequence[Path], labels_dir: Path, names: Sequence[str]) -> dict[Path, ImageTruth]:
    """YOLO txt labels (`class cx cy w h`, normalised) per image stem -> true cells in pixels."""
    from detection.evaluate import DatasetFormatError, read_yolo_labels
    from workbench.errors import ImageLoadError
    from workbench.images import image_size

    truths: dict[Path, ImageTruth] = {}
    for image in images:
        label = labels_dir / f"{image.stem}.txt"
        if not label.is_file():
            truths[image] = ImageTruth(label_file=False)
            continue
        try:
            width, height = image_size(image)
        except (ImageLoadError, OSError, ValueError):  # the analysis reports the image as failed, leaves it out
            truths[image] = ImageTruth()
            continue
        try:
            boxes = read_yolo_labels(label, len(names), width, height)
        except DatasetFormatError as exc:
            raise _dataset_error(exc) from None
        truths[image] = ImageTruth(cells=[TrueCell(tuple(b), names[c]) for b, c in boxes])
    return truths


def read_points(path: Path) -> list[tuple[float, float]]:
    """`x y` pixel points, one per line (ALL-IDB .xyc, tab or space separated); an empty file has none."""
    from detection.allidb import read_xyc
    from detection.errors import LabelFileError

    try:
        return read_xyc(path)
    except OSError as exc:
        raise DatasetError(f"cannot read points file {path}: {exc.strerror or exc}") from None
    except LabelFileError as exc:
        raise DatasetError(str(exc)) from None


def load_point_truth(images: Sequence[Path], labels_dir: Path) -> dict[Path, ImageTruth]:
    truths = {}
    for image in images:
        label = labels_dir / f"{image.stem}{POINTS_SUFFIX}"
        truths[image] = (ImageTruth(points=read_points(label)) if label.is_file()
                         else ImageTruth(points=[], label_file=False))
    return truths


# --------------------------------------------------------------------------------------------------------------------
# pipeline: matching and metrics


def _div(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall, F1; a ratio with an empty denominator is undefined (None), e.g. recall on healthy images
    only. F1 = 2TP / (2TP + FP + FN), which is 0 (not undefined) when nothing was found but something was there."""
    return {"tp": tp, "fp": fp, "fn": fn, "precision": _div(tp, tp + fp), "recall": _div(tp, tp + fn),
            "f1": _div(2 * tp, 2 * tp + fp + fn)}


def _match_image(result: SmearResult, truth: ImageTruth, iou_match: float, blast_threshold: float | None):
    """Counts for one image. blast_threshold None: a cell is a predicted blast when its label is blast; else when
    p_blast >= blast_threshold (used for the best-F1 sweep)."""
    from detection.evaluate import greedy_match

    cells = sorted(result.cells, key=lambda c: -c.det_conf)
    is_blast = [(c.label == "blast") if blast_threshold is None else (c.p_blast >= blast_threshold) for c in cells]
    row = {"pred_wbc": len(cells), "pred_blast": int(sum(is_blast)), "true_blast": truth.n_blast}
    if truth.points is not None:
        free = np.ones(len(truth.points), dtype=bool)
        pts = np.asarray(truth.points, dtype=float).reshape(-1, 2)
        tp = 0
        for cell, blast in zip(cells, is_blast):
            if not blast:
                continue
            x1, y1, x2, y2 = cell.xyxy
            inside = free & (pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)
            if inside.any():
                centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
                candidates = np.flatnonzero(inside)
                free[candidates[np.argmin(np.linalg.norm(pts[candidates] - centre, axis=1))]] = False
                tp += 1
        row.update(true_wbc=None, wbc_tp=None, blast_tp=tp, blast_fp=row["pred_blast"] - tp,
                   blast_fn=len(truth.points) - tp, confusion=None)
        return row
    true_boxes = np.array([c.xyxy for c in truth.cells], dtype=float).reshape(-1, 4)
    matched = greedy_match(np.array([c.xyxy for c in cells], dtype=float).reshape(-1, 4), true_boxes, iou_match)
    true_blast = [c.label == "blast" for c in truth.cells]
    blast_tp = sum(1 for j, b in zip(matched, is_blast) if j >= 0 and b and true_blast[j])
    # confusion rows: true blast, true normal, no true cell; columns: predicted blast, predicted normal, not detected
    confusion = np.zeros((3, 3), dtype=int)
    for j, b in zip(matched, is_blast):
        confusion[(0 if true_blast[j] else 1) if j >= 0 else 2, 0 if b else 1] += 1
    for j in set(range(len(truth.cells))) - {int(m) for m in matched if m >= 0}:
        confusion[0 if true_blast[j] else 1, 2] += 1
    row.update(true_wbc=len(truth.cells), wbc_tp=int(np.sum(matched >= 0)), blast_tp=blast_tp,
               blast_fp=row["pred_blast"] - blast_tp, blast_fn=sum(true_blast) - blast_tp, confusion=confusion)
    return row


@dataclass
class PipelineMetrics:
    mode: str                                  # boxes | points
    images: int
    wbc: dict[str, Any] | None                 # tp, fp, fn, precision, recall, f1 (None in points mode)
    blast: dict[str, Any]
    blast_best_f1: dict[str, Any]              # threshold on p_blast with the best cell-level blast F1
    counts: dict[str, Any]                     # blast count MAE (and WBC count MAE with boxes), mean signed error
    image_level: dict[str, Any]                # "contains blasts": tp, fp, fn, tn, sensitivity, specificity
    cell_confusion: list[list[int]] | None
    per_image: list[dict[str, Any]]
    per_group: dict[str, dict[str, Any]] = field(default_factory=dict)   # camera (image size) x diagnosis

    def summary(self) -> dict[str, Any]:
        no_blast = [p for p in self.per_image if not p["true_contains_blasts"]]
        return {
            "false_blasts_per_image": _mean([p["blast_fp"] for p in self.per_image]),
            "false_blasts_per_image_without_blasts": _mean([p["blast_fp"] for p in no_blast]),
            "wbc_precision": self.wbc["precision"] if self.wbc else None,
            "wbc_recall": self.wbc["recall"] if self.wbc else None,
            "blast_precision": self.blast["precision"], "blast_recall": self.blast["recall"],
            "blast_f1": self.blast["f1"], "count_mae": self.counts["blast_mae"],
            "image_sensitivity": self.image_level["sensitivity"],
            "image_specificity": self.image_level["specificity"],
            "images": self.images, "true_blasts": self.counts["true_blasts"],
            "predicted_blasts": self.counts["predicted_blasts"],
            "blast_best_f1_threshold": self.blast_best_f1["threshold"], "blast_best_f1": self.blast_best_f1["f1"],
        }


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def image_group(result: SmearResult, truth: "ImageTruth") -> str:
    """The stratum an image is reported in: its camera (the image size stands for it) x its diagnosis (whether
    the truth holds blasts). Camera and diagnosis are confounded in ALL-IDB1: a pooled number hides either."""
    return f"{result.width}x{result.height} / {'blasts' if truth.n_blast > 0 else 'no blasts'}"


def _group_metrics(rows: Sequence[dict[str, Any]], per_image: Sequence[dict[str, Any]], points: bool
                   ) -> dict[str, Any]:
    def total(key: str) -> int:
        return int(sum(row[key] for row in rows))

    out: dict[str, Any] = {"images": len(rows)}
    out["blast"] = _prf(total("blast_tp"), total("blast_fp"), total("blast_fn"))
    out["false_blasts_per_image"] = _mean([p["blast_fp"] for p in per_image])
    out["blast_mae"] = _mean([abs(p["blast_count_error"]) for p in per_image])
    out["true_blast_pct"] = round(100 * total("true_blast") / max(1, total("true_wbc")), 2) if not points else None
    if not points:
        out["wbc"] = _prf(total("wbc_tp"), total("pred_wbc") - total("wbc_tp"), total("true_wbc") - total("wbc_tp"))
    return out


def evaluate_pipeline(results: Sequence[SmearResult], truths: dict[str, ImageTruth],
                      iou_match: float = IOU_MATCH) -> PipelineMetrics:
    """Metrics of analysed images against their truth (keyed by result.image_path). Failed results are left out
    (the caller reports them); results without a truth entry are an error."""
    ok = [r for r in results if r.ok]
    missing = [r.image_path for r in ok if r.image_path not in truths]
    if missing:
        raise ValueError(f"no truth for {missing[:3]}")
    points = any(truths[r.image_path].points is not None for r in ok)
    rows, per_image = [], []
    confusion = np.zeros((3, 3), dtype=int)
    for r in ok:
        truth = truths[r.image_path]
        row = _match_image(r, truth, iou_match, None)
        if row["confusion"] is not None:
            confusion += row["confusion"]
        rows.append(row)
        true_pos, pred_pos = truth.n_blast > 0, row["pred_blast"] > 0
        per_image.append({
            "image": Path(r.image_path).name, "label_file": truth.label_file, "true_wbc": row["true_wbc"],
            "pred_wbc": row["pred_wbc"], "wbc_tp": row["wbc_tp"], "true_blast": row["true_blast"],
            "pred_blast": row["pred_blast"], "blast_tp": row["blast_tp"], "blast_fp": row["blast_fp"],
            "blast_fn": row["blast_fn"], "blast_count_error": row["pred_blast"] - row["true_blast"],
            "true_contains_blasts": true_pos, "pred_contains_blasts": pred_pos, "group": image_group(r, truth),
        })

    def total(key: str) -> int:
        return int(sum(row[key] for row in rows))

    wbc = None
    if not points:
        wbc = _prf(total("wbc_tp"), total("pred_wbc") - total("wbc_tp"), total("true_wbc") - total("wbc_tp"))
    blast = _prf(total("blast_tp"), total("blast_fp"), total("blast_fn"))
    errors = np.array([p["blast_count_error"] for p in per_image], dtype=float)
    counts = {"blast_mae": float(np.mean(np.abs(errors))) if len(errors) else None,
              "blast_mean_error": float(np.mean(errors)) if len(errors) else None,
              "true_blasts": total("true_blast"), "predicted_blasts": total("pred_blast")}
    if not points:
        wbc_err = np.array([p["pred_wbc"] - p["true_wbc"] for p in per_image], dtype=float)
        counts["wbc_mae"] = float(np.mean(np.abs(wbc_err))) if len(wbc_err) else None
    tp = sum(p["true_contains_blasts"] and p["pred_contains_blasts"] for p in per_image)
    fn = sum(p["true_contains_blasts"] and not p["pred_contains_blasts"] for p in per_image)
    fp = sum(not p["true_contains_blasts"] and p["pred_contains_blasts"] for p in per_image)
    tn = sum(not p["true_contains_blasts"] and not p["pred_contains_blasts"] for p in per_image)
    image_level = {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "positives": tp + fn, "negatives": fp + tn,
                   "sensitivity": _div(tp, tp + fn), "specificity": _div(tn, tn + fp)}
    per_group = {}
    for group in sorted({p["group"] for p in per_image}):
        index = [i for i, p in enumerate(per_image) if p["group"] == group]
        per_group[group] = _group_metrics([rows[i] for i in index], [per_image[i] for i in index], points)
    return PipelineMetrics(
        mode="points" if points else "boxes", images=len(ok), wbc=wbc, blast=blast,
        blast_best_f1=_blast_sweep(ok, truths, iou_match), counts=counts, image_level=image_level,
        cell_confusion=None if points else confusion.tolist(), per_image=per_image, per_group=per_group)


def _blast_sweep(results: Sequence[SmearResult], truths: dict[str, ImageTruth], iou_match: float) -> dict[str, Any]:
    """Cell-level blast P/R/F1 when a cell is called blast at p_blast >= t, for t on a 0.01 grid; the best F1
    (highest t among ties). The detections are fixed, only the blast call moves."""
    best: dict[str, Any] = {"threshold": None, "precision": None, "recall": None, "f1": None}
    for t in np.round(np.linspace(1.0, 0.0, 101), 2):
        rows = [_match_image(r, truths[r.image_path], iou_match, float(t)) for r in results]
        scores = _prf(sum(x["blast_tp"] for x in rows), sum(x["blast_fp"] for x in rows),
                      sum(x["blast_fn"] for x in rows))
        if scores["f1"] is not None and (best["f1"] is None or scores["f1"] > best["f1"]):
            best = {"threshold": float(t), **{k: scores[k] for k in ("precision", "recall", "f1")}}
    return best


# --------------------------------------------------------------------------------------------------------------------
# pipeline: outputs and the run


PIPELINE_COLUMNS = ["image", "group", "label_file", "true_wbc", "pred_wbc", "wbc_tp", "true_blast", "pred_blast",
                    "blast_tp", "blast_fp", "blast_fn", "blast_count_error", "true_contains_blasts",
                    "pred_contains_blasts"]


def write_pipeline_outputs(run_dir: Path, metrics: PipelineMetrics) -> dict[str, dict[str, str]]:
    from detection.evaluate import new_figure, plot_confusion_matrix, save_figure

    write_atomic(run_dir / "per_image.csv", csv_text(metrics.per_image, PIPELINE_COLUMNS))
    rows = []
    groups = (("wbc", metrics.wbc or {}), ("blast", metrics.blast), ("blast_best_f1", metrics.blast_best_f1),
              ("counts", metrics.counts), ("image_level", metrics.image_level))
    for group, values in groups:
        rows += [{"group": group, "metric": k, "value": v} for k, v in values.items()]
    for name, g in metrics.per_group.items():   # every number per camera x diagnosis too
        for key, value in g.items():
            if isinstance(value, dict):
                rows += [{"group": name, "metric": f"{key}_{k}", "value": v} for k, v in value.items()]
            else:
                rows.append({"group": name, "metric": key, "value": value})
    write_atomic(run_dir / "metrics.csv", csv_text(rows, ["group", "metric", "value"]))

    fig = new_figure(5.2, 5.0)
    ax = fig.add_subplot()
    true = [p["true_blast"] for p in metrics.per_image]
    pred = [p["pred_blast"] for p in metrics.per_image]
    top = max([1, *true, *pred])
    ax.plot([0, top], [0, top], color="grey", lw=0.6, ls="--")
    ax.scatter(true, pred, s=18, alpha=0.7)
    mae = metrics.counts["blast_mae"]
    ax.set(xlabel="true blasts per image", ylabel="predicted blasts per image",
           title=f"blast counts (MAE {mae:.2f})" if mae is not None else "blast counts")
    save_figure(fig, run_dir / "blast_counts.png")
    plots = {"blast_counts": "blast_counts.png"}
    if metrics.cell_confusion is not None:
        plot_confusion_matrix(run_dir / "cell_confusion.png", metrics.cell_confusion,
                              ["blast", "normal", "not detected"], f"cells, IoU >= {IOU_MATCH:g}",
                              true_labels=["blast", "normal", "no true cell"])
        plots["cell_confusion"] = "cell_confusion.png"
    return {"plots": plots, "tables": {"metrics": "metrics.csv", "per_image": "per_image.csv"}}


def run_pipeline_eval(images: Path | str, labels: Path | str, config: dict[str, Any], points: bool = False,
                      names: Path | str | None = None, out: Path | str | None = None,
                      progress: Callable[[int, int, SmearResult], None] | None = None) -> EvalOutcome:
    from workbench.images import collect_inputs
    from workbench.pipeline import SmearAnalyzer

    images, labels = Path(images).expanduser(), Path(labels).expanduser()
    if not images.is_dir():
        raise DatasetError(f"images folder not found: {images}")
    if not labels.is_dir():
        raise DatasetError(f"labels folder not found: {labels}")
    inputs = [i for i in collect_inputs([images], config["images"]["extensions"])]
    if not inputs:
        raise DatasetError(f"{images} holds no images")
    paths = [i.path for i in inputs]
    label_names: list[str] | None = None
    if points:
        truths = load_point_truth(paths, labels)
    else:
        names_file = find_names_file(labels, Path(names) if names is not None else None)
        label_names = read_names(names_file)
        bad = [n for n in label_names if n not in ("blast", "normal")]
        if bad:
            raise DatasetError(f"{names_file}: classes {label_names} must be blast / normal (got {bad})")
        truths = load_box_truth(paths, labels, label_names)
    no_file = [p.name for p, t in truths.items() if not t.label_file]
    if len(no_file) == len(paths):
        kind = f"{POINTS_SUFFIX} points" if points else ".txt label"
        raise DatasetError(f"none of the images in {images} has a {kind} file in {labels}")
    if no_file:
        log.warning("%d image(s) have no label file and count as images without cells: %s", len(no_file),
                    no_file[:5])

    analyzer = SmearAnalyzer.from_config(config)
    if label_names is not None:
        model_classes = [c.lower() for c in analyzer.classifier.class_names]
        foreign = [n for n in label_names if n not in model_classes]
        if foreign:
            raise DatasetError(f"label classes {foreign} are not classes of the classifier {model_classes}")
    batch = analyzer.analyze(inputs, progress=progress)
    metrics = evaluate_pipeline(batch.images, {str(p): t for p, t in truths.items()})
    run_dir = new_run_dir("pipeline", out)
    write_atomic(run_dir / "results.json", batch.to_json())
    files = write_pipeline_outputs(run_dir, metrics)
    failed = [f"{r.image_path}: {r.error}" for r in batch.failed]
    weights = {
        "name": f"{analyzer.detector_info.name} + {analyzer.classifier_info.name}",
        "path": f"{analyzer.detector_info.path}; {analyzer.classifier_info.path}",
        "sha256": f"{analyzer.detector_info.sha256}; {analyzer.classifier_info.sha256}",
        "detector": _weights_info(analyzer.detector_info), "classifier": _weights_info(analyzer.classifier_info),
    }
    result = base_metrics(
        "pipeline", weights, str(images), None,
        {"det_conf": config["detector"]["conf"], "nms_iou": config["detector"]["iou"], "iou_match": IOU_MATCH,
         "blast": f"classifier label: p_blast >= {analyzer.classifier.threshold:g} (the weights' operating "
                  f"threshold, chosen on validation)",
         "blast_best_f1": metrics.blast_best_f1["threshold"],
         **({"points_hit": "expert point inside a predicted blast box"} if points else {})},
        metrics.summary(), None, files["plots"], {**files["tables"], "results": "results.json"},
        per_group=metrics.per_group,
        labels=str(labels), mode=metrics.mode, names=label_names, wbc=metrics.wbc, blast=metrics.blast,
        blast_best_f1=metrics.blast_best_f1, counts=metrics.counts, image_level=metrics.image_level,
        cell_confusion={"labels": ["blast", "normal", "not detected"],
                        "true_labels": ["blast", "normal", "no true cell"],
                        "matrix": metrics.cell_confusion} if metrics.cell_confusion is not None else None,
        images_without_label_file=no_file, failed=failed, settings=analyzer.settings,
    )
    save_run(run_dir, result)
    return EvalOutcome(run_dir, result, failed)
