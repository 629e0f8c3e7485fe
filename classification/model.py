"""The classifier networks (classification.architectures: EfficientNet-B0..B3 by default B3, VGG19-BN, ResNet50,
DenseNet121, Inception-v3, and with timm Xception / Inception-ResNet-v2) and their one checkpoint format (save / load
with clear errors). A checkpoint names its architecture and head; one loader builds any of them."""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from classification.architectures import HEADS, architecture, build_network, head_prefixes
from classification.preprocess import PREPROCESS
from classification.records import ClassifierSpec
from workbench.core.errors import ClassifierLoadError
from workbench.core.fileio import atomic_open

log = logging.getLogger(__name__)

ARCHITECTURE = "efficientnet_b3"
DEFAULT_INPUT_SIZE = 300
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "smear-workbench-classifier/1"

__all__ = [
    "ARCHITECTURE",
    "CHECKPOINT_FORMAT",
    "ClassifierSpec",
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build_classifier",
    "build_efficientnet_b3",
    "load_classifier",
    "save_classifier",
]

def build_classifier(arch: str = ARCHITECTURE, num_classes: int = 2, head: str = "linear",
                     pretrained: Path | str | None = None, input_size: int | None = None) -> nn.Module:
    """The `arch` network (classification.architectures) with a zero-initialised `head` for `num_classes`; backbone
    weights from `pretrained` when given. The head starts at zero: the default head init gave first losses of 4-6
    and no learning from scratch, while a zero head starts at uniform probabilities (loss ln C) and trains."""
    model = build_network(arch, num_classes, head, input_size)
    if pretrained is not None:
        _load_backbone(model, Path(pretrained))
    return model


def build_efficientnet_b3(num_classes: int, pretrained: Path | str | None = None) -> nn.Module:
    """EfficientNet-B3 with a zero-initialised linear `num_classes` head (the shipped classifiers)."""
    return build_classifier(ARCHITECTURE, num_classes, "linear", pretrained)


def _arch_label(model: nn.Module) -> str:
    return {"efficientnet_b3": "EfficientNet-B3"}.get(getattr(model, "workbench_arch", ARCHITECTURE),
                                                      getattr(model, "workbench_arch", ARCHITECTURE))


def _load_backbone(model: nn.Module, path: Path) -> None:
    """Copy every matching tensor of a torchvision / timm state dict (or one of our checkpoints) into `model`.

    Only head tensors may differ in shape (ImageNet's 1000 classes vs ours); anything else that does not fit means
    the file is not weights of this architecture, which must fail loudly rather than train from a half-loaded
    backbone.
    """
    label = _arch_label(model)
    prefixes = head_prefixes(getattr(model, "workbench_arch", ARCHITECTURE))
    obj = _torch_load(path, what="pretrained weights")
    if isinstance(obj, dict) and "format" in obj and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ClassifierLoadError(
            f"{path} is not an {label} state dict (expected torchvision ImageNet weights or a "
            f"classifier checkpoint)"
        )
    own = model.state_dict()
    usable: dict[str, torch.Tensor] = {}
    skipped_head: list[str] = []
    misfits: list[str] = []
    for key, tensor in obj.items():
        target = own.get(key)
        if target is not None and target.shape == tensor.shape:
            usable[key] = tensor.to(target.dtype)
        elif key.startswith(prefixes):
            skipped_head.append(key)
        else:
            misfits.append(key)
    missing = [k for k in own if k not in usable and not k.startswith(prefixes)]
    if misfits or missing:
        sample = ", ".join((misfits + missing)[:3])
        raise ClassifierLoadError(
            f"{path} does not fit {label}: {len(misfits)} unexpected or mis-shaped and {len(missing)} "
            f"missing backbone tensors (e.g. {sample})"
        )
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d backbone tensors from %s; kept the new %d-class head (skipped %s)",
             len(usable), path, _outputs(model) or 0, ", ".join(skipped_head) or "nothing")


def _outputs(model: nn.Module) -> int | None:
    """The class count of the network's last linear layer (None when it has none)."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


def _plain(value: Any) -> Any:
    """Python containers and scalars only, so the checkpoint loads under torch.load(weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if value is None or type(value) in (bool, int, float, str):
        return value
    for base in (bool, int, float):  # subclasses (e.g. IntEnum) are refused by weights_only loading
        if isinstance(value, base):
            return base(value)
    return str(value)  # includes str subclasses such as torch.__version__ (TorchVersion)


def save_classifier(
    path: Path | str,
    model: nn.Module,
    class_names: Sequence[str],
    input_size: int = DEFAULT_INPUT_SIZE,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    meta: dict | None = None,
    half: bool = True,
) -> Path:
    """Write a self-describing checkpoint atomically; floating tensors in fp16 when `half` (halves the shipped file).

    Integer buffers (num_batches_tracked) keep their dtype: they are counters, not weights.
    """
    path = Path(path)
    outputs = _outputs(model)
    if outputs is not None and outputs != len(class_names):
        raise ValueError(f"model has {outputs} outputs but {len(class_names)} class names were given")
    arch = getattr(model, "workbench_arch", ARCHITECTURE)
    head = getattr(model, "workbench_head", "linear")
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        # clone so each tensor is saved on its own storage, never a view dragging a larger buffer along
        state[key] = tensor.half() if half and tensor.is_floating_point() else tensor.clone()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "architecture": arch,
        "head": head,
        "class_names": [str(c) for c in class_names],
        "input_size": int(input_size),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "meta": _plain(meta or {}),
        "state_dict": state,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(checkpoint, handle)
    log.info("saved classifier %s (%s, %d classes, %s)", path, arch, len(class_names), "fp16" if half else "fp32")
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ClassifierLoadError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ClassifierLoadError(f"{path} is not a readable {_noun(what)} (empty file)")
    try:
        # weights_only: a checkpoint is data, never code to execute
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, EOF and runtime errors for bad files alike
        if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower():
            # torch's own text is a long how-to for unsafe loading; name the likely cause instead
            reason = "it holds pickled Python objects, e.g. a YOLO/ultralytics model, not plain weights"
        elif not zipfile.is_zipfile(path):
            # torch falls back to its legacy pickle reader here, whose errors (e.g. "KeyError: 101") mean nothing
            reason = "not a PyTorch checkpoint file"
        else:
            reason = _first_line(exc)
        hint = "; expected a file written by save_classifier" if what == "classifier weights" else ""
        raise ClassifierLoadError(f"{path} is not a readable {_noun(what)} ({reason}){hint}") from exc


def _noun(what: str) -> str:
    return "classifier checkpoint" if what == "classifier weights" else f"{what} file"


def _describe_foreign(obj: Any) -> str:
    """Say what a loaded object is when it is not our checkpoint, so the user knows which file they picked."""
    if not isinstance(obj, dict):
        return f"it holds a {type(obj).__name__}"
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "it is a bare state dict"
    if "model" in obj or "ema" in obj or "train_args" in obj:
        return "it looks like a YOLO/ultralytics checkpoint"
    keys = ", ".join(sorted(map(str, obj))[:5])
    return f"it is a dict without a 'format' key (keys: {keys})"


def _spec_from(path: Path, ckpt: dict) -> ClassifierSpec:
    architecture_name = ckpt.get("architecture")
    try:
        arch = architecture(architecture_name)  # unknown, or a timm network without timm installed
    except ClassifierLoadError as exc:
        raise ClassifierLoadError(f"{path}: {exc}") from None
    head = ckpt.get("head", "linear")  # weights written before heads were a choice have the linear one
    if head not in HEADS:
        raise ClassifierLoadError(f"{path}: unknown classifier head {head!r} (known: {', '.join(HEADS)})")
    names = ckpt.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ClassifierLoadError(f"{path}: checkpoint has no valid class_names list")
    if len(names) < 2:
        raise ClassifierLoadError(f"{path}: a classifier needs at least 2 classes, this one has {list(names)} (it "
                                  f"would call every cell the same)")
    if len({n.strip().lower() for n in names}) != len(names):
        raise ClassifierLoadError(f"{path}: class names {list(names)} name a class twice")
    size = ckpt.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ClassifierLoadError(f"{path}: checkpoint input_size {size!r} is not a positive integer")
    if size < arch.min_input:
        raise ClassifierLoadError(f"{path}: input_size {size} is below {arch.name}'s smallest input {arch.min_input}")
    mean, std = ckpt.get("mean", IMAGENET_MEAN), ckpt.get("std", IMAGENET_STD)
    for label, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise ClassifierLoadError(f"{path}: checkpoint {label} must have 3 values, not {values!r}")
    if any(float(s) <= 0 for s in std):
        raise ClassifierLoadError(f"{path}: checkpoint std must be positive, not {std!r}")
    meta = ckpt.get("meta") or {}
    if isinstance(meta, dict) and meta.get("preprocess", "none") not in PREPROCESS:
        raise ClassifierLoadError(f"{path}: unknown preprocessing {meta.get('preprocess')!r} (known: "
                                  f"{', '.join(PREPROCESS)})")
    return ClassifierSpec(
        architecture=arch.name,
        class_names=list(names),
        input_size=size,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        meta=dict(meta) if isinstance(meta, dict) else {"value": meta},
        head=head,
    )


def _state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """One line naming what keeps `state` from loading strictly; torch's own message spans many lines."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} mis-shaped, e.g. {shapes[0]}")
    return "; ".join(parts)


def load_classifier(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, ClassifierSpec]:
    """Load a checkpoint written by save_classifier: the network in eval mode on `device`, and its spec."""
    path = Path(path)
    ckpt = _torch_load(path, what="classifier weights")
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise ClassifierLoadError(
            f"{path} is not a Smear Workbench classifier checkpoint ({_describe_foreign(ckpt)}); expected a file "
            f"written by save_classifier (format {CHECKPOINT_FORMAT!r})"
        )
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise ClassifierLoadError(
            f"{path}: unsupported classifier checkpoint format {ckpt['format']!r} (expected {CHECKPOINT_FORMAT!r})"
        )
    spec = _spec_from(path, ckpt)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClassifierLoadError(f"{path}: checkpoint has no valid state_dict")
    model = build_classifier(spec.architecture, len(spec.class_names), spec.head, input_size=spec.input_size)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise ClassifierLoadError(f"{path}: weights do not fit {spec.architecture} with {len(spec.class_names)} "
                                  f"classes ({problem}; {spec.head} head)")
    model.load_state_dict(state, strict=True)
    model.eval()
    model.to(device)
    log.info("loaded classifier %s: %s, classes %s, input %d px", path, spec.architecture, spec.class_names,
             spec.input_size)
    return model, spec
