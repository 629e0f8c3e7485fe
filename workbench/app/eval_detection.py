"""`workbench eval detection`: the detector on labelled images, per source and pooled (see eval_common)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from workbench.app.eval_common import IOU_MATCH, EvalOutcome, Progress, _dataset_error, _weights_info
from workbench.app.config import Settings, with_overrides
from workbench.app.eval_store import base_metrics, new_run_dir, save_run
from workbench.app.results import write_atomic
from workbench.core.errors import DatasetError, WorkbenchError
from workbench.core.fileio import csv_text

log = logging.getLogger(__name__)


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


def run_detection_eval(data: Path | str, split: str, config: Settings, out: Path | str | None = None,
                       progress: Progress | None = None, manifest=None) -> EvalOutcome:
    """Evaluate the detector of `config` (detector.weights, conf = the operating threshold, tiling) on a split of
    one dataset, or of each source of an eval list (detection_sources): per source and pooled over the sources.

    The detector is run once at detection.evaluate.AP_CONF (0.001) with the configured NMS IoU, imgsz, max_det and
    tiling, after the pixel-size estimate and resampling of `analyze` (one case per source); AP uses all those
    predictions, precision / recall and the false white cells per image keep those >= the operating conf."""
    from detection.evaluate import (AP_CONF, drop_ignored, evaluate_detections, load_ground_truth, run_predictions,
                                    write_detection_outputs)
    from workbench.core.errors import DatasetFormatError
    from workbench.core.images import load_image
    from workbench.app.pipeline import load_detector  # the loader analyze uses: same weights checks and tiling
    from workbench.app.pixel_size import PixelSizeRuler
    from workbench.app.weights import Manifest

    if importlib.util.find_spec("pycocotools") is None:  # AP comes from it: say so before any work is done
        raise WorkbenchError("detection eval needs pycocotools: pip install pycocotools")
    sources = detection_sources(data) or {"": Path(data)}
    gts = {}
    for name, source in sources.items():
        try:
            gts[name] = load_ground_truth(source, split)  # data problems come before the (slower) model load
        except DatasetFormatError as exc:
            raise _dataset_error(exc if not name else DatasetFormatError(f"source {name}: {exc}")) from None
    operating_conf = float(config.detector.conf)
    if not 0 < operating_conf <= 1:
        raise WorkbenchError(f"detector conf must be in (0, 1], not {operating_conf}")
    ap_conf = min(AP_CONF, operating_conf)
    ap_config = with_overrides(config, {"detector": {"conf": ap_conf}})
    detector, info = load_detector(ap_config, manifest or Manifest.in_folder(config.paths.weights))
    max_pixels, max_bytes = config.images.max_pixels, config.images.max_bytes
    max_dets = max(300, int(config.detector.max_det))
    run_dir = new_run_dir("detection", out, config.paths.eval_runs)
    per_source: dict[str, dict[str, Any]] = {}
    scales: dict[str, list[dict[str, Any]]] = {}
    results = {}
    for name, gt in gts.items():
        try:
            gt = gt.select([detector.class_name])
        except DatasetFormatError as exc:
            raise _dataset_error(exc) from None
        ruler = PixelSizeRuler(config.scale, detector.red_cell_ruler)   # a source is one microscope: one case
        measured: list[dict[str, Any]] = []

        def predict(path: Path, ruler=ruler, measured=measured):
            image = load_image(path, max_pixels, max_bytes)
            scale = ruler.measure(image)
            out_ = detector.detect(image, scale["um_per_px"])
            measured.append({"image": Path(path).name, **scale, "resample": out_.resample})
            return [(b.xyxy, b.conf, b.class_name) for b in out_.boxes]

        # predictions in a region nobody could label are left out here, so that predictions.json holds exactly
        # what the metrics were computed from (README: recomputing AP from the files)
        predictions, _ = drop_ignored(gt, run_predictions(gt, predict, progress), IOU_MATCH)
        metrics = evaluate_detections(gt, predictions, conf=operating_conf, iou_match=IOU_MATCH, max_dets=max_dets,
                                      ap_conf=ap_conf)
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
                                      ap_conf=ap_conf)
    files = write_detection_outputs(run_dir, gt, predictions, metrics)
    write_atomic(run_dir / "scale.csv", csv_text(
        [{"source": n, "image": m["image"], "um_per_px": m["um_per_px"], "scale_from": m["source"],
          "rbc_diameter_px": m.get("rbc_diameter_px"), "n_cells": m.get("n_cells"), "confident": m.get("confident"),
          "resample": m["resample"]} for n, ms in scales.items() for m in ms],
        ["source", "image", "um_per_px", "scale_from", "rbc_diameter_px", "n_cells", "confident", "resample"]))
    files["tables"]["scale"] = "scale.csv"
    det, til = config.detector, config.tiling
    thresholds = {**metrics.thresholds, "nms_iou": det.iou, "imgsz": det.imgsz, "max_det": det.max_det,
                  "tile_mode": til.mode, "tile_overlap": til.overlap,
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
               f"predictions were collected at conf >= {ap_conf:g}; precision/recall at "
               f"conf {operating_conf:g} keep the predictions >= it (on tiled images the tile merge can differ "
               "slightly from an analyze run at that conf)",
               "false_wbc_per_image: predictions >= the operating conf not matched to a labelled white cell "
               "(IoU >= 0.5), per image",
               "each image's pixel size as analyze measures it (scale.csv); each source is one case"],
    )
    save_run(run_dir, result, config.paths.eval_runs)
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


