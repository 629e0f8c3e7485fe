"""Training the WBC detector with ultralytics' own trainer (no hand-written loop).

Multi-GPU: pass `device="0,1,2,3"` and ultralytics runs its DDP trainer; resume continues `last.pt` of a run.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from detection.errors import DetectorLoadError
from detection.ultralytics_env import import_ultralytics

log = logging.getLogger(__name__)


@dataclass
class DetectorTrainConfig:
    data: str                         # ultralytics data yaml
    model: str = "yolov8n.yaml"       # architecture yaml: built from scratch (no download)
    pretrained: str | None = None     # a local .pt to start from (e.g. COCO yolov8n.pt, if the user has it)
    imgsz: int = 640
    epochs: int = 100
    batch: int = 16
    device: str = "cpu"               # "cpu", "0", "0,1" (DDP) ...
    patience: int = 30
    workers: int = 2
    project: str = "runs/detector"
    name: str = "train"
    seed: int = 0
    cache: bool = False
    resume: bool = False
    plots: bool = True                # ultralytics' training plots (results.png, PR curves)
    overrides: dict = field(default_factory=dict)  # any other ultralytics train argument, e.g. lr0, warmup_epochs

    def train_kwargs(self) -> dict:
        return dict(data=self.data, imgsz=self.imgsz, epochs=self.epochs, batch=self.batch, device=self.device,
                    patience=self.patience, workers=self.workers, project=str(Path(self.project).resolve()),
                    name=self.name, seed=self.seed, deterministic=True, cache=self.cache, exist_ok=True,
                    amp=self.device != "cpu", plots=self.plots) | self.overrides


def train_detector(config: DetectorTrainConfig) -> Path:
    """Train and return the path of the best checkpoint (by ultralytics' validation fitness)."""
    import_ultralytics()
    from ultralytics import YOLO

    run_dir = Path(config.project).resolve() / config.name
    if config.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise DetectorLoadError(f"cannot resume: {last} not found")
        model = YOLO(str(last))
        model.train(resume=True)
    else:
        model = YOLO(config.model)
        if config.pretrained:
            pretrained = Path(config.pretrained)
            if not pretrained.is_file():
                raise DetectorLoadError(f"pretrained weights not found: {pretrained}")
            model = model.load(str(pretrained))
        log.info("training detector: %s", asdict(config))
        model.train(**config.train_kwargs())
    best = run_dir / "weights" / "best.pt"
    return best if best.is_file() else run_dir / "weights" / "last.pt"
