"""An exported YOLO detector (OpenVINO IR or ONNX, written by `detection.export`) run with ultralytics' own pre- and
post-processing, so `WbcDetector` (tiling, resampling, merging) works on it unchanged.

Around the network this does what ultralytics' `DetectionPredictor` does around a PyTorch model, with ultralytics'
functions: the same `LetterBox` (minimal stride padding when a batch shares one shape, as for a PyTorch or a
dynamic-shape model), BGR to RGB, /255, then the same `non_max_suppression` and `scale_boxes`. Only the network in
the middle differs, so the boxes are those of the PyTorch path up to float rounding
(tests/detection/test_detector_runtime.py measures it on real smears). The runtime is opened by
`workbench.core.runtimes` rather than by ultralytics' AutoBackend, whose OpenVINO defaults run in bfloat16 on CPUs
that have it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.core.errors import DetectorLoadError
from workbench.core.runtimes import RUNTIMES, model_file, open_runtime, read_sidecar


def read_metadata(path: Path, backend: str, onnx_meta: dict[str, str]) -> dict[str, Any]:
    """ultralytics' export metadata (names, stride, imgsz, args.dynamic): the ONNX file's metadata_props, or the
    metadata.yaml beside an OpenVINO model. Values are parsed as data (safe YAML / ast.literal_eval), never
    evaluated."""
    if backend == "openvino":
        meta = read_sidecar(path, DetectorLoadError)
    else:
        meta = dict(onnx_meta)
        for key in ("names", "imgsz", "args"):
            if isinstance(meta.get(key), str):
                try:
                    meta[key] = ast.literal_eval(meta[key])
                except (ValueError, SyntaxError):
                    raise DetectorLoadError(f"ONNX export {path}: its '{key}' metadata is not readable") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("names"), dict) or not meta["names"]:
        raise DetectorLoadError(f"{path} is not an ultralytics YOLO export (no class names in its metadata)")
    if meta.get("task", "detect") != "detect":
        raise DetectorLoadError(f"{path} is a '{meta.get('task')}' export, not a detection model")
    return meta


class ExportedYolo:
    """The `predict` call of `detection.predictor.TorchYolo` on an exported network."""

    def __init__(self, path: Path | str, backend: str, threads: int | None = None) -> None:
        if backend not in RUNTIMES:
            raise DetectorLoadError(f"unknown detector backend {backend!r} (expected one of {', '.join(RUNTIMES)})")
        self.path = Path(path)
        self.backend = backend
        if not self.path.exists():
            raise DetectorLoadError(f"{backend} detector export not found: {self.path}")
        self.net = open_runtime(backend, model_file(self.path, backend, DetectorLoadError), "detector export",
                                DetectorLoadError, threads)
        meta = read_metadata(self.path, backend, self.net.metadata)
        self.names: dict[int, str] = {int(k): str(v) for k, v in meta["names"].items()}
        self.stride = max(int(meta.get("stride", 32)), 32)
        self.dynamic = bool((meta.get("args") or {}).get("dynamic", False))
        if not self.dynamic:
            raise DetectorLoadError(f"{self.path} was exported without a dynamic batch and size: export it again with "
                                    f"`workbench export`")

    def predict(self, images_bgr: Sequence[np.ndarray], conf: float, iou: float, imgsz: int | Sequence[int],
                classes: list[int] | None, max_det: int) -> list[np.ndarray]:
        """Per image an (N, 6) array x1, y1, x2, y2, conf, class in that image's pixels (as TorchYolo.predict)."""
        import torch
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils import ops
        from ultralytics.utils.checks import check_imgsz

        try:   # ultralytics >= 8.3.200 keeps NMS in its own module
            from ultralytics.utils.nms import non_max_suppression
        except ImportError:   # pragma: no cover - older ultralytics
            from ultralytics.utils.ops import non_max_suppression

        if not images_bgr:
            return []
        shape = check_imgsz(imgsz, stride=self.stride, min_dim=2)
        # DetectionPredictor.pre_transform: auto (minimal) padding when the batch shares one shape, for a PyTorch or
        # dynamic-shape model alike
        letterbox = LetterBox(shape, auto=len({im.shape for im in images_bgr}) == 1, stride=self.stride)
        batch = np.stack([letterbox(image=im) for im in images_bgr])
        # BasePredictor.preprocess: BHWC -> BCHW, BGR -> RGB, uint8 -> float32 / 255
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
        raw = torch.from_numpy(self.net(tensor.numpy()))
        preds = non_max_suppression(raw, conf, iou, classes, False, max_det=max_det, nc=0)
        out = []
        for pred, image in zip(preds, images_bgr):
            pred[:, :4] = ops.scale_boxes(tensor.shape[2:], pred[:, :4], image.shape)
            out.append(pred[:, :6].numpy().astype(np.float64))
        return out
