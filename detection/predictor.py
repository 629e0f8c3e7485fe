"""`WbcDetector`: YOLOv8 white-blood-cell detection on whole smears, tiling large images at native resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from detection.tiling import TilingConfig, predict_tiled, should_tile
from workbench.core.boxes import BoxDetection, clear_of_border
from workbench.core.errors import DetectorLoadError
from workbench.core.scale import RBC_DIAMETER_UM
from workbench.core.ultralytics_env import import_ultralytics

log = logging.getLogger(__name__)

WBC_CLASS = "wbc"


@dataclass
class DetectionOutput:
    """The WBC boxes of one image (in its own pixels) and how they were found. `resample`: the factor the image was
    resized by before detection, to the detector's pixel size (1.0: analysed at its own pixels)."""

    boxes: list[BoxDetection] = field(default_factory=list)
    tiled: bool = False
    n_tiles: int = 1
    resample: float = 1.0

STRIDE = 32          # YOLOv8's largest stride: input sides are multiples of it
PAD_VALUE = 114      # ultralytics' letterbox grey
RESAMPLE_TOLERANCE = 0.03   # pixel sizes within 3 % of the detector's are analysed as they are


def load_yolo(weights: Path | str, trust: bool = False):
    """Load a YOLO detection checkpoint, turning every way it can be wrong into one DetectorLoadError. The file's
    pickle is checked first for code it would run (detection.safe_load) unless `trust`."""
    path = Path(weights)
    # ultralytics would try to *download* a missing file whose name looks like one of its assets: check first.
    if not path.is_file():
        raise DetectorLoadError(f"detector weights not found: {path}")
    if path.suffix.lower() != ".pt":
        raise DetectorLoadError(f"detector weights must be an ultralytics .pt checkpoint, not {path.name}")
    if path.stat().st_size == 0:
        raise DetectorLoadError(f"detector weights {path} are empty (0 bytes)")
    from detection.safe_load import check_detector_file

    check_detector_file(path, trust)
    import_ultralytics()
    from ultralytics import YOLO

    try:
        model = YOLO(str(path), task="detect")
    except Exception as exc:  # noqa: BLE001 - torch/pickle/ultralytics raise many types for a bad file
        raise DetectorLoadError(f"detector weights {path} are not a readable YOLO checkpoint "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    task = getattr(model, "task", None)
    if task != "detect":
        raise DetectorLoadError(f"detector weights {path} are a '{task}' model, not a detection model")
    return model


def wbc_class_id(names: dict[int, str], path: Path | str, wbc_class: str = WBC_CLASS) -> int:
    matches = [i for i, n in names.items() if str(n).lower() == wbc_class.lower()]
    if not matches:
        raise DetectorLoadError(
            f"detector {Path(path).name} has classes {list(names.values())}, none is the white-blood-cell class "
            f"'{wbc_class}'")
    return matches[0]


class YoloNet(Protocol):
    """What WbcDetector needs of a network: class names and one batched predict (TorchYolo, or an exported model
    in detection.runtime)."""

    backend: str
    names: dict[int, str]

    def predict(self, images_bgr: Sequence[np.ndarray], conf: float, iou: float, imgsz: int | Sequence[int],
                classes: list[int] | None, max_det: int) -> list[np.ndarray]: ...


class TorchYolo:
    """A PyTorch YOLO checkpoint run by ultralytics' predictor (the reference every other backend is held to)."""

    backend = "torch"

    def __init__(self, model, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self.names: dict[int, str] = dict(model.names)

    def predict(self, images_bgr: Sequence[np.ndarray], conf: float, iou: float, imgsz: int | Sequence[int],
                classes: list[int] | None, max_det: int) -> list[np.ndarray]:
        """Per image an (N, 6) array x1, y1, x2, y2, conf, class in that image's pixels."""
        import torch

        threads = torch.get_num_threads()
        results = self.model.predict(list(images_bgr), conf=conf, iou=iou, imgsz=imgsz, device=self.device,
                                     max_det=max_det, classes=classes, verbose=False)
        # ultralytics' device selection sets torch to cpu_count - 1 threads (1 on a 2-core machine), which would
        # halve the classifier's speed for the rest of the process
        torch.set_num_threads(threads)
        out = []
        for result in results:
            data = result.boxes.data.cpu().numpy().astype(np.float64)
            out.append(data[:, :6] if len(data) else np.zeros((0, 6)))
        return out


PIXEL_SIZE_ATTR = "smear_pixel_size_um"   # the model attribute detection.trainer stores the pixel size in


def trained_pixel_size(yolo) -> float | None:
    """The pixel size (um) a checkpoint of detection.trainer was trained at, stored in its model; None when absent
    or not a plausible pixel size (a file from outside may hold anything)."""
    value = getattr(getattr(yolo, "model", None), PIXEL_SIZE_ATTR, None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.01 <= float(value) <= 10.0:
        return float(value)
    return None


class WbcDetector:
    """Finds white blood cells. Images whose side exceeds `tiling.tile_factor * imgsz` (or always, with mode 'on')
    are cut into overlapping `imgsz` tiles that go through the network in batches; the boxes are merged so a cell
    cut by a tile edge is reported once."""

    def __init__(self, weights: Path | str, conf: float = 0.25, iou: float = 0.5, imgsz: int = 640,
                 device: str = "cpu", max_det: int = 300, tiling: TilingConfig | None = None,
                 wbc_class: str = WBC_CLASS, pixel_size_um: float | None = None, trust: bool = False,
                 net: YoloNet | None = None) -> None:
        self.weights = Path(weights)
        # the network: PyTorch through ultralytics by default, or an exported one (detection.runtime.ExportedYolo)
        self.net: YoloNet = net if net is not None else TorchYolo(load_yolo(self.weights, trust), device)
        self.backend = self.net.backend
        self.names: dict[int, str] = dict(self.net.names)
        self.class_id = wbc_class_id(self.names, self.weights, wbc_class)
        self.class_name = self.names[self.class_id]
        self.conf, self.iou, self.imgsz = float(conf), float(iou), int(imgsz)
        self.device, self.max_det = device, int(max_det)
        self.tiling = tiling or TilingConfig()
        # the pixel size the detector was trained at (weights manifest, else the checkpoint's own record); None:
        # trained on images as they came
        if not pixel_size_um and isinstance(self.net, TorchYolo):
            pixel_size_um = trained_pixel_size(self.net.model)
        self.pixel_size_um = float(pixel_size_um) if pixel_size_um else None

    @property
    def class_names(self) -> list[str]:
        return [self.names[i] for i in sorted(self.names)]

    def predict_arrays(self, images_bgr: Sequence[np.ndarray], imgsz: int | Sequence[int] | None = None
                       ) -> list[np.ndarray]:
        """One batched forward pass over `images_bgr`; per image an (N, 5) array x1, y1, x2, y2, conf of WBCs."""
        if not images_bgr:
            return []
        results = self.net.predict(list(images_bgr), self.conf, self.iou, imgsz or self.imgsz, [self.class_id],
                                   self.max_det)
        return [r[:, :5] if len(r) else np.zeros((0, 5)) for r in results]

    RULER_FACTORS = (1.0, 0.7, 0.5, 0.35)   # resampling factors tried by red_cell_ruler (zoomed-in fields shrink)

    def red_cell_ruler(self, image_rgb: np.ndarray) -> tuple[float, int] | None:
        """The red-cell diameter of an image in its own pixels, measured with the detector's `rbc` class: the image
        is tried at a few sizes and the one whose red-cell boxes come closest to the training size wins. A second
        ruler for fields where too few isolated red cells show for the pixel ruler (workbench.core.scale), e.g. a field
        zoomed in on one white cell. Returns (diameter px, red cells used) or None (no `rbc` class, or no size at
        which at least 2 red cells are found)."""
        import cv2

        rbc = next((i for i, n in self.names.items() if str(n).lower() == "rbc"), None)
        if rbc is None or self.pixel_size_um is None:
            return None
        trained_px = RBC_DIAMETER_UM / self.pixel_size_um
        height, width = image_rgb.shape[:2]
        best: tuple[float, float, int] | None = None
        for factor in self.RULER_FACTORS:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            if max(size) > self.imgsz and factor != min(self.RULER_FACTORS):
                continue   # a large field at this size would need tiling: its pixel ruler finds enough cells
            work = image_rgb if factor == 1.0 else cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
            padded, shape = _pad_to_stride(np.ascontiguousarray(work[:, :, ::-1]))
            boxes = self._predict_class(padded, shape, rbc)
            inner = [((b[2] - b[0]) + (b[3] - b[1])) / 2 for b in boxes if clear_of_border(b, *size, 1)]
            if len(inner) < 2:
                continue
            median = float(np.median(inner))
            score = abs(np.log(median / trained_px))
            if best is None or score < best[0]:
                best = (score, median / factor, len(inner))
        return None if best is None else (best[1], best[2])

    def _predict_class(self, image_bgr: np.ndarray, imgsz, class_id: int, conf: float = 0.25) -> np.ndarray:
        return self.net.predict([image_bgr], conf, self.iou, imgsz, [class_id], self.max_det)[0][:, :4]

    def resample_factor(self, um_per_px: float | None) -> float:
        """How much to resize an image of pixel size `um_per_px` so that it matches the detector's (1.0: not)."""
        if self.pixel_size_um is None or um_per_px is None or not um_per_px > 0:
            return 1.0
        factor = um_per_px / self.pixel_size_um
        return 1.0 if abs(factor - 1.0) <= RESAMPLE_TOLERANCE else factor

    def detect(self, image_rgb: np.ndarray, um_per_px: float | None = None) -> DetectionOutput:
        """WBC boxes in original pixels for one RGB uint8 image. With `um_per_px` (the image's pixel size) and a
        detector trained at one pixel size, the image is first resampled to that size."""
        import cv2

        height, width = image_rgb.shape[:2]
        factor = self.resample_factor(um_per_px)
        work = image_rgb
        if factor != 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            work = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        out = self._detect_pixels(np.ascontiguousarray(work[:, :, ::-1]))
        scale = np.array([factor, factor, factor, factor])
        detections = [
            BoxDetection(xyxy=_clip(box.xyxy / scale, width, height), conf=box.conf, class_name=WBC_CLASS)
            for box in out.boxes
        ]
        return DetectionOutput(boxes=detections, tiled=out.tiled, n_tiles=out.n_tiles, resample=round(factor, 4))

    def _detect_pixels(self, image_bgr: np.ndarray) -> "_RawOutput":
        height, width = image_bgr.shape[:2]
        scaled = self.pixel_size_um is not None
        # A detector trained at one pixel size must see every image at that size: tile anything larger than one
        # input and never let the letterbox enlarge a smaller image (pad it to the stride instead).
        tiling = self.tiling
        if scaled and tiling.mode == "auto":
            tiling = TilingConfig(**{**tiling.__dict__, "tile_factor": 1.0})
        if should_tile(width, height, self.imgsz, tiling):
            boxes, confs, n_tiles = predict_tiled(image_bgr, self.predict_arrays, self.imgsz, tiling, self.iou)
            tiled = True
        elif scaled:
            padded, shape = _pad_to_stride(image_bgr)
            out = self.predict_arrays([padded], imgsz=shape)[0]
            boxes, confs, n_tiles, tiled = out[:, :4], out[:, 4], 1, False
        else:
            out = self.predict_arrays([image_bgr])[0]
            boxes, confs, n_tiles, tiled = out[:, :4], out[:, 4], 1, False
        order = np.argsort(-confs, kind="stable")
        return _RawOutput([_Raw(np.asarray(boxes[i], dtype=np.float64), float(confs[i])) for i in order], tiled,
                          n_tiles)


@dataclass
class _Raw:
    xyxy: np.ndarray
    conf: float


@dataclass
class _RawOutput:
    boxes: list[_Raw]
    tiled: bool
    n_tiles: int


def _pad_to_stride(image: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """`image` padded at the bottom and right to multiples of the stride, and its new [height, width]: predicted at
    exactly that size, the letterbox changes nothing, and box coordinates are those of the unpadded image."""
    height, width = image.shape[:2]
    ph, pw = -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE
    if (ph, pw) == (height, width):
        return image, [height, width]
    out = np.full((ph, pw, 3), PAD_VALUE, np.uint8)
    out[:height, :width] = image
    return out, [ph, pw]


def _clip(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
