"""Training the EfficientNet-B3 blast / normal classifier on a crop build (classification.dataset), no ultralytics.

Recipe (every knob is a ClassifierTrainConfig field and a `python -m classification.train` option):
- inputs resized to `input_size`; training augmentation: random resized crop (zoom), h/v flips, rotation + shear
  (filled with the crop's own background colour, not black, so corners carry no cue), colour jitter for stain
  variation (torchvision.transforms.v2);
- class balance: a WeightedRandomSampler (`balance=sampler`), class weights in the loss (`loss`) or none; under DDP
  the sampler becomes loss weights (DistributedSampler already owns the sampling);
- AdamW (lr 1e-4, weight decay 1e-4), label smoothing 0.1, gradient clipping at norm 1.0; together with the zero-init
  head of build_efficientnet_b3 this is what made B3 learn from scratch here (the default head did not);
- optional `freeze_epochs` (backbone frozen, head only), after which the later half of `model.features` (or all of
  it, `unfreeze=all`) trains; without freeze_epochs the whole network trains from the start;
- validation loss is class-balanced cross-entropy (mean of the per-class means, no smoothing), so the many BCCD
  normals do not decide model selection; the best epoch by it is saved as `best.pt` (save_classifier, fp16);
- dynamic LR (PlateauRule): when validation loss rises above the best, the best weights and optimizer state are
  restored and the LR is halved (floor 1e-6); training stops after `patience` epochs without improvement;
- `last_state.pt` (fp32 model, optimizer, best snapshot, RNG states, history) is written every epoch for `resume`;
- at the end the best checkpoint is evaluated on the test split (all crops, and ALL-IDB crops only, i.e. without
  the BCCD extra normals) and the metrics go into TrainResult and into best.pt's meta.

Distributed: `torchrun --nproc_per_node N -m classification.train --data ...` runs DistributedDataParallel (gloo on
CPU, nccl on CUDA); rank 0 alone logs and writes files. Validation is sharded over the ranks and gathered, so every
rank takes the same early-stopping / LR decisions.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
import typing
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from classification.dataset import CLASS_NAMES, SPLIT_FILE, CropDataset, CropRecord
from classification.model import IMAGENET_MEAN, IMAGENET_STD, build_efficientnet_b3, load_classifier, save_classifier
from detection.fileio import atomic_open

__all__ = [
    "ClassifierTrainConfig",
    "PlateauDecision",
    "PlateauRule",
    "TrainResult",
    "binary_metrics",
    "build_parser",
    "build_transforms",
    "config_from_args",
    "main",
    "train_classifier",
]

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
LAST_NAME = "last_state.pt"
LOG_NAME = "log.csv"
LOG_FIELDS = ("epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "val_bal_acc", "val_auc", "lr",
              "seconds", "val_seconds", "action")
BLAST = CLASS_NAMES.index("blast")  # the positive class of every metric
BALANCE_MODES = ("groups", "sampler", "loss", "none")
SELECT_MODES = ("group_loss", "loss")
UNFREEZE_MODES = ("half", "all")
STATE_FORMAT = "smear-workbench-classifier-train-state/1"


# --------------------------------------------------------------------------------------------------------------------
# configuration


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass
class ClassifierTrainConfig:
    """Everything a training run depends on; saved into the checkpoint meta. Field docs double as CLI help."""

    data: str = field(metadata=_opt("crop build folder (holding split.csv) or a split.csv"))
    out: str = field(default="runs/classifier/train", metadata=_opt("output folder: best.pt, last_state.pt, log.csv"))
    input_size: int = field(default=300, metadata=_opt("network input side in px"))
    epochs: int = field(default=60, metadata=_opt("last epoch to train (resume may raise it)"))
    batch: int = field(default=16, metadata=_opt("batch size per process"))
    lr: float = field(default=1e-4, metadata=_opt("AdamW learning rate"))
    weight_decay: float = field(default=1e-4, metadata=_opt("AdamW weight decay"))
    min_lr: float = field(default=1e-6, metadata=_opt("floor of the dynamic LR"))
    lr_factor: float = field(default=0.5, metadata=_opt("LR multiplier when validation loss rises above the best"))
    lr_patience: int = field(default=1, metadata=_opt("restore the best and cut the LR every N epochs without a "
                                                      "better validation loss (1: at every rise)"))
    patience: int = field(default=10, metadata=_opt("stop after this many epochs without a better validation loss"))
    label_smoothing: float = field(default=0.1, metadata=_opt("cross-entropy label smoothing"))
    grad_clip: float = field(default=1.0, metadata=_opt("gradient norm clip (0: off)"))
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
    pretrained: str | None = field(default=None, metadata=_opt("EfficientNet-B3 weights file to start from"))
    seed: int = field(default=0, metadata=_opt("random seed"))
    deterministic: bool = field(default=False, metadata=_opt("torch.use_deterministic_algorithms (slower)"))
    num_threads: int | None = field(default=None, metadata=_opt("torch CPU threads per process"))
    workers: int = field(default=2, metadata=_opt("data loader worker processes"))
    device: str = field(default="auto", metadata=_opt("auto, cpu, cuda or cuda:N (DDP: each rank its LOCAL_RANK)"))
    amp: bool = field(default=True, metadata=_opt("bfloat16 autocast on CUDA (ignored on CPU)"))
    resume: bool = field(default=False, metadata=_opt("continue from out/last_state.pt"))
    exist_ok: bool = field(default=False, metadata=_opt("start afresh even if out/ holds an earlier run"))

    def check(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {BALANCE_MODES}, not {self.balance!r}")
        if self.unfreeze not in UNFREEZE_MODES:
            raise ValueError(f"unfreeze must be one of {UNFREEZE_MODES}, not {self.unfreeze!r}")
        for name in ("input_size", "epochs", "batch", "patience", "lr_patience"):
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
        if self.freeze_epochs < 0 or self.workers < 0:
            raise ValueError("freeze_epochs and workers must not be negative")


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
# transforms


class BackgroundAffine(nn.Module):
    """Random rotation and shear of a uint8 (3, H, W) crop, filling uncovered corners with the median colour of the
    crop's border (the smear background) rather than black, which would be a label-free cue the net could learn."""

    def __init__(self, degrees: float, shear: float) -> None:
        super().__init__()
        self.degrees, self.shear = float(degrees), float(shear)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        if self.degrees == 0 and self.shear == 0:
            return image
        angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees)) if self.degrees else 0.0
        shear = [float(v) for v in torch.empty(2).uniform_(-self.shear, self.shear)] if self.shear else [0.0, 0.0]
        border = torch.cat([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], dim=1)
        fill = [float(v) for v in border.float().median(dim=1).values]
        return F.affine(image, angle=angle, translate=[0, 0], scale=1.0, shear=shear,
                        interpolation=InterpolationMode.BILINEAR, fill=fill)


class StainAugment(nn.Module):
    """detection.stain.StainJitter (HED stain jitter, grey-scale) on a uint8 (3, H, W) crop."""

    def __init__(self, jitter) -> None:
        super().__init__()
        self.jitter = jitter

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        generator = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))  # follows torch's seeding
        array = image.permute(1, 2, 0).contiguous().numpy()
        return torch.from_numpy(self.jitter(array, generator)).permute(2, 0, 1).contiguous()


def build_transforms(config: ClassifierTrainConfig, train: bool) -> nn.Module:
    """uint8 (3, H, W) crop -> normalised float (3, S, S). Evaluation only resizes, as inference crops are cut at S."""
    from torchvision.transforms import v2

    size = config.input_size
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if not (train and config.augment):
        return v2.Compose([v2.Resize((size, size), antialias=True), *tail])
    steps: list[nn.Module] = [
        # crop first: the remaining steps then work on S x S, not on the larger stored crop
        v2.RandomResizedCrop(size, scale=(config.scale_min, 1.0), ratio=(0.85, 1.0 / 0.85), antialias=True),
        v2.RandomHorizontalFlip(config.hflip),
        v2.RandomVerticalFlip(config.vflip),
    ]
    if config.degrees or config.shear:
        steps.append(BackgroundAffine(config.degrees, config.shear))
    if any((config.brightness, config.contrast, config.saturation, config.hue)):
        steps.append(v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue))
    if config.stain_p or config.gray_p:
        from detection.stain import StainJitter

        steps.append(StainAugment(StainJitter(config.stain_p, config.stain_alpha, config.stain_beta, config.gray_p)))
    return v2.Compose([*steps, *tail])


# --------------------------------------------------------------------------------------------------------------------
# metrics


def binary_metrics(labels: Sequence[int], p_blast: Sequence[float], threshold: float = 0.5) -> dict[str, Any]:
    """Blast-positive metrics from class indices (CLASS_NAMES order) and blast probabilities (scikit-learn).

    The prediction is p_blast >= threshold (0.5: the argmax of two classes). ROC-AUC is None when one class is
    absent.
    """
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                                 precision_score, recall_score, roc_auc_score)

    y_true = (np.asarray(labels) == BLAST).astype(int)
    score = np.asarray(p_blast, dtype=float)
    y_pred = (score >= threshold).astype(int)
    n = int(y_true.size)
    if n == 0:
        return {"n": 0}
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    both = 0 < y_true.sum() < n
    return {
        "n": n,
        "n_blast": int(y_true.sum()),
        "n_normal": int(n - y_true.sum()),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if both else None,
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),  # sensitivity
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, score)) if both else None,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def _balanced_loss(losses: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of each class's mean loss: the normal majority does not drown the blasts."""
    means = [float(losses[labels == c].mean()) for c in range(len(CLASS_NAMES)) if np.any(labels == c)]
    return float(np.mean(means)) if means else math.nan


# --------------------------------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "_Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(config: ClassifierTrainConfig, dist: _Dist) -> torch.device:
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} asked for, but CUDA is not available")
        if dist.on:  # one GPU per process; torchrun's LOCAL_RANK picks it
            device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


def _all_reduce_sum(values: list[float], dist: _Dist, device: torch.device) -> list[float]:
    if not dist.on:
        return values
    import torch.distributed as td

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    td.all_reduce(tensor)
    return tensor.tolist()


def _gather(obj: Any, dist: _Dist) -> list[Any]:
    if not dist.on:
        return [obj]
    import torch.distributed as td

    out: list[Any] = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def _barrier(dist: _Dist) -> None:
    if dist.on:
        import torch.distributed as td

        td.barrier()


# --------------------------------------------------------------------------------------------------------------------
# data


def _split_file(data: str) -> Path:
    path = Path(data)
    if path.is_dir():
        path = path / SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"crop split file not found: {path} (build one with classification.dataset)")
    return path.resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _subset_records(records: list[CropRecord], n: int | None, seed: int) -> list[CropRecord]:
    """At most n records, both classes alternating so even a tiny slice holds each class."""
    if n is None or len(records) <= n:
        return records
    rng = random.Random(seed)
    by_class = [[r for r in records if r.label == c] for c in CLASS_NAMES]
    for group in by_class:
        rng.shuffle(group)
    picked: list[CropRecord] = []
    while len(picked) < n:
        for group in by_class:
            if group and len(picked) < n:
                picked.append(group.pop())
    return picked


def _datasets(config: ClassifierTrainConfig, split_file: Path) -> dict[str, CropDataset]:
    out = {}
    for split, train in (("train", True), ("val", False), ("test", False)):
        # the test split always holds everything: the ALL-IDB-only numbers are computed from it separately
        extras = config.include_extra_normal or split == "test"
        ds = CropDataset(split_file, split, transform=build_transforms(config, train), include_extra_normal=extras)
        ds.records = _subset_records(ds.records, config.max_per_split, config.seed)
        out[split] = ds
    if len(out["train"]) == 0 or len(out["val"]) == 0:
        raise ValueError(f"{split_file}: the train and val splits must both hold crops "
                         f"(train {len(out['train'])}, val {len(out['val'])})")
    return out


def _data_summary(datasets: dict[str, CropDataset], split_file: Path) -> dict[str, Any]:
    summary: dict[str, Any] = {"split_file": str(split_file), "class_names": list(CLASS_NAMES)}
    for split, ds in datasets.items():
        counts = Counter((r.label, r.dataset) for r in ds.records)
        summary[split] = {c: {d: n for (lab, d), n in sorted(counts.items()) if lab == c} for c in CLASS_NAMES}
    report = split_file.parent / "build_report.json"
    if report.is_file():
        build = json.loads(report.read_text(encoding="utf-8"))
        summary["build"] = {**(build.get("options") or {k: build.get(k) for k in ("crop_size", "margin", "seed",
                                                                                   "limit")}),
                            "created": build.get("created")}
    return summary


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # torch gives each worker its own seed; numpy and random follow it
    np.random.seed(seed)
    random.seed(seed)


def _train_loader(ds: CropDataset, config: ClassifierTrainConfig, dist: _Dist, epoch: int,
                  device: torch.device) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(config.seed * 100_003 + epoch)  # per epoch, so a resumed run draws the same batches
    sampler: Any = None
    if dist.on:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
    elif config.balance in ("sampler", "groups"):
        from torch.utils.data import WeightedRandomSampler

        weights = sample_weights(ds.records) if config.balance == "groups" else \
            [1.0 / ds.class_counts()[label] for label in ds.labels]
        sampler = WeightedRandomSampler(weights, num_samples=config.epoch_samples or len(ds), replacement=True,
                                        generator=generator)
    return DataLoader(ds, batch_size=config.batch, shuffle=sampler is None, sampler=sampler,
                      num_workers=config.workers, worker_init_fn=_seed_worker, generator=generator,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def sample_group(record: CropRecord) -> str:
    """The stratum a crop is balanced and reported in: source group (lab / camera) x diagnosis."""
    return f"{record.group or record.dataset}/{record.diagnosis or 'unknown'}"


def sample_weights(records: Sequence[CropRecord]) -> list[float]:
    """Sampling weights: each class draws half of the crops; within a class, each group gets a share proportional to
    the square root of its size (a small group, e.g. the non-blast cells of ALL smears, is drawn more often than its
    size alone would give, a large one, e.g. PBC, less), split evenly over the group's crops."""
    sizes = Counter((r.label, sample_group(r)) for r in records)
    labels = {r.label for r in records}
    share = {}
    for label in labels:
        roots = {g: math.sqrt(n) for (lab, g), n in sizes.items() if lab == label}
        total = sum(roots.values())
        for group, root in roots.items():
            share[(label, group)] = (1.0 / len(labels)) * root / total
    return [share[(r.label, sample_group(r))] / sizes[(r.label, sample_group(r))] for r in records]


def _class_weights(ds: CropDataset, config: ClassifierTrainConfig, dist: _Dist) -> torch.Tensor | None:
    use = config.balance == "loss" or (config.balance in ("sampler", "groups") and dist.on)
    if not use:
        return None
    counts = np.array(ds.class_counts(), dtype=float)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])  # each class weighs as much in total
    return torch.tensor(weights, dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------------------
# freezing


def _phase(epoch: int, config: ClassifierTrainConfig) -> str:
    if epoch <= config.freeze_epochs:
        return "head"
    return config.unfreeze if config.freeze_epochs > 0 else "all"


def _frozen_modules(model: nn.Module, phase: str) -> list[nn.Module]:
    features = list(model.features)
    if phase == "head":
        return features
    if phase == "half":
        return features[: len(features) // 2]
    return []


def _apply_phase(model: nn.Module, phase: str) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    for module in _frozen_modules(model, phase):
        for p in module.parameters():
            p.requires_grad_(False)


def _train_mode(model: nn.Module, phase: str) -> None:
    model.train()
    for module in _frozen_modules(model, phase):
        module.eval()  # frozen layers keep their batch-norm statistics, or "frozen" would still drift


# --------------------------------------------------------------------------------------------------------------------
# the loop


def _autocast(device: torch.device, config: ClassifierTrainConfig):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and config.amp)


def _train_epoch(net: nn.Module, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 criterion: nn.Module, config: ClassifierTrainConfig, device: torch.device, dist: _Dist,
                 phase: str) -> tuple[float, float]:
    _train_mode(model, phase)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum, correct, count = 0.0, 0, 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, config):
            logits = net(images)
        loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        loss_sum += float(loss.detach()) * labels.numel()
        correct += int((logits.argmax(1) == labels).sum())
        count += labels.numel()
    loss_sum, correct, count = _all_reduce_sum([loss_sum, float(correct), float(count)], dist, device)
    return loss_sum / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def _predict(model: nn.Module, dataset: Dataset, config: ClassifierTrainConfig, device: torch.device,
             dist: _Dist | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, p_blast, per-crop cross-entropy) over `dataset`; with `dist`, each rank runs its shard and all ranks
    get everything, in dataset order."""
    model.eval()
    indices = list(range(len(dataset)))
    if dist is not None and dist.on:
        indices = indices[dist.rank :: dist.world]  # no padding, unlike DistributedSampler: each crop counts once
    loader = DataLoader(Subset(dataset, indices), batch_size=config.batch * 2, shuffle=False,
                        num_workers=config.workers, pin_memory=device.type == "cuda")
    labels_out, probs_out, losses_out = [], [], []
    for images, labels in loader:
        images = images.to(device)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, config):
            logits = model(images)
        logits = logits.float().cpu()
        labels_out.append(labels.numpy())
        probs_out.append(torch.softmax(logits, 1)[:, BLAST].numpy())
        losses_out.append(nn.functional.cross_entropy(logits, labels, reduction="none").numpy())
    local = (indices,
             np.concatenate(labels_out) if labels_out else np.zeros(0, int),
             np.concatenate(probs_out) if probs_out else np.zeros(0),
             np.concatenate(losses_out) if losses_out else np.zeros(0))
    parts = _gather(local, dist) if dist is not None else [local]
    order = np.concatenate([np.asarray(p[0], dtype=int) for p in parts])
    merged = [np.concatenate([p[k] for p in parts]) for k in (1, 2, 3)]
    sort = np.argsort(order, kind="stable")
    return merged[0][sort], merged[1][sort], merged[2][sort]


def _val_metrics(labels: np.ndarray, probs: np.ndarray, losses: np.ndarray,
                 groups: Sequence[str] | None = None, select_by: str = "loss") -> dict[str, Any]:
    metrics = binary_metrics(labels, probs)
    metrics["class_loss"] = _balanced_loss(losses, labels)
    metrics["loss_unweighted"] = float(losses.mean()) if losses.size else math.nan
    if groups is not None and len(groups) == len(labels):
        keys = np.array([f"{CLASS_NAMES[int(lab)]}:{g}" for lab, g in zip(labels, groups)])
        metrics["group_loss"] = {k: float(losses[keys == k].mean()) for k in sorted(set(keys))}
        # each class counts half, each of its groups equally within it: normals come from many more groups
        per_class = [np.mean([v for k, v in metrics["group_loss"].items() if k.startswith(f"{c}:")])
                     for c in CLASS_NAMES if any(k.startswith(f"{c}:") for k in metrics["group_loss"])]
        metrics["loss_by_groups"] = float(np.mean(per_class)) if per_class else math.nan
    use_groups = select_by == "group_loss" and "loss_by_groups" in metrics
    metrics["loss"] = metrics["loss_by_groups"] if use_groups else metrics["class_loss"]
    return metrics


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """The operating threshold on p_blast chosen on validation crops: the one of best F1 (blast positive), the lowest
    such threshold on a 0.01 grid between 0.05 and 0.95 (ties go to the higher recall)."""
    y = np.asarray(labels) == BLAST
    p = np.asarray(probs, dtype=float)
    best = {"threshold": 0.5, "f1": -1.0, "precision": None, "recall": None}
    for t in np.round(np.arange(0.05, 0.951, 0.01), 2):
        pred = p >= t
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best["f1"] + 1e-12:
            best = {"threshold": float(t), "f1": f1, "precision": tp / (tp + fp) if tp + fp else None,
                    "recall": tp / (tp + fn) if tp + fn else None}
    return best


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _cpu_copy(state: Any) -> Any:
    return copy.deepcopy(_to_cpu(state))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:  # rewritten whole each epoch: after a resume it matches the state
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)


def train_classifier(config: ClassifierTrainConfig) -> TrainResult:
    """Train (or resume) and return the run's result; under torchrun the process group is set up and torn down."""
    config.check()
    dist = _Dist.from_env()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = _resolve_device(config, dist)
    if dist.on:
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(config, dist, device)
    finally:
        if dist.on:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def _train(config: ClassifierTrainConfig, dist: _Dist, device: torch.device) -> TrainResult:
    started = time.perf_counter()
    out = Path(config.out)
    best_path, last_path, log_path = out / BEST_NAME, out / LAST_NAME, out / LOG_NAME
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if not config.resume and last_path.is_file() and not config.exist_ok:
        raise FileExistsError(f"{out} holds an earlier run ({LAST_NAME}); pass resume or exist_ok")
    _seed_all(config.seed + dist.rank)

    split_file = _split_file(config.data)
    split_sha = _sha256(split_file)
    datasets = _datasets(config, split_file)
    summary = _data_summary(datasets, split_file)
    if dist.main:
        log.info("data %s (sha256 %s): train %d, val %d, test %d crops; train classes %s", split_file,
                 split_sha[:12], len(datasets["train"]), len(datasets["val"]), len(datasets["test"]),
                 dict(zip(CLASS_NAMES, datasets["train"].class_counts())))

    model = build_efficientnet_b3(len(CLASS_NAMES), pretrained=config.pretrained).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rule = PlateauRule(lr=config.lr, factor=config.lr_factor, min_lr=config.min_lr, patience=config.patience,
                       lr_patience=config.lr_patience)
    best_model: dict | None = None
    best_optim: dict | None = None
    best_val: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    start_epoch, stopped = 1, False

    if config.resume:
        state = _load_state(last_path)
        if state["split_sha256"] != split_sha:
            raise ValueError(f"cannot resume {last_path}: {split_file} changed since (sha256 {split_sha[:12]} vs "
                             f"{state['split_sha256'][:12]}); start a new run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rule = PlateauRule(**state["rule"])
        rule.patience, rule.lr_patience = config.patience, config.lr_patience  # new settings; counters carry on
        best_model, best_optim = state.get("best_model"), state.get("best_optimizer")
        best_val, history = dict(state.get("best_val") or {}), list(state["history"])
        # an early-stopped run goes on only if the patience given now has not run out
        start_epoch, stopped = int(state["epoch"]) + 1, rule.bad_epochs >= rule.patience
        _set_rng_state(state["rng"])
        _set_lr(optimizer, rule.lr)
        if dist.main:
            log.info("resuming %s after epoch %d (best %.4f at epoch %d, lr %.2e)", last_path, state["epoch"],
                     rule.best, rule.best_epoch, rule.lr)

    if config.balance in ("sampler", "groups") and dist.on and dist.main:
        log.info("DDP: class balance by loss weights (DistributedSampler owns the sampling)")
    weights = _class_weights(datasets["train"], config, dist)
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None,
                                    label_smoothing=config.label_smoothing)
    net: nn.Module = model
    net_phase: str | None = None
    epoch = start_epoch - 1
    meta_base = {
        "task": "ALL blast / normal white-cell crops", "config": asdict(config), "split_file": str(split_file),
        "split_sha256": split_sha, "data": summary, "world_size": dist.world,
        "torch": str(torch.__version__),  # a TorchVersion (str subclass) would not load under weights_only
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    build = summary.get("build") or {}
    if build.get("field_um"):  # the predictor frames its crops exactly as the build did
        meta_base["crop"] = {"field_um": float(build["field_um"]), "margin": float(build.get("margin", 0.15))}

    for epoch in range(start_epoch, config.epochs + 1):
        if stopped:
            break
        tick = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + dist.rank)  # augmentation draws, per epoch
        phase = _phase(epoch, config)
        if phase != net_phase:
            _apply_phase(model, phase)
            if dist.on:  # DDP registers the trainable parameters when wrapped: wrap again when they change
                from torch.nn.parallel import DistributedDataParallel

                net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            net_phase = phase
        lr_used = rule.lr
        loader = _train_loader(datasets["train"], config, dist, epoch, device)
        train_loss, train_acc = _train_epoch(net, model, loader, optimizer, criterion, config, device, dist, phase)
        val_tick = time.perf_counter()
        val = _val_metrics(*_predict(model, datasets["val"], config, device, dist),
                           groups=[sample_group(r) for r in datasets["val"].records], select_by=config.select_by)
        val_seconds = time.perf_counter() - val_tick
        decision = rule.step(epoch, val["loss"])
        if decision.improved:
            action = "best"
            best_model, best_optim = _cpu_copy(model.state_dict()), _cpu_copy(optimizer.state_dict())
            best_val = {"epoch": epoch, **val}
            if dist.main:
                save_classifier(best_path, model, CLASS_NAMES, config.input_size, IMAGENET_MEAN, IMAGENET_STD,
                                meta={**meta_base, "epoch": epoch, "val": val})
                log.info("saved best %s (epoch %d, val loss %.4f)", best_path, epoch, val["loss"])
        elif decision.restore_best and best_model is not None:
            action = "restored"
            model.load_state_dict(best_model)
            optimizer.load_state_dict(best_optim)
        else:
            action = "plateau" if not decision.restore_best else "worse"
        _set_lr(optimizer, decision.lr)
        stopped = decision.stop
        seconds = time.perf_counter() - tick
        history.append({k: _fmt(v) for k, v in {
            "epoch": epoch, "phase": phase, "train_loss": train_loss, "train_acc": train_acc,
            "val_loss": val["loss"], "val_acc": val["accuracy"], "val_bal_acc": val.get("balanced_accuracy"),
            "val_auc": val.get("roc_auc"), "lr": lr_used, "seconds": seconds, "val_seconds": val_seconds,
            "action": action,
        }.items()})
        if dist.main:
            auc = val.get("roc_auc")
            log.info("epoch %d/%d [%s] train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %s | lr %.2e | "
                     "%.1f s (val %.1f s)%s", epoch, config.epochs, phase, train_loss, train_acc, val["loss"],
                     val["accuracy"], "-" if auc is None else f"{auc:.3f}", lr_used, seconds, val_seconds,
                     {"best": " | best",
                      "restored": f" | worse: best restored, lr -> {decision.lr:.2e}"}.get(action, ""))
            _write_log(log_path, history)
            _save_state(last_path, model, optimizer, rule, best_model, best_optim, best_val, history, epoch, stopped,
                        split_sha, config)
        if stopped and dist.main:
            log.info("early stop: no better validation loss for %d epochs (best %.4f at epoch %d)", rule.bad_epochs,
                     rule.best, rule.best_epoch)
        _barrier(dist)

    test = test_allidb = None
    if dist.main:
        if not best_path.is_file():
            raise RuntimeError(f"no {BEST_NAME} was written (validation loss never finite?)")
        test, test_allidb = _evaluate_best(best_path, datasets["val"], datasets["test"], config, device)
    _barrier(dist)
    return TrainResult(
        out_dir=str(out.resolve()), best_path=str(best_path.resolve()), last_state_path=str(last_path.resolve()),
        log_path=str(log_path.resolve()), best_epoch=rule.best_epoch, last_epoch=int(history[-1]["epoch"]) if history
        else 0, stopped_early=stopped, best_val=best_val, test=test, test_allidb=test_allidb,
        seconds=time.perf_counter() - started, world_size=dist.world, rank=dist.rank,
    )


def _save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, rule: PlateauRule,
                best_model: dict | None, best_optim: dict | None, best_val: dict, history: list[dict], epoch: int,
                stopped: bool, split_sha: str, config: ClassifierTrainConfig) -> None:
    state = {
        "format": STATE_FORMAT, "epoch": epoch, "stopped": stopped, "lr": rule.lr, "rule": asdict(rule),
        "model": _to_cpu(model.state_dict()), "optimizer": _to_cpu(optimizer.state_dict()),
        "best_model": best_model, "best_optimizer": best_optim, "best_val": _plain_json(best_val),
        "history": history, "split_sha256": split_sha, "config": asdict(config), "rng": _rng_state(),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)  # data only, never code
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a classifier training state ({STATE_FORMAT})")
    return state


def group_metrics(records: Sequence[CropRecord], labels: np.ndarray, probs: np.ndarray,
                  threshold: float) -> dict[str, dict[str, Any]]:
    """binary_metrics per source group (lab / camera x diagnosis), plus "ALL images, non-blast cells" (the hard
    negatives: every non-blast crop of an ALL smear) and "ALL images, all cells"."""
    keys = np.array([sample_group(r) for r in records])
    out = {g: binary_metrics(labels[keys == g], probs[keys == g], threshold) for g in sorted(set(keys))}
    all_images = np.array([r.diagnosis == "ALL" for r in records])
    normal = labels != BLAST
    for name, mask in (("ALL images, non-blast cells", all_images & normal), ("ALL images, all cells", all_images)):
        if mask.any():
            out[name] = binary_metrics(labels[mask], probs[mask], threshold)
    return out


def _evaluate_best(best_path: Path, val_ds: CropDataset, test_ds: CropDataset, config: ClassifierTrainConfig,
                   device: torch.device) -> tuple[dict | None, dict | None]:
    """The saved best checkpoint (as shipped: fp16 weights): its operating threshold chosen on the validation crops,
    then its test metrics at that threshold, overall, per group and ALL-IDB only; all written into its meta."""
    model, spec = load_classifier(best_path, device)
    # exactly the code path of `workbench eval classifier` (crop files resized as inference crops are), so the
    # reported numbers are the ones that command reproduces
    from classification.evaluate import CropSample, predict_crops
    from classification.predictor import BlastClassifier

    classifier = BlastClassifier(best_path, device=str(device), batch=config.batch)

    def scores(ds: CropDataset) -> tuple[np.ndarray, np.ndarray]:
        samples = [CropSample(ds.root / r.file, r.label, r.extra_normal) for r in ds.records]
        return np.array([CLASS_NAMES.index(r.label) for r in ds.records]), predict_crops(classifier, samples)

    val_labels, val_probs = scores(val_ds)
    chosen = choose_threshold(val_labels, val_probs)
    threshold = chosen["threshold"]
    meta = {**spec.meta, "threshold": {**chosen, "chosen_on": "val", "rule": "best F1, 0.01 grid"}}
    if len(test_ds) == 0:
        log.warning("the test split is empty: no test metrics")
        save_classifier(best_path, model, spec.class_names, spec.input_size, spec.mean, spec.std, meta=meta)
        return None, None
    labels, probs = scores(test_ds)
    allidb = np.array([not r.extra_normal for r in test_ds.records])
    test = binary_metrics(labels, probs, threshold)
    test_allidb = binary_metrics(labels[allidb], probs[allidb], threshold)
    meta.update({"test": test, "test_allidb": test_allidb, "test_at_0.5": binary_metrics(labels, probs),
                 "test_groups": group_metrics(test_ds.records, labels, probs, threshold),
                 "val_groups": group_metrics(val_ds.records, val_labels, val_probs, threshold)})
    save_classifier(best_path, model, spec.class_names, spec.input_size, spec.mean, spec.std, meta=meta)
    log.info("operating threshold %.2f (val F1 %.3f)", threshold, chosen["f1"])
    for name, m in (("test", test), ("test (ALL-IDB only)", test_allidb), *meta["test_groups"].items()):
        if m.get("n"):
            log.info("%s: n %d, acc %.3f, precision %.3f, recall %.3f, specificity %s, F1 %.3f, ROC-AUC %s", name,
                     m["n"], m["accuracy"], m["precision"], m["recall"], _num(m["specificity"]), m["f1"],
                     _num(m["roc_auc"]))
    return test, test_allidb


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------------------------------
# command line


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The CLI options, one per ClassifierTrainConfig field (`--input-size` for input_size, `--no-augment` ...)."""
    parser = parser or argparse.ArgumentParser(
        prog="python -m classification.train",
        description="Train the EfficientNet-B3 blast/normal classifier on a crop build. "
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    # every rank logs at INFO, the others tagged: the trainer logs progress on rank 0 only, so any line from another
    # rank (a checkpoint write, say) is a finding, not noise
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if rank == 0 else
                        f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = train_classifier(config_from_args(args))
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if rank == 0:
        log.info("done: best %s (epoch %d of %d%s), %.0f s", result.best_path, result.best_epoch, result.last_epoch,
                 ", early stop" if result.stopped_early else "", result.seconds)
        log.info("result: %s", json.dumps(asdict(result), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
