"""`workbench eval pipeline` (end to end); the other evaluation runs: eval_detection, eval_classifier, each saved as a run folder with
metrics.json (see workbench.app.eval_store), CSV tables and PNG plots.

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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from workbench.app.eval_common import IOU_MATCH, XYXY, EvalOutcome, _dataset_error, _weights_info
from workbench.app.config import Settings
from workbench.app.eval_store import base_metrics, new_run_dir, save_run
from workbench.app.results import SmearResult, write_atomic
from workbench.core.errors import DatasetError
from workbench.core.fileio import csv_text

log = logging.getLogger(__name__)

POINTS_SUFFIX = ".xyc"
NAMES_FILES = ("classes.txt", "names.txt", "data.yaml", "names.yaml")


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
    """Class names in id order, lower-cased: the annotation importers' reader (the same limits on hostile files)."""
    from workbench.app.annotation.importers import read_names as read_names_file

    try:
        names = [str(n).strip().lower() for n in read_names_file(path)]
    except (OSError, ValueError) as exc:
        raise DatasetError(str(exc)) from None
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
    from workbench.core.errors import DatasetFormatError
    from detection.evaluate import read_yolo_labels
    from workbench.core.errors import ImageLoadError
    from workbench.core.images import image_size

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
    from workbench.core.points import read_xyc
    from workbench.core.errors import LabelFileError

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
    from workbench.core.plots import new_figure, plot_confusion_matrix, save_figure

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


def run_pipeline_eval(images: Path | str, labels: Path | str, config: Settings, points: bool = False,
                      names: Path | str | None = None, out: Path | str | None = None,
                      progress: Callable[[int, int, SmearResult], None] | None = None) -> EvalOutcome:
    from workbench.core.images import collect_inputs
    from workbench.app.pipeline import SmearAnalyzer

    images, labels = Path(images).expanduser(), Path(labels).expanduser()
    if not images.is_dir():
        raise DatasetError(f"images folder not found: {images}")
    if not labels.is_dir():
        raise DatasetError(f"labels folder not found: {labels}")
    inputs = [i for i in collect_inputs([images], config.images.extensions)]
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
    run_dir = new_run_dir("pipeline", out, config.paths.eval_runs)
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
        {"det_conf": config.detector.conf, "nms_iou": config.detector.iou, "iou_match": IOU_MATCH,
         "blast": f"classifier label: p_blast >= {analyzer.classifier.threshold:g} "
                  f"({analyzer.classifier.spec.threshold_source})",
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
    save_run(run_dir, result, config.paths.eval_runs)
    return EvalOutcome(run_dir, result, failed)
