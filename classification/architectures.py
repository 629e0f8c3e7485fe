"""The classifier zoo: which networks `--arch` can build, their input sizes, heads and backbone blocks.

Every network is built without downloading anything (torchvision `weights=None`, timm `pretrained=False`); ImageNet
weights, where a user has them, come in through `--pretrained PATH` (classification.model._load_backbone).

- torchvision: efficientnet_b0..b3, vgg19_bn, resnet50, densenet121, inception_v3;
- timm (optional extra `pip install smear-workbench[zoo]`): xception (timm's `legacy_xception`, the Keras
  Xception), inception_resnet_v2.

Heads (`--head`), both on the globally average-pooled features:
- `linear`: one zero-initialised linear layer (EfficientNet keeps torchvision's dropout before it, so the shipped
  B3 checkpoints load unchanged);
- `bn-dense256-dropout`: BatchNorm, Dense 256 + ReLU, Dropout 0.5, then the zero-initialised output layer: the
  head of the published Keras studies.
The last layer starts at zero (uniform probabilities, loss ln C): the default init gave first losses of 4-6 and no
learning from scratch for B3.

VGG19-BN keeps torchvision's convolutional `features` but pools globally (512 features) instead of its 7x7 grid and
4096-wide fully connected layers (120 M of its 140 M parameters), as the studies' Keras models did
(include_top=False). Inception-v3 trains with its auxiliary head (loss weight AUX_WEIGHT) when the input is at least
AUX_MIN_INPUT px (below that the auxiliary branch's 5x5 pooling has no room, and the network is built without it);
in eval mode it returns the main logits only.

This module imports no torch at import time, so the CLI can list the choices cheaply.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.core.errors import ClassifierLoadError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "ARCH_NAMES", "AUX_MIN_INPUT", "AUX_WEIGHT", "Architecture", "HEADS", "architecture",
           "backbone_blocks", "build_network", "cam_layer", "head_prefixes", "split_logits"]

HEADS = ("linear", "bn-dense256-dropout")
AUX_WEIGHT = 0.4          # Inception-v3's auxiliary loss weight (Szegedy et al. 2016; torchvision's reference)
AUX_MIN_INPUT = 299       # smallest input side whose Mixed_6e map (17 x 17) fits the auxiliary head
DENSE_WIDTH = 256
HEAD_DROPOUT = 0.5
_POOL_NAMES = {"avgpool", "dropout", "global_pool", "head_drop", "AuxLogits"}


@dataclass(frozen=True)
class Architecture:
    name: str
    source: str               # torchvision | timm
    default_input: int        # the input side the network was designed for
    min_input: int            # smallest side that runs forward and backward
    head: str                 # module replaced by the bn-dense256-dropout head; its tensors are the head's
    linear: str               # the Linear replaced by the linear head
    builder: str              # torchvision function or timm model name

    @property
    def available(self) -> bool:
        return self.source != "timm" or importlib.util.find_spec("timm") is not None


_EFFNET = {"b0": 224, "b1": 240, "b2": 260, "b3": 300}
ARCHITECTURES: dict[str, Architecture] = {
    **{f"efficientnet_{v}": Architecture(f"efficientnet_{v}", "torchvision", size, 32, "classifier", "classifier.1",
                                         f"efficientnet_{v}") for v, size in _EFFNET.items()},
    "vgg19_bn": Architecture("vgg19_bn", "torchvision", 224, 32, "classifier", "classifier", "vgg19_bn"),
    "resnet50": Architecture("resnet50", "torchvision", 224, 32, "fc", "fc", "resnet50"),
    "densenet121": Architecture("densenet121", "torchvision", 224, 32, "classifier", "classifier", "densenet121"),
    "inception_v3": Architecture("inception_v3", "torchvision", 299, 75, "fc", "fc", "inception_v3"),
    "xception": Architecture("xception", "timm", 299, 32, "fc", "fc", "legacy_xception"),
    "inception_resnet_v2": Architecture("inception_resnet_v2", "timm", 299, 75, "classif", "classif",
                                        "inception_resnet_v2"),
}
ARCH_NAMES = tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The registry entry of `name`; ClassifierLoadError for an unknown one or a timm one without timm."""
    arch = ARCHITECTURES.get(str(name))
    if arch is None:
        raise ClassifierLoadError(f"unknown classifier architecture {name!r} (known: {', '.join(ARCH_NAMES)})")
    if not arch.available:
        raise ClassifierLoadError(f"architecture {name!r} needs timm, which is not installed "
                                  f"(pip install 'smear-workbench[zoo]' or pip install timm)")
    return arch


def _get(model: "nn.Module", path: str) -> "nn.Module":
    for part in path.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def _set(model: "nn.Module", path: str, module: "nn.Module") -> None:
    parent, _, last = path.rpartition(".")
    owner = _get(model, parent) if parent else model
    if last.isdigit():
        owner[int(last)] = module
    else:
        setattr(owner, last, module)


def _zero_linear(in_features: int, out_features: int) -> "nn.Module":
    from torch import nn

    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _head(kind: str, in_features: int, num_classes: int) -> "nn.Module":
    from torch import nn

    if kind == "linear":
        return _zero_linear(in_features, num_classes)
    return nn.Sequential(nn.BatchNorm1d(in_features), nn.Linear(in_features, DENSE_WIDTH), nn.ReLU(inplace=True),
                         nn.Dropout(HEAD_DROPOUT), _zero_linear(DENSE_WIDTH, num_classes))


def _raw(arch: Architecture, num_classes: int, input_size: int | None) -> "nn.Module":
    from torch import nn

    if arch.source == "timm":
        import timm

        return timm.create_model(arch.builder, pretrained=False, num_classes=num_classes)
    import torchvision.models as tvm

    if arch.name == "inception_v3":
        # init_weights given: torchvision otherwise warns; aux head kept, it trains with the main head
        model = tvm.inception_v3(weights=None, aux_logits=True, init_weights=True)
        model.AuxLogits.fc = _zero_linear(model.AuxLogits.fc.in_features, num_classes)
        if input_size is not None and input_size < AUX_MIN_INPUT:
            model.AuxLogits, model.aux_logits = None, False
        return model
    model = getattr(tvm, arch.builder)(weights=None)  # never download: weights come only from files we are given
    if arch.name == "vgg19_bn":
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(512, num_classes)
    return model


def _in_features(model: "nn.Module", arch: Architecture) -> int:
    layer = _get(model, arch.linear)
    return int(layer.in_features)


def build_network(name: str, num_classes: int, head: str = "linear", input_size: int | None = None) -> "nn.Module":
    """The `name` network with a `head` for `num_classes` outputs, randomly initialised (never downloaded), for
    inputs of `input_size` px (it decides only whether Inception-v3 has its auxiliary head; None: it has). The
    model carries `workbench_arch` and `workbench_head`, which save_classifier writes into the checkpoint."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, not {num_classes}")
    if head not in HEADS:
        raise ClassifierLoadError(f"unknown classifier head {head!r} (known: {', '.join(HEADS)})")
    arch = architecture(name)
    model = _raw(arch, num_classes, input_size)
    width = _in_features(model, arch)
    if head == "linear":
        _set(model, arch.linear, _head("linear", width, num_classes))
    else:
        _set(model, arch.head, _head(head, width, num_classes))
    model.workbench_arch = arch.name
    model.workbench_head = head
    return model


def head_prefixes(name: str) -> tuple[str, ...]:
    """State-dict key prefixes of the layers that depend on the class count (skipped when loading ImageNet
    weights into a backbone)."""
    arch = architecture(name)
    return (f"{arch.head}.",) + (("AuxLogits.fc.",) if arch.name == "inception_v3" else ())


def backbone_blocks(model: "nn.Module") -> list["nn.Module"]:
    """The backbone's blocks in order, input first (for freezing the backbone, or its first half): `features`
    where the network has it (EfficientNet, VGG, DenseNet), else its top-level children without the head, the
    auxiliary head and parameter-free pooling / dropout."""
    features = getattr(model, "features", None)
    if features is not None and hasattr(features, "__len__"):
        return list(features)
    arch = ARCHITECTURES.get(getattr(model, "workbench_arch", ""))
    head = arch.head.split(".")[0] if arch else ""
    return [m for n, m in model.named_children() if n != head and n not in _POOL_NAMES]


def cam_layer(model: "nn.Module") -> "nn.Module":
    """The last backbone block: the feature map a class-activation map (Grad-CAM) is taken from."""
    return backbone_blocks(model)[-1]


def split_logits(output: Any) -> tuple[Any, Any]:
    """(main logits, auxiliary logits or None) of a forward pass: Inception-v3 in train mode returns both."""
    if isinstance(output, tuple):
        return output[0], output[1]
    return output, None
