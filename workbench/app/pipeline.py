"""The analysis pipeline: load image → detect WBCs (tiled when large) → crop → classify blast/normal → counts.

One `SmearResult` per image comes out, whatever asked for it (CLI, GUI worker, eval). A bad image becomes a result
with `error` set and the batch goes on.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from classification.band import in_band

from workbench import __version__
from workbench.app.config import Settings, load_config
from workbench.core.errors import ConfigError, ImageLoadError, WeightsError, WorkbenchError
from workbench.core.images import ImageInput, load_image
from workbench.app.band import classifier_band
from workbench.app.cell_size import split_too_small, width_ruler
from workbench.app.nested import merge_nested
from workbench.app.pixel_size import PixelSizeRuler
from workbench.app.results import BatchResult, CellDetection, ModelInfo, SmearResult
from workbench.app.backends import choose
from workbench.app.prefetch import prepared_ahead
from workbench.app.weights import Manifest, check_class_names, resolve_weights

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, SmearResult], None]   # (done, total, result of the image just finished)
CancelCheck = Callable[[], bool]


def check_device(device: str) -> None:
    """A CUDA device asked for on a machine without one is a settings error, said before any model loads."""
    if device in ("cpu", "mps"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but no CUDA GPU is available here (use --device cpu)")
    index = 0 if device == "cuda" else int(device.split(":")[-1])
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device '{device}' asked for, but this machine has {torch.cuda.device_count()} GPU(s)")


def _weights_on_backend(section, task: str, what: str, manifest: Manifest,
                        open_export: Callable[[Path, str], Any], load_error: type[Exception]):
    """(resolved weights, Chosen backend) of one model's settings section: the device checked first, an exported
    copy opened by `open_export` when the backend asks for one (its load error said as a WeightsError). A torch
    backend leaves `Chosen.model` None: the predictor loads the checkpoint itself."""
    check_device(section.device)
    resolved = resolve_weights(section.weights, task, manifest)

    def exported(path: Path, backend: str):
        try:
            return open_export(path, backend)
        except load_error as exc:
            raise WeightsError(str(exc)) from None

    return resolved, choose(section.backend, section.device, what, resolved, manifest, exported, lambda: None)


def _exported_detector(path: Path, backend: str):
    from detection.runtime import ExportedYolo

    return ExportedYolo(path, backend)


def _exported_classifier(path: Path, backend: str):
    from classification.runtime import ExportedClassifierNet

    return ExportedClassifierNet(path, backend)


def load_detector(config: Settings, manifest: Manifest):
    from detection import DetectorLoadError, TilingConfig
    from detection.predictor import WbcDetector

    det = config.detector
    resolved, chosen = _weights_on_backend(det, "detect", "detector", manifest, _exported_detector,
                                           DetectorLoadError)
    try:
        tiling = TilingConfig(**config["tiling"])
        pixel_size = resolved.entry.pixel_size_um if resolved.entry is not None else None
        detector = WbcDetector(resolved.path, conf=det.conf, iou=det.iou, imgsz=det.imgsz, device=det.device,
                               max_det=det.max_det, tiling=tiling, pixel_size_um=pixel_size,
                               trust=det.trust_weights, net=chosen.model)
    except DetectorLoadError as exc:
        raise WeightsError(str(exc)) from exc
    except ValueError as exc:
        raise WorkbenchError(f"invalid detector/tiling settings: {exc}") from exc
    check_class_names(resolved, detector.class_names)
    info = resolved.model_info("yolov8", detector.class_names, det.imgsz)
    if resolved.entry is not None:
        info.architecture = resolved.entry.architecture
    info.backend = chosen.backend
    return detector, info


def load_classifier_weights(config: Settings, manifest: Manifest):
    from classification import ClassifierLoadError
    from classification.predictor import BlastClassifier

    cls_cfg = config.classifier
    resolved, chosen = _weights_on_backend(cls_cfg, "classify", "classifier", manifest, _exported_classifier,
                                           ClassifierLoadError)
    try:
        classifier = BlastClassifier(resolved.path, device=cls_cfg.device, batch=cls_cfg.batch,
                                     margin=cls_cfg.margin, blast_class=cls_cfg.blast_class, net=chosen.model)
    except ClassifierLoadError as exc:
        raise WeightsError(str(exc)) from exc
    spec = classifier.spec
    check_class_names(resolved, spec.class_names)
    info = resolved.model_info(spec.architecture, spec.class_names, spec.input_size)
    info.backend = chosen.backend
    return classifier, info


class SmearAnalyzer:
    """Holds the two loaded models and the settings; analyses images one at a time or as a batch."""

    def __init__(self, detector, classifier, config: Settings, detector_info: ModelInfo,
                 classifier_info: ModelInfo) -> None:
        # remembers the case's pixel size; the detector's red-cell class is its second ruler (workbench.app.pixel_size)
        self.ruler = PixelSizeRuler(config.scale, getattr(detector, "red_cell_ruler", None))
        self.detector = detector
        self.classifier = classifier
        self.config = config
        self.detector_info = detector_info
        self.classifier_info = classifier_info
        self.band, self.band_source = classifier_band(config, classifier, classifier_info)

    @classmethod
    def from_config(cls, config: Settings | None = None, manifest: Manifest | None = None) -> "SmearAnalyzer":
        config = config or load_config()
        manifest = manifest or Manifest.in_folder(config.paths.weights)
        detector, det_info = load_detector(config, manifest)
        classifier, cls_info = load_classifier_weights(config, manifest)
        return cls(detector, classifier, config, det_info, cls_info)

    @property
    def settings(self) -> dict[str, Any]:
        det, til, scale = self.config.detector, self.config.tiling, self.config.scale
        return {
            "det_conf": det.conf, "det_iou": det.iou, "imgsz": det.imgsz, "tile_mode": til.mode,
            "tile_overlap": til.overlap, "crop_margin": self.config.classifier.margin,
            "max_pixels": self.config.images.max_pixels, "blast_threshold": self.classifier.threshold,
            "um_per_px": scale.um_per_px, "estimate_scale": scale.estimate,
            "fallback_um_per_px": scale.fallback_um_per_px,
            "detector_um_per_px": self.detector.pixel_size_um, "crop_field_um": self.classifier.spec.field_um,
            "unidentified_band": list(self.band) if self.band else None, "unidentified_band_source": self.band_source,
            "nested_ios": self.config.detector.nested_ios, "min_cell_um": self.config.detector.min_cell_um,
        }

    def image_scale(self, image_rgb: np.ndarray, um_per_px: float | None = None, estimate=None) -> dict[str, Any]:
        return self.ruler.measure(image_rgb, um_per_px, estimate)

    def new_case(self) -> None:
        """Forget the pixel sizes measured so far (they stand in for images of the same case without a ruler)."""
        self.ruler.new_case()

    def analyze_array(self, image_rgb: np.ndarray, image_path: str, sample_id: str | None = None,
                      um_per_px: float | None = None, estimate=None) -> SmearResult:
        """`estimate`: the image's red-cell estimate when it was computed ahead (iter_analyze)."""
        height, width = image_rgb.shape[:2]
        t0 = time.perf_counter()
        scale = self.image_scale(image_rgb, um_per_px, estimate)
        ts = time.perf_counter()
        detection = self.detector.detect(image_rgb, scale["um_per_px"])
        scale["resample"] = detection.resample
        t1 = time.perf_counter()
        kept, too_small = split_too_small([b.xyxy for b in detection.boxes], width, height,
                                          width_ruler(scale), self.config.detector.min_cell_um)
        for record in too_small:
            record["det_conf"] = round(detection.boxes[record.pop("index")].conf, 5)
        found = [detection.boxes[i] for i in kept]
        labels = self.classifier.classify_boxes(image_rgb, [b.xyxy for b in found], scale["um_per_px"])
        t2 = time.perf_counter()
        cells = [
            CellDetection(cell_id=i, xyxy=tuple(round(v, 2) for v in box.xyxy), det_conf=round(box.conf, 5),
                          label=lab.label, label_conf=round(lab.label_conf, 5), p_blast=round(lab.p_blast, 5),
                          analysed_label=lab.label, unidentified=in_band(lab.p_blast, self.band))
            for i, (box, lab) in enumerate(zip(found, labels))
        ]
        cells, merged = merge_nested(cells, self.config.detector.nested_ios)
        result = SmearResult(
            image_path=image_path, width=width, height=height, sample_id=sample_id, cells=cells,
            detector=self.detector_info, classifier=self.classifier_info, settings=self.settings,
            timings_ms={"scale": round(1000 * (ts - t0), 1), "detect": round(1000 * (t1 - ts), 1),
                        "classify": round(1000 * (t2 - t1), 1)},
            tiled=detection.tiled, n_tiles=detection.n_tiles, scale=scale, merged_duplicates=merged,
            too_small=too_small,
        )
        result.recount()
        return result

    def load_and_analyze(self, path: Path | str, sample_id: str | None = None
                         ) -> tuple[SmearResult, np.ndarray]:
        """One image from its file: (result, decoded RGB image). Raises ImageLoadError for an image that cannot be
        used."""
        t0 = time.perf_counter()
        image = load_image(path, self.config.images.max_pixels, self.config.images.max_bytes)
        load_ms = 1000 * (time.perf_counter() - t0)
        result = self.analyze_array(image, str(path), sample_id)
        result.timings_ms = {"load": round(load_ms, 1), **result.timings_ms,
                             "total": round(1000 * (time.perf_counter() - t0), 1)}
        return result, image

    def analyze_image(self, path: Path | str, sample_id: str | None = None) -> SmearResult:
        """Raises ImageLoadError for an image that cannot be used."""
        return self.load_and_analyze(path, sample_id)[0]

    def iter_analyze(self, inputs: Iterable[ImageInput | Path | str], sample_id: str | None = None,
                     cancel: CancelCheck | None = None) -> Iterator[tuple[SmearResult, np.ndarray | None]]:
        """Analyse the inputs one at a time, yielding (result, decoded image or None) as each finishes, the way
        ultralytics' predictor streams: the CLI writes each image's outputs at once, the GUI shows each as it
        comes, and stopping the loop (or `cancel` returning True between images) keeps what is done. A bad image
        becomes a result with `error` set; the loop goes on."""
        items = [i if isinstance(i, ImageInput) else ImageInput(Path(i)) for i in inputs]
        # the next image is decoded and its red cells measured while the models run on this one (app.prefetch)
        for done, (item, ready) in enumerate(prepared_ahead(items, self._prepare)):
            if cancel is not None and cancel():
                log.info("analysis cancelled after %d of %d images", done, len(items))
                return
            image, error, ahead_ms = ready
            if item.error is not None or error is not None:
                result = SmearResult(image_path=str(item.path), sample_id=sample_id, error=item.error or error)
            else:
                result = self.analyze_array(image[0], str(item.path), sample_id, estimate=image[1])
                # load: decoding; scale includes the red-cell estimate made ahead; total: this image's own work
                # (in a folder run, load and the estimate overlap with the models of the image before)
                timings = {"load": round(ahead_ms[0], 1), **result.timings_ms}
                timings["scale"] = round(timings["scale"] + ahead_ms[1], 1)
                timings["total"] = round(sum(timings.values()), 1)
                result.timings_ms = timings
            if result.error:
                log.info("%s: %s", item.path, result.error)
            yield result, (image[0] if image is not None else None)

    def _prepare(self, item: ImageInput):
        """Runs in the prefetch thread: ((RGB image, red-cell estimate or None) or None, error, (load ms, estimate
        ms)). Touches no model and no state of the analyzer (the ruler's case memory is used in analyze_array, in
        input order)."""
        if item.error is not None:
            return None, None, (0.0, 0.0)
        t0 = time.perf_counter()
        try:
            image = load_image(item.path, self.config.images.max_pixels, self.config.images.max_bytes)
        except ImageLoadError as exc:
            return None, str(exc), (0.0, 0.0)
        t1 = time.perf_counter()
        estimate = None
        if self.ruler.needs_estimate():
            from workbench.core.scale import estimate_rbc_scale

            estimate = estimate_rbc_scale(image)
        return (image, estimate), None, (1000 * (t1 - t0), 1000 * (time.perf_counter() - t1))

    def analyze(self, inputs: Iterable[ImageInput | Path | str], sample_id: str | None = None,
                progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> BatchResult:
        """Every input analysed (iter_analyze collected into one BatchResult); `progress(done, total, result)`
        after each image."""
        items = [i if isinstance(i, ImageInput) else ImageInput(Path(i)) for i in inputs]
        batch = BatchResult(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            workbench_version=__version__)
        for done, (result, _) in enumerate(self.iter_analyze(items, sample_id, cancel), start=1):
            batch.images.append(result)
            if progress is not None:
                progress(done, len(items), result)
        return batch
