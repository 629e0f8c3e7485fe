"""Exporting a YOLO detector for OpenVINO or ONNX Runtime with ultralytics' own exporter.

The exporter fuses the network (convolution + batch norm, as ultralytics' predictor does with a PyTorch model) and
writes it with a dynamic batch and input size (`dynamic=True`): tiles go through in batches, and a whole image padded
to the stride runs at its own size. Kept fp32 and without NMS in the graph: NMS and box scaling stay ultralytics'
own functions (detection.runtime), so the boxes are those of the PyTorch path. Files are named as ultralytics names
them, beside the weights: `<stem>.onnx`, `<stem>_openvino_model/{<stem>.xml, <stem>.bin, metadata.yaml}`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from workbench.core.errors import DetectorLoadError
from workbench.core.runtimes import FORMATS, export_name, first_line, missing_runtime, put_in_place

log = logging.getLogger(__name__)


def export_detector(weights: Path | str, fmt: str, out_dir: Path | str, imgsz: int = 640,
                    trust: bool = False) -> Path:
    """Export `weights` (an ultralytics .pt) as `fmt` (openvino | onnx) into `out_dir`; returns the .onnx file or
    the OpenVINO folder. The export is made in a temporary folder and moved into place at the end, so an export
    that fails leaves the previous one as it was."""
    from detection.predictor import load_yolo

    if fmt not in FORMATS:
        raise DetectorLoadError(f"unknown export format {fmt!r} (openvino or onnx)")
    problem = missing_runtime(FORMATS[fmt]) if fmt == "openvino" else None
    if problem:
        raise DetectorLoadError(problem)
    weights, out_dir = Path(weights), Path(out_dir)
    load_yolo(weights, trust)   # the same checks as loading for analysis (file, pickle contents, task)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / export_name(weights.stem, fmt)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp:
        work = Path(tmp) / weights.name
        shutil.copyfile(weights, work)
        model = load_yolo(work, trust)
        try:
            # (ultralytics refuses arguments a format does not take: `simplify` (onnxslim) exists for ONNX only)
            extra = {"simplify": False} if fmt == "onnx" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # torch's notes on its TorchScript exporter, not the user's business
                made = Path(model.export(format=fmt, dynamic=True, imgsz=imgsz, half=False, int8=False, nms=False,
                                         batch=1, device="cpu", verbose=False, **extra))
        except Exception as exc:  # noqa: BLE001 - the exporter raises whatever its converter raised
            raise DetectorLoadError(f"exporting {weights.name} to {fmt} failed: {first_line(exc)}") from None
        put_in_place(made, target)
    log.info("exported %s to %s", weights, target)
    return target
