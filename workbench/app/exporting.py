"""`workbench export`: export listed (or given) weights for OpenVINO / ONNX Runtime, measure the export against
PyTorch on real images, and list it in the weights manifest.

The export is written beside its weights (detection.export / classification.export) and listed under the manifest's
`exports:` with its parent's name and sha256 (the key `--backend auto` matches it by), the format, input size,
dynamic batch, the sha256 of every file it consists of, the largest deviation from PyTorch measured on real images
(cells paired as in workbench.app.equivalence: IoU, det_conf, p_blast) and the time both took on those images.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from workbench.app.config import Settings
from workbench.app.equivalence import Deviation, compare_boxes
from workbench.app.paths import source_checkout
from workbench.app.weights import ExportEntry, Manifest, ResolvedWeights, resolve_weights, sha256_file
from workbench.core.errors import WeightsError, WorkbenchError
from workbench.core.images import collect_inputs, load_image
from workbench.core.runtimes import FORMATS, missing_runtime

log = logging.getLogger(__name__)

ALLIDB1_SMEAR = ("all-idb", "ALL_IDB1", "im", "Im048_1.jpg")   # a 2592x1944 smear: the tiled path


def default_check_images(config: Settings) -> list[Path]:
    """Real images to measure an export on when none are given: the bundled BCCD sample and, where the datasets are,
    one tiled ALL-IDB1 smear."""
    from workbench.app.paths import datasets_dir

    images = []
    checkout = source_checkout()
    if checkout is not None:
        images += sorted((checkout / "datasets" / "sample" / "images").glob("*.jpg"))
    smear = datasets_dir(config.paths.datasets).joinpath(*ALLIDB1_SMEAR)
    if smear.is_file():
        images.append(smear)
    return images


@dataclass
class ExportOutcome:
    entry: ExportEntry
    deviation: Deviation


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:   # weights outside the manifest's folder: listed by absolute path
        return str(path.resolve())


def _files(path: Path, folder: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {_relative(p, folder): sha256_file(p) for p in files}


def _versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("torch", "ultralytics", "openvino" if fmt == "openvino" else "onnxruntime", "onnx"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, 1000 * (time.perf_counter() - t0)


def export_weights(task: str, weights: str | None, fmt: str, config: Settings, manifest: Manifest,
                   images: list[Path], progress: Callable[[str], None] | None = None) -> ExportOutcome:
    """Export the `task` weights `weights` (None: the manifest's default) as `fmt`, measure it on `images` and list
    it in `manifest` (saved)."""
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown export format {fmt!r} (openvino or onnx)")
    problem = missing_runtime(FORMATS[fmt])
    if problem:
        raise WorkbenchError(problem)
    if not images:
        raise WorkbenchError("no real images to measure the export on: pass --images PATH")
    images = _usable(images, config)   # folders expanded: the measure names how many images it rests on
    resolved = resolve_weights(weights, task, manifest)
    say = progress or (lambda _: None)
    say(f"exporting {resolved.path.name} to {fmt}")
    if task == "detect":
        from detection import DetectorLoadError
        from detection.export import export_detector

        try:
            path = export_detector(resolved.path, fmt, resolved.path.parent, config.detector.imgsz,
                                   config.detector.trust_weights)
        except DetectorLoadError as exc:
            raise WeightsError(str(exc)) from None
        input_size = config.detector.imgsz
    else:
        from classification import ClassifierLoadError
        from classification.export import export_classifier

        try:
            path = export_classifier(resolved.path, fmt, resolved.path.parent)
        except ClassifierLoadError as exc:
            raise WeightsError(str(exc)) from None
        input_size = resolved.entry.input_size if resolved.entry else 0
    say(f"measuring {path.name} against PyTorch on {len(images)} real images")
    measure = _measure_detector if task == "detect" else _measure_classifier
    deviation, timing, size = measure(resolved, path, FORMATS[fmt], config, manifest, images)
    name = resolved.entry.name if resolved.entry is not None else resolved.path.stem
    entry = ExportEntry(
        name=f"{name}-{fmt}", parent=name, parent_sha256=resolved.sha256, task=task, format=fmt,
        path=_relative(path, manifest.folder), files=_files(path, manifest.folder), input_size=size or input_size,
        dynamic_batch=True, precision="fp32", max_deviation=_deviation_record(task, deviation, len(images)),
        timing_ms=timing, exported_with=_versions(fmt),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.add_export(entry)
    manifest.save()
    return ExportOutcome(entry, deviation)


def _deviation_record(task: str, deviation: Deviation, images: int) -> dict[str, Any]:
    d = deviation.to_dict()
    if task == "detect":
        keep = ("n_reference", "n_other", "paired", "counts_equal", "min_iou", "max_box_px", "max_det_conf")
        return {"images": images, **{k: d[k] for k in keep}}
    return {"images": images, "crops": d["n_reference"], "max_p_blast": d["max_p_blast"]}


def _median_ms(times: list[float]) -> float:
    return round(statistics.median(times), 1) if times else 0.0


def _measure_detector(resolved: ResolvedWeights, path: Path, backend: str, config: Settings, manifest: Manifest,
                      images: list[Path]) -> tuple[Deviation, dict[str, Any], int]:
    """Both detectors on every image as `analyze` runs them (pixel size, resampling, tiling); boxes compared."""
    from detection import TilingConfig
    from detection.predictor import WbcDetector
    from detection.runtime import ExportedYolo
    from workbench.app.pixel_size import PixelSizeRuler

    det = config.detector
    kwargs = dict(conf=det.conf, iou=det.iou, imgsz=det.imgsz, device="cpu", max_det=det.max_det,
                  tiling=TilingConfig(**config["tiling"]), trust=det.trust_weights,
                  pixel_size_um=resolved.entry.pixel_size_um if resolved.entry is not None else None)
    reference = WbcDetector(resolved.path, **kwargs)
    exported = WbcDetector(resolved.path, net=ExportedYolo(path, backend), **kwargs)
    ruler = PixelSizeRuler(config.scale, reference.red_cell_ruler)
    total, times = Deviation(), {"torch": [], backend: []}
    for image_path in images:
        image = load_image(image_path, config.images.max_pixels, config.images.max_bytes)
        um = ruler.measure(image)["um_per_px"]
        exported.detect(image, um)   # warm-up: the first call of a compiled network allocates its buffers
        a, ta = _timed(lambda: reference.detect(image, um))
        b, tb = _timed(lambda: exported.detect(image, um))
        times["torch"].append(ta)
        times[backend].append(tb)
        total = total.merge(compare_boxes(np.array([x.xyxy for x in a.boxes]), np.array([x.conf for x in a.boxes]),
                                          np.array([x.xyxy for x in b.boxes]), np.array([x.conf for x in b.boxes])))
    return total, {k: _median_ms(v) for k, v in times.items()} | {"per": "image (median)"}, det.imgsz


def _measure_classifier(resolved: ResolvedWeights, path: Path, backend: str, config: Settings, manifest: Manifest,
                        images: list[Path]) -> tuple[Deviation, dict[str, Any], int]:
    """Both classifiers on the crops of the cells the configured detector (PyTorch) finds on every image."""
    from classification.predictor import BlastClassifier
    from classification.runtime import ExportedClassifierNet
    from workbench.app.config import with_overrides
    from workbench.app.pipeline import load_detector
    from workbench.app.pixel_size import PixelSizeRuler

    cls = config.classifier
    kwargs = dict(device="cpu", batch=cls.batch, margin=cls.margin, blast_class=cls.blast_class)
    reference = BlastClassifier(resolved.path, **kwargs)
    exported = BlastClassifier(resolved.path, net=ExportedClassifierNet(path, backend), **kwargs)
    try:
        detector, _ = load_detector(with_overrides(config, {"detector": {"backend": "torch", "device": "cpu"}}),
                                    manifest)
    except WeightsError as exc:
        raise WeightsError(f"the cells a classifier export is measured on are found by the detector: {exc}") from None
    ruler = PixelSizeRuler(config.scale, detector.red_cell_ruler)
    worst, crops_seen, times = 0.0, 0, {"torch": [], backend: []}
    for image_path in images:
        image = load_image(image_path, config.images.max_pixels, config.images.max_bytes)
        um = ruler.measure(image)["um_per_px"]
        crops = reference.crops(image, [b.xyxy for b in detector.detect(image, um).boxes], um)
        if not crops:
            continue
        exported.predict_proba(crops)   # warm-up
        a, ta = _timed(lambda: reference.predict_proba(crops))
        b, tb = _timed(lambda: exported.predict_proba(crops))
        times["torch"].append(ta)
        times[backend].append(tb)
        worst = max(worst, float(np.abs(a - b).max()))
        crops_seen += len(crops)
    if crops_seen == 0:
        raise WorkbenchError("no cell was found on the images given to measure the classifier export on: pass "
                             "--images with smears")
    deviation = Deviation(n_reference=crops_seen, n_other=crops_seen, paired=crops_seen, max_p_blast=worst)
    return deviation, {k: _median_ms(v) for k, v in times.items()} | {"per": "image's crops (median)"}, \
        reference.input_size


def _usable(images: list[Path], config: Settings) -> list[Path]:
    found = [i.path for i in collect_inputs(images, config.images.extensions) if i.error is None]
    if not found:
        raise WorkbenchError("none of the images given to measure the export on can be read")
    return found
