"""`WbcDetector`: YOLOv8 white-blood-cell detection on whole smears, tiling large images at native resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from detection.boxes import BoxDetection
from detection.errors import DetectorLoadError
from detection.tiling import TilingConfig, predict_tiled, should_tile
from detection.ultralytics_env import import_ultralytics

log = logging.getLogger(__name__)

WBC_CLASS = "wbc"


@dataclass
class DetectionOutput:
    """The WBC boxes of one image and how they were found."""

    boxes: list[BoxDetection] = field(default_factory=list)
    tiled: bool = False
    n_tiles: int = 1


def load_yolo(weights: Path | str):
    """Load a YOLO detection checkpoint, turning every way it can be wrong into one DetectorLoadError."""
    path = Path(weights)
    # ultralytics would try to *download* a missing file whose name looks like one of its assets: check first.
    if not path.is_file():
        raise DetectorLoadError(f"detector weights not found: {path}")
    if path.suffix.lower() != ".pt":
        raise DetectorLoadError(f"detector weights must be an ultralytics .pt checkpoint, not {path.name}")
    if path.stat().st_size == 0:
        raise DetectorLoadError(f"detector weights {path} are empty (0 bytes)")
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


class WbcDetector:
    """Finds white blood cells. Images whose side exceeds `tiling.tile_factor * imgsz` (or always, with mode 'on')
    are cut into overlapping `imgsz` tiles that go through the network in batches; the boxes are merged so a cell
    cut by a tile edge is reported once."""

    def __init__(self, weights: Path | str, conf: float = 0.25, iou: float = 0.5, imgsz: int = 640,
                 device: str = "cpu", max_det: int = 300, tiling: TilingConfig | None = None,
                 wbc_class: str = WBC_CLASS) -> None:
        self.weights = Path(weights)
        self.model = load_yolo(self.weights)
        self.names: dict[int, str] = dict(self.model.names)
        self.class_id = wbc_class_id(self.names, self.weights, wbc_class)
        self.class_name = self.names[self.class_id]
        self.conf, self.iou, self.imgsz = float(conf), float(iou), int(imgsz)
        self.device, self.max_det = device, int(max_det)
        self.tiling = tiling or TilingConfig()

    @property
    def class_names(self) -> list[str]:
        return [self.names[i] for i in sorted(self.names)]

    def predict_arrays(self, images_bgr: Sequence[np.ndarray], imgsz: int | None = None) -> list[np.ndarray]:
        """One batched forward pass over `images_bgr`; per image an (N, 5) array x1, y1, x2, y2, conf of WBCs."""
        if not images_bgr:
            return []
        import torch

        threads = torch.get_num_threads()
        results = self.model.predict(
            list(images_bgr), conf=self.conf, iou=self.iou, imgsz=imgsz or self.imgsz, device=self.device,
            max_det=self.max_det, classes=[self.class_id], verbose=False,
        )
        # ultralytics' device selection sets torch to cpu_count - 1 threads (1 on a 2-core machine), which would
        # halve the classifier's speed for the rest of the process
        torch.set_num_threads(threads)
        out = []
        for result in results:
            boxes = result.boxes
            xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
            conf = boxes.conf.cpu().numpy().astype(np.float64)
            out.append(np.concatenate([xyxy, conf[:, None]], axis=1) if len(conf) else np.zeros((0, 5)))
        return out

    def detect(self, image_rgb: np.ndarray) -> DetectionOutput:
        """WBC boxes in original pixels for one RGB uint8 image."""
        height, width = image_rgb.shape[:2]
        image_bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        if should_tile(width, height, self.imgsz, self.tiling):
            boxes, confs, n_tiles = predict_tiled(image_bgr, self.predict_arrays, self.imgsz, self.tiling, self.iou)
            tiled = True
        else:
            out = self.predict_arrays([image_bgr])[0]
            boxes, confs, n_tiles, tiled = out[:, :4], out[:, 4], 1, False
        order = np.argsort(-confs, kind="stable")
        detections = [
            BoxDetection(xyxy=_clip(boxes[i], width, height), conf=float(confs[i]), class_name=WBC_CLASS)
            for i in order
        ]
        return DetectionOutput(boxes=detections, tiled=tiled, n_tiles=n_tiles)


def _clip(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
