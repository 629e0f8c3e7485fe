"""The classifier trainer's settings (one dataclass, also the CLI: one option per field) and its pure rules:
the dynamic learning rate and early stopping (PlateauRule). Imports no torch, so `workbench --help` stays fast."""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from classification.architectures import ARCH_NAMES, ARCHITECTURES, HEADS
from classification.preprocess import PREPROCESS

__all__ = ["BALANCE_MODES", "ClassifierTrainConfig", "LR_SCHEDULES", "OPTIMIZERS", "PlateauDecision", "PlateauRule",
           "SELECT_MODES", "TrainResult", "UNFREEZE_MODES", "build_parser", "config_from_args", "epoch_lr",
           "resolved"]

BEST_NAME = "best.pt"
LAST_NAME = "last_state.pt"
LOG_NAME = "log.csv"
LOG_FIELDS = ("epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "val_bal_acc", "val_auc", "lr",
              "seconds", "val_seconds", "action")
BALANCE_MODES = ("groups", "sampler", "loss", "none")
SELECT_MODES = ("group_loss", "loss")
UNFREEZE_MODES = ("half", "all")
STATE_FORMAT = "smear-workbench-classifier-train-state/1"
OPTIMIZERS = ("adamw", "adam", "adamax", "sgd")
LR_SCHEDULES = ("dwell", "fixed", "cosine")
SGD_MOMENTUM = 0.9


# --------------------------------------------------------------------------------------------------------------------
# configuration


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass
class ClassifierTrainConfig:
    """Everything a training run depends on; saved into the checkpoint meta. Field docs double as CLI help."""

    data: str = field(metadata=_opt("crop build folder (holding split.csv) or a split.csv"))
    out: str = field(default="runs/classifier/train", metadata=_opt("output folder: best.pt, last_state.pt, log.csv"))
    arch: str = field(default="efficientnet_b3", metadata=_opt(
        "network (classification.architectures; xception and inception_resnet_v2 need timm)", choices=ARCH_NAMES))
    head: str = field(default="linear", metadata=_opt(
        "classification head: linear, or bn-dense256-dropout (BatchNorm, Dense 256, Dropout 0.5: the published "
        "Keras studies' head)", choices=HEADS))
    preprocess: str = field(default="none", metadata=_opt(
        "crop preprocessing, stored with the weights and applied identically at inference", choices=PREPROCESS))
    input_size: int | None = field(default=None, metadata=_opt(
        "network input side in px (default: the architecture's own, e.g. 300 for efficientnet_b3, 299 for "
        "inception_v3, 224 for resnet50)"))
    epochs: int = field(default=60, metadata=_opt("last epoch to train (resume may raise it)"))
    batch: int = field(default=16, metadata=_opt("batch size per process"))
    optimizer: str = field(default="adamw", metadata=_opt(
        f"optimizer (sgd: momentum {SGD_MOMENTUM}, Nesterov)", choices=OPTIMIZERS))
    lr: float = field(default=1e-4, metadata=_opt("learning rate (the start of the schedule)"))
    weight_decay: float = field(default=1e-4, metadata=_opt(
        "weight decay (decoupled for adamw, an L2 term for adam, adamax and sgd)"))
    lr_schedule: str = field(default="dwell", metadata=_opt(
        "dwell = on a rise of validation loss restore the best weights and multiply the LR by lr_factor; fixed = "
        "the same LR throughout; cosine = cosine decay from lr to min_lr over the epochs", choices=LR_SCHEDULES))
    min_lr: float = field(default=1e-6, metadata=_opt("floor of the dwell LR, end of the cosine schedule"))
    lr_factor: float = field(default=0.5, metadata=_opt("LR multiplier when validation loss rises above the best"))
    lr_patience: int = field(default=1, metadata=_opt("restore the best and cut the LR every N epochs without a "
                                                      "better validation loss (1: at every rise)"))
    patience: int = field(default=10, metadata=_opt("stop after this many epochs without a better validation loss"))
    label_smoothing: float = field(default=0.1, metadata=_opt("cross-entropy label smoothing"))
    grad_clip: float = field(default=1.0, metadata=_opt("gradient norm clip (0: off)"))
    precise_bn: int = field(default=0, metadata=_opt(
        "before each validation, re-estimate the batch-norm statistics as the plain average over N training batches "
        "(PreciseBN); 0: off. For short runs from scratch, whose running statistics are otherwise still mostly the "
        "initial ones, which gave every crop one probability"))
    balance: str = field(default="groups", metadata=_opt(
        "sampling balance: groups = each class half of every batch, and within a class each source group (lab / "
        "camera x diagnosis) by the square root of its size, so no lab and no camera dominates; sampler = classes "
        "only; loss = class weights in the loss", choices=BALANCE_MODES))
    epoch_samples: int | None = field(default=None, metadata=_opt(
        "crops drawn per epoch by the balanced sampler (default: the train split's size)"))
    select_by: str = field(default="group_loss", metadata=_opt(
        "model selection: group_loss = mean over (class, source group) of the validation loss, so a model cannot "
        "win by one camera; loss = class-balanced loss", choices=SELECT_MODES))
    stain_p: float = field(default=0.5, metadata=_opt("probability of a stain (HED) jitter per crop"))
    stain_alpha: float = field(default=0.2, metadata=_opt("stain jitter: each stain scaled by 1 +- alpha"))
    stain_beta: float = field(default=0.03, metadata=_opt("stain jitter: each stain shifted by +- beta (OD)"))
    gray_p: float = field(default=0.1, metadata=_opt("probability of a grey-scale crop"))
    freeze_epochs: int = field(default=0, metadata=_opt("epochs with the backbone frozen (head only) first; "
                                                        "meant for --pretrained weights"))
    unfreeze: str = field(default="half", metadata=_opt("what trains after freeze_epochs", choices=UNFREEZE_MODES))
    augment: bool = field(default=True, metadata=_opt("training augmentation"))
    scale_min: float = field(default=0.75, metadata=_opt(
        "random resized crop: smallest area fraction (zoom); crops have a fixed field of view in micrometres, so a "
        "strong zoom would hide cell size"))
    degrees: float = field(default=180.0, metadata=_opt("random rotation range +-degrees"))
    shear: float = field(default=10.0, metadata=_opt("random shear range +-degrees"))
    hflip: float = field(default=0.5, metadata=_opt("horizontal flip probability"))
    vflip: float = field(default=0.5, metadata=_opt("vertical flip probability"))
    brightness: float = field(default=0.2, metadata=_opt("colour jitter brightness"))
    contrast: float = field(default=0.2, metadata=_opt("colour jitter contrast"))
    saturation: float = field(default=0.2, metadata=_opt("colour jitter saturation"))
    hue: float = field(default=0.03, metadata=_opt("colour jitter hue"))
    include_extra_normal: bool = field(default=True, metadata=_opt("train/validate on the BCCD extra normals too"))
    max_per_split: int | None = field(default=None, metadata=_opt("use at most N crops per split (smoke runs)"))
    pretrained: str | None = field(default=None, metadata=_opt(
        "weights file of the same architecture to start from (e.g. torchvision ImageNet weights)"))
    seed: int = field(default=0, metadata=_opt("random seed"))
    deterministic: bool = field(default=False, metadata=_opt("torch.use_deterministic_algorithms (slower)"))
    num_threads: int | None = field(default=None, metadata=_opt("torch CPU threads per process"))
    workers: int = field(default=2, metadata=_opt("data loader worker processes"))
    device: str = field(default="auto", metadata=_opt("auto, cpu, cuda or cuda:N (DDP: each rank its LOCAL_RANK)"))
    amp: bool = field(default=True, metadata=_opt("bfloat16 autocast on CUDA (ignored on CPU)"))
    resume: bool = field(default=False, metadata=_opt("continue from out/last_state.pt"))
    exist_ok: bool = field(default=False, metadata=_opt("start afresh even if out/ holds an earlier run"))

    def check(self) -> None:
        for name, known in (("arch", ARCH_NAMES), ("head", HEADS), ("preprocess", PREPROCESS),
                            ("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name} must be one of {known}, not {getattr(self, name)!r}")
        arch = ARCHITECTURES[self.arch]
        if not arch.available:
            raise ValueError(f"arch {self.arch} needs timm, which is not installed (pip install timm)")
        if self.input_size is not None and self.input_size < arch.min_input:
            raise ValueError(f"input_size {self.input_size} is below {self.arch}'s smallest input {arch.min_input}")
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {BALANCE_MODES}, not {self.balance!r}")
        if self.unfreeze not in UNFREEZE_MODES:
            raise ValueError(f"unfreeze must be one of {UNFREEZE_MODES}, not {self.unfreeze!r}")
        for name in ("epochs", "batch", "patience", "lr_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not (self.lr > 0 and 0 < self.lr_factor <= 1 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0, 0 < lr_factor <= 1, 0 <= min_lr <= lr (got {self.lr}, {self.lr_factor}, "
                             f"{self.min_lr})")
        if self.select_by not in SELECT_MODES:
            raise ValueError(f"select_by must be one of {SELECT_MODES}, not {self.select_by!r}")
        for name in ("stain_p", "gray_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise ValueError(f"epoch_samples must be at least 1, not {self.epoch_samples}")
        if not 0 < self.scale_min <= 1:
            raise ValueError(f"scale_min must be in (0, 1], not {self.scale_min}")
        if self.freeze_epochs < 0 or self.workers < 0 or self.precise_bn < 0:
            raise ValueError("freeze_epochs, workers and precise_bn must not be negative")


def resolved(config: ClassifierTrainConfig) -> ClassifierTrainConfig:
    """The config with its defaults that depend on the architecture filled in (input_size)."""
    if config.input_size is not None:
        return config
    return replace(config, input_size=ARCHITECTURES[config.arch].default_input)


def epoch_lr(config: ClassifierTrainConfig, epoch: int, dwell_lr: float) -> float:
    """The learning rate of `epoch` (1-based): dwell follows PlateauRule (`dwell_lr`, its current LR), fixed keeps
    `lr`, cosine decays from `lr` at epoch 1 to `min_lr` at the last epoch."""
    if config.lr_schedule == "dwell":
        return dwell_lr
    if config.lr_schedule == "fixed" or config.epochs <= 1:
        return config.lr
    t = min(max(epoch - 1, 0), config.epochs - 1) / (config.epochs - 1)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * t))


@dataclass
class TrainResult:
    """What a run produced. `test` covers every test crop, `test_allidb` the ALL-IDB ones (no BCCD extras)."""

    out_dir: str
    best_path: str
    last_state_path: str
    log_path: str
    best_epoch: int
    last_epoch: int
    stopped_early: bool
    best_val: dict[str, Any]
    test: dict[str, Any] | None
    test_allidb: dict[str, Any] | None
    seconds: float
    world_size: int = 1
    rank: int = 0


# --------------------------------------------------------------------------------------------------------------------
# dynamic LR and early stopping: a pure rule, so it is testable without a network


@dataclass(frozen=True)
class PlateauDecision:
    improved: bool        # new best validation loss: save it
    restore_best: bool    # validation loss rose above the best: go back to the best weights
    lr: float             # the learning rate for the next epoch
    stop: bool            # patience exhausted: early stop


@dataclass
class PlateauRule:
    """Best-so-far tracking: a better loss is saved; a worse one restores the best and multiplies the LR by
    `factor` (never below `min_lr`); an equal one only counts towards `patience`. A non-finite loss counts as worse.
    With `lr_patience` N > 1, only every N-th epoch without improvement restores and cuts, if that epoch is worse:
    a noisy validation loss then does not halve the LR at every wobble."""

    lr: float
    factor: float = 0.5
    min_lr: float = 1e-6
    patience: int = 10
    lr_patience: int = 1
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def step(self, epoch: int, val_loss: float) -> PlateauDecision:
        if math.isfinite(val_loss) and val_loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = float(val_loss), int(epoch), 0
            return PlateauDecision(True, False, self.lr, False)
        self.bad_epochs += 1
        rose = (not math.isfinite(val_loss) or val_loss > self.best) and self.bad_epochs % self.lr_patience == 0
        if rose:
            self.lr = max(self.min_lr, self.lr * self.factor)
        return PlateauDecision(False, rose and self.best_epoch > 0, self.lr, self.bad_epochs >= self.patience)


# --------------------------------------------------------------------------------------------------------------------
# command line


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The CLI options, one per ClassifierTrainConfig field (`--input-size` for input_size, `--no-augment` ...)."""
    parser = parser or argparse.ArgumentParser(
        prog="python -m classification.train",
        description="Train a blast/normal classifier (EfficientNet-B3 unless --arch) on a crop build. "
                    "Multi-process: torchrun --nproc_per_node N -m classification.train ...",
    )
    hints = typing.get_type_hints(ClassifierTrainConfig)
    for f in fields(ClassifierTrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        kwargs: dict[str, Any] = {"type": base, "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.name == "data":
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
            kwargs["help"] = f"{help_text} (default: {f.default})"
        parser.add_argument(flag, **kwargs)
    return parser


def config_from_args(args: argparse.Namespace) -> ClassifierTrainConfig:
    return ClassifierTrainConfig(**{f.name: getattr(args, f.name) for f in fields(ClassifierTrainConfig)})
