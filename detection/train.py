"""Training the WBC detector with ultralytics' own trainer (no hand-written loop), taught what the smear data needs
(detection.trainer.SmearDetectionTrainer: partial labels, no enlarging, wbc-only model selection, stain jitter).

Multi-GPU: pass `device="0,1,2,3"` and ultralytics runs its DDP trainer; resume continues `last.pt` of a run.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.core.errors import DetectorLoadError
from workbench.core.ultralytics_env import import_ultralytics

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
    # workbench.core.stain.StainJitter arguments (p, alpha, beta, p_gray); None: no stain jitter
    stain: dict | None = field(default_factory=lambda: {"p": 0.5, "alpha": 0.2, "beta": 0.03, "p_gray": 0.1})
    overrides: dict = field(default_factory=dict)  # any other ultralytics train argument, e.g. lr0, warmup_epochs

    def train_kwargs(self) -> dict:
        return dict(data=self.data, imgsz=self.imgsz, epochs=self.epochs, batch=self.batch, device=self.device,
                    patience=self.patience, workers=self.workers, project=str(Path(self.project).resolve()),
                    name=self.name, seed=self.seed, deterministic=True, cache=self.cache, exist_ok=True,
                    amp=self.device != "cpu", plots=self.plots) | self.overrides


# the recipe of the shipped multi-source detector (README): ultralytics defaults where not named here
SMEAR_DEFAULTS = {"scale": 0.4, "translate": 0.1, "fliplr": 0.5, "flipud": 0.5, "degrees": 0.0, "hsv_h": 0.04,
                  "hsv_s": 0.7, "hsv_v": 0.4, "mosaic": 1.0, "close_mosaic": 5, "mixup": 0.0}


def _run_data_yaml(config: DetectorTrainConfig, run_dir: Path) -> str:
    """The data yaml the run trains on: the given one, plus its stain jitter settings (read by the trainer's dataset),
    written into the run folder so that the run records what it trained with."""
    import yaml

    data = yaml.safe_load(Path(config.data).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DetectorLoadError(f"{config.data} is not a data yaml")
    data.setdefault("path", str(Path(config.data).resolve().parent))
    if config.stain:
        data["stain_augment"] = dict(config.stain)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "train_data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def train_detector(config: DetectorTrainConfig) -> Path:
    """Train and return the path of the best checkpoint (by the wbc class's validation fitness)."""
    import_ultralytics()
    from ultralytics import YOLO

    from detection.trainer import SmearDetectionTrainer

    run_dir = Path(config.project).resolve() / config.name
    if config.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise DetectorLoadError(f"cannot resume: {last} not found")
        model = YOLO(str(last))
        model.train(resume=True, trainer=SmearDetectionTrainer)
    else:
        model = YOLO(config.model)
        if config.pretrained:
            pretrained = Path(config.pretrained)
            if not pretrained.is_file():
                raise DetectorLoadError(f"pretrained weights not found: {pretrained}")
            from detection.safe_load import check_detector_file

            check_detector_file(pretrained)
            model = model.load(str(pretrained))
        log.info("training detector: %s", asdict(config))
        kwargs = {**SMEAR_DEFAULTS, **config.train_kwargs(), "data": _run_data_yaml(config, run_dir)}
        model.train(trainer=SmearDetectionTrainer, **kwargs)
    best = run_dir / "weights" / "best.pt"
    return best if best.is_file() else run_dir / "weights" / "last.pt"
