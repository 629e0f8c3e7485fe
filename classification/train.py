"""Training the blast / normal classifier (EfficientNet-B3, or any network of classification.architectures via
`arch`, with a `head`, an `optimizer`, an `lr_schedule` and a `preprocess` step) on a crop build
(classification.dataset), no ultralytics.

Recipe (every knob is a ClassifierTrainConfig field and a `python -m classification.train` option):
- inputs resized to `input_size`; training augmentation: random resized crop (zoom), h/v flips, rotation + shear
  (filled with the crop's own background colour, not black, so corners carry no cue), colour jitter for stain
  variation (torchvision.transforms.v2);
- class balance: a WeightedRandomSampler (`balance=sampler`), class weights in the loss (`loss`) or none; under DDP
  the sampler becomes loss weights (DistributedSampler already owns the sampling);
- AdamW (lr 1e-4, weight decay 1e-4; or adam, adamax, sgd), label smoothing 0.1, gradient clipping at norm 1.0;
  together with the zero-init head of build_classifier this is what made B3 learn from scratch here (the default
  head did not); Inception-v3's auxiliary head adds its loss with weight AUX_WEIGHT;
- optional `freeze_epochs` (backbone frozen, head only), after which the later half of `model.features` (or all of
  it, `unfreeze=all`) trains; without freeze_epochs the whole network trains from the start;
- optional `precise_bn` N: before validation, the batch-norm statistics are re-estimated over N training batches
  (short runs from scratch: otherwise the init's statistics make every crop one probability);
- validation loss is class-balanced cross-entropy (mean of the per-class means, no smoothing), so the many BCCD
  normals do not decide model selection; the best epoch by it is saved as `best.pt` (save_classifier, fp16);
- dynamic LR (`lr_schedule=dwell`, PlateauRule): when validation loss rises above the best, the best weights and
  optimizer state are restored and the LR is halved (floor 1e-6); `fixed` keeps the LR and `cosine` decays it, both
  without restoring; training stops after `patience` epochs without improvement;
- `last_state.pt` (fp32 model, optimizer, best snapshot, RNG states, history) is written every epoch for `resume`;
- at the end the best checkpoint is evaluated on the test split (all crops, and ALL-IDB crops only, i.e. without
  the BCCD extra normals) and the metrics go into TrainResult and into best.pt's meta.

Distributed: `torchrun --nproc_per_node N -m classification.train --data ...` runs DistributedDataParallel (gloo on
CPU, nccl on CUDA); rank 0 alone logs and writes files. Validation is sharded over the ranks and gathered, so every
rank takes the same early-stopping / LR decisions.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from classification.dataset import CLASS_NAMES, SPLIT_FILE, CropDataset, CropRecord
from classification.distributed import Dist, all_reduce_sum, barrier, gather, resolve_device
from classification.architectures import AUX_WEIGHT, backbone_blocks, split_logits
from classification.model import IMAGENET_MEAN, IMAGENET_STD, build_classifier, save_classifier
from classification.train_config import (BEST_NAME, LAST_NAME, LOG_FIELDS, LOG_NAME, SGD_MOMENTUM,
                                         ClassifierTrainConfig, PlateauRule, TrainResult, build_parser,
                                         config_from_args, epoch_lr, resolved)
from classification.augment import build_transforms
from classification.band import choose_band
from classification.train_state import _cpu_copy, _load_state, _save_state, _seed_all, _set_rng_state
from classification.train_metrics import (BLAST, _num, _val_metrics, binary_metrics, choose_threshold,
                                          group_metrics, sample_group, sample_weights)
from workbench.core.fileio import atomic_open, sha256_file

__all__ = ["ClassifierTrainConfig", "PlateauRule", "TrainResult", "binary_metrics", "build_parser",
           "build_transforms", "choose_threshold", "config_from_args", "group_metrics", "main", "sample_group",
           "sample_weights", "train_classifier"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# data


def _split_file(data: str) -> Path:
    path = Path(data)
    if path.is_dir():
        path = path / SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"crop split file not found: {path} (build one with classification.dataset)")
    return path.resolve()


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


def _train_loader(ds: CropDataset, config: ClassifierTrainConfig, dist: Dist, epoch: int,
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


def _class_weights(ds: CropDataset, config: ClassifierTrainConfig, dist: Dist) -> torch.Tensor | None:
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
    features = backbone_blocks(model)
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
                 criterion: nn.Module, config: ClassifierTrainConfig, device: torch.device, dist: Dist,
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
            logits, aux = split_logits(net(images))
        loss = criterion(logits.float(), labels)
        if aux is not None:  # Inception-v3's auxiliary head (train mode only)
            loss = loss + AUX_WEIGHT * criterion(aux.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        loss_sum += float(loss.detach()) * labels.numel()
        correct += int((logits.argmax(1) == labels).sum())
        count += labels.numel()
    loss_sum, correct, count = all_reduce_sum([loss_sum, float(correct), float(count)], dist, device)
    return loss_sum / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def _precise_bn(model: nn.Module, loader: DataLoader, batches: int, config: ClassifierTrainConfig,
                device: torch.device) -> None:
    """PreciseBN (Wu & Johnson 2021): the running statistics of every training batch-norm layer (frozen ones keep
    theirs) re-estimated as the plain average over `batches` training batches with the current weights. An
    exponential average over a few dozen steps from scratch is still mostly the init's (mean 0, variance 1), and in
    eval mode a deep network's activations then vanish: EfficientNet gave every crop one probability after 18
    steps. Under DDP each rank estimates its own (its shard's) statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None   # a cumulative average
    for i, (images, _labels) in enumerate(loader):
        if i >= batches:
            break
        with _autocast(device, config):
            model(images.to(device, non_blocking=True))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def _predict(model: nn.Module, dataset: Dataset, config: ClassifierTrainConfig, device: torch.device,
             dist: Dist | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    parts = gather(local, dist) if dist is not None else [local]
    order = np.concatenate([np.asarray(p[0], dtype=int) for p in parts])
    merged = [np.concatenate([p[k] for p in parts]) for k in (1, 2, 3)]
    sort = np.argsort(order, kind="stable")
    return merged[0][sort], merged[1][sort], merged[2][sort]


def make_optimizer(config: ClassifierTrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


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
    config = resolved(config)
    dist = Dist.from_env()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config, dist)
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


def _train(config: ClassifierTrainConfig, dist: Dist, device: torch.device) -> TrainResult:
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
    split_sha = sha256_file(split_file)
    datasets = _datasets(config, split_file)
    summary = _data_summary(datasets, split_file)
    if dist.main:
        log.info("data %s (sha256 %s): train %d, val %d, test %d crops; train classes %s", split_file,
                 split_sha[:12], len(datasets["train"]), len(datasets["val"]), len(datasets["test"]),
                 dict(zip(CLASS_NAMES, datasets["train"].class_counts())))

    model = build_classifier(config.arch, len(CLASS_NAMES), config.head, config.pretrained,
                             config.input_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    # the rule tracks the best epoch and early stopping for every schedule; it sets the LR only under dwell
    rule = PlateauRule(lr=config.lr, factor=config.lr_factor if config.lr_schedule == "dwell" else 1.0,
                       min_lr=config.min_lr, patience=config.patience, lr_patience=config.lr_patience)
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
        "preprocess": config.preprocess,  # part of the weights: the predictor applies it to every crop
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
        lr_used = epoch_lr(config, epoch, rule.lr)
        _set_lr(optimizer, lr_used)
        loader = _train_loader(datasets["train"], config, dist, epoch, device)
        train_loss, train_acc = _train_epoch(net, model, loader, optimizer, criterion, config, device, dist, phase)
        if config.precise_bn:   # the epoch's own draws again (same generator), with the weights as they are now
            _precise_bn(model, _train_loader(datasets["train"], config, dist, epoch, device), config.precise_bn,
                        config, device)
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
        elif decision.restore_best and best_model is not None and config.lr_schedule == "dwell":
            action = "restored"
            model.load_state_dict(best_model)
            optimizer.load_state_dict(best_optim)
        else:
            action = "plateau" if not decision.restore_best else "worse"
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
        barrier(dist)

    test = test_allidb = None
    if dist.main:
        if not best_path.is_file():
            raise RuntimeError(f"no {BEST_NAME} was written (validation loss never finite?)")
        test, test_allidb = _evaluate_best(best_path, datasets["val"], datasets["test"], config, device)
    barrier(dist)
    return TrainResult(
        out_dir=str(out.resolve()), best_path=str(best_path.resolve()), last_state_path=str(last_path.resolve()),
        log_path=str(log_path.resolve()), best_epoch=rule.best_epoch, last_epoch=int(history[-1]["epoch"]) if history
        else 0, stopped_early=stopped, best_val=best_val, test=test, test_allidb=test_allidb,
        seconds=time.perf_counter() - started, world_size=dist.world, rank=dist.rank,
    )


def _evaluate_best(best_path: Path, val_ds: CropDataset, test_ds: CropDataset, config: ClassifierTrainConfig,
                   device: torch.device) -> tuple[dict | None, dict | None]:
    """The saved best checkpoint (as shipped: fp16 weights): its operating threshold chosen on the validation crops,
    then its test metrics at that threshold, overall, per group and ALL-IDB only; all written into its meta."""
    # exactly the code path of `workbench eval classifier` (crop files resized as inference crops are), so the
    # reported numbers are the ones that command reproduces; its network and spec are the ones re-saved below
    from classification.evaluate import CropSample, predict_crops
    from classification.predictor import BlastClassifier

    classifier = BlastClassifier(best_path, device=str(device), batch=config.batch)
    model, spec = classifier.model, classifier.spec

    def scores(ds: CropDataset) -> tuple[np.ndarray, np.ndarray]:
        samples = [CropSample(ds.root / r.file, r.label, r.extra_normal) for r in ds.records]
        return np.array([CLASS_NAMES.index(r.label) for r in ds.records]), predict_crops(classifier, samples)

    val_labels, val_probs = scores(val_ds)
    chosen = choose_threshold(val_labels, val_probs)
    threshold = chosen["threshold"]
    meta = {**spec.meta, "threshold": {**chosen, "chosen_on": "val", "rule": "best F1, 0.01 grid"},
            # cells the analysis leaves "unidentified" for a person (classification.band), also chosen on val
            "unidentified_band": {**choose_band(val_labels == BLAST, val_probs, threshold),
                                  "chosen_on": "val"}}
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
