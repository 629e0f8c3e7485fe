"""`workbench eval detection` on weights just trained (not yet in weights/manifest.yaml): used by
`workbench train detector` and `workbench compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["eval_trained_detector", "yolo_class_names"]


def yolo_class_names(weights: Path) -> list[str]:
    from detection.predictor import load_yolo

    names = load_yolo(weights).names
    return [names[i] for i in sorted(names)]


def eval_trained_detector(weights: Path, data: Path | str, split: str, device: str, out: Path,
                          pixel_size: float | None = None, class_names: list[str] | None = None,
                          architecture: str = "yolov8", imgsz: int = 640,
                          settings: dict[str, Any] | None = None) -> Any:
    """The EvalOutcome of the detection eval of `weights` on `split` of `data` (a data yaml, a VOC folder or an eval
    list), exactly as analyze runs the detector (with `settings` overriding the default settings, section by
    section); a one-entry manifest beside the weights carries their pixel size."""
    from workbench.app.config import load_config
    from workbench.app.eval_detection import run_detection_eval
    from workbench.app.weights import Manifest, WeightsEntry

    weights = Path(weights)
    manifest = Manifest(weights.parent / "manifest.yaml", [WeightsEntry(
        name=weights.stem, file=weights.name, task="detect", architecture=architecture,
        class_names=class_names or yolo_class_names(weights), input_size=imgsz, sha256="", pixel_size_um=pixel_size)])
    overrides = {key: dict(value) for key, value in (settings or {}).items()}
    overrides.setdefault("detector", {}).update({"weights": str(weights), "device": device})
    config = load_config(overrides=overrides)
    return run_detection_eval(data, split, config, out=out, manifest=manifest)
