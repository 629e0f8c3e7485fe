"""The classifier zoo: every registered architecture trains one step on real crops, round-trips save -> load, and
labels the cells of a real smear through the app's analyze pipeline. Tiny inputs (each network's smallest) and
batch 2, so the whole zoo stays cheap."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from classification.architectures import (ARCH_NAMES, ARCHITECTURES, AUX_MIN_INPUT, HEADS, backbone_blocks,
                                          build_network, split_logits)
from classification.model import build_classifier, load_classifier, save_classifier
from workbench.core.crops import crop_cell
from workbench.core.errors import ClassifierLoadError
from workbench.core.images import load_image

HAS_TIMM = importlib.util.find_spec("timm") is not None


def _size(arch: str) -> int:
    return max(ARCHITECTURES[arch].min_input, 64)   # 32 px leaves 1 x 1 maps: batch norm of 2 crops degenerates


@pytest.fixture(scope="module")
def crops(datasets_root):
    """Two real ALL-IDB2 cell crops: a blast (label 0) and a normal cell (label 1)."""
    folder = datasets_root / "all-idb" / "ALL_IDB2" / "img"
    images = [load_image(folder / name) for name in ("Im013_1.tif", "Im131_0.tif")]
    return images, torch.tensor([0, 1])


def _cases():
    for arch in ARCH_NAMES:
        marks = [pytest.mark.skipif(not HAS_TIMM, reason="timm not installed")] if \
            ARCHITECTURES[arch].source == "timm" else []
        # the head alternates, so both heads are covered across the zoo without doubling its cost
        head = HEADS[ARCH_NAMES.index(arch) % 2]
        yield pytest.param(arch, head, marks=marks, id=f"{arch}-{head}")


@pytest.mark.parametrize("arch,head", list(_cases()))
def test_architecture_trains_one_step_round_trips_and_analyzes(arch, head, crops, tmp_path, tiny_detector, bccd_image,
                                                                recalibrate_batch_norm):
    torch.manual_seed(0)
    size = _size(arch)
    images, labels = crops
    model = build_classifier(arch, 2, head, input_size=size)
    x = torch.stack([torch.from_numpy(crop_cell(im, (0, 0, im.shape[1], im.shape[0]), 0.0, size)).permute(2, 0, 1)
                     for im in images]).float().div(255)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for step in range(2):   # the zero head passes no gradient back on the first step, so two
        logits, aux = split_logits(model(x))
        assert logits.shape == (2, 2)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        if step == 0:   # the zero-initialised head starts at uniform probabilities
            assert abs(loss.item() - float(np.log(2))) < 1e-4
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    recalibrate_batch_norm(model, x)
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    prefix = ARCHITECTURES[arch].head + "."
    assert any(k.startswith(prefix) for k in changed)                     # the head learns
    assert sum(not k.startswith(prefix) for k in changed) > 5             # and so does the backbone

    path = save_classifier(tmp_path / f"{arch}.pt", model, ["blast", "normal"], input_size=size,
                           meta={"preprocess": "clahe"}, half=False)
    loaded, spec = load_classifier(path)
    assert (spec.architecture, spec.head, spec.input_size, spec.preprocess) == (arch, head, size, "clahe")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)

    from workbench.app.config import load_config
    from workbench.app.pipeline import SmearAnalyzer

    config = load_config(overrides={"detector": {"weights": str(tiny_detector), "conf": 0.0001, "max_det": 5},
                                    "classifier": {"weights": str(path), "batch": 4}})
    result = SmearAnalyzer.from_config(config).analyze_image(bccd_image)
    assert result.cells, "the tiny detector found no box to classify"
    assert all(c.label in ("blast", "normal") and 0.0 <= c.p_blast <= 1.0 for c in result.cells)


def test_inception_v3_has_its_aux_head_at_its_own_input_size_only():
    assert isinstance(build_network("inception_v3", 2, input_size=AUX_MIN_INPUT).AuxLogits, torch.nn.Module)
    small = build_network("inception_v3", 2, input_size=AUX_MIN_INPUT - 1)
    assert small.AuxLogits is None
    small.train()
    _, aux = split_logits(small(torch.rand(2, 3, 75, 75)))
    assert aux is None


def test_inception_v3_aux_head_adds_to_the_training_loss():
    torch.manual_seed(0)
    model = build_network("inception_v3", 2, input_size=AUX_MIN_INPUT)
    model.train()
    logits, aux = split_logits(model(torch.rand(2, 3, AUX_MIN_INPUT, AUX_MIN_INPUT)))
    assert aux is not None and aux.shape == logits.shape
    model.eval()
    with torch.no_grad():
        assert isinstance(model(torch.rand(1, 3, AUX_MIN_INPUT, AUX_MIN_INPUT)), torch.Tensor)


def test_vgg19_bn_pools_globally_instead_of_its_4096_wide_layers():
    model = build_network("vgg19_bn", 2)
    assert sum(p.numel() for p in model.parameters()) < 21e6       # torchvision's full VGG19-BN has 143 M
    assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.in_features == 512


def test_bn_dense_head_is_the_published_one():
    head = build_network("efficientnet_b0", 2, head="bn-dense256-dropout").classifier
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["BatchNorm1d", "Linear", "ReLU", "Dropout", "Linear"]
    assert head[1].out_features == 256 and head[3].p == 0.5
    assert not head[-1].weight.any() and not head[-1].bias.any()


def test_backbone_blocks_exclude_the_head():
    for arch in ("efficientnet_b3", "resnet50", "densenet121", "inception_v3"):
        model = build_network(arch, 2)
        blocks = backbone_blocks(model)
        head_params = {id(p) for p in getattr(model, ARCHITECTURES[arch].head).parameters()}
        assert blocks and not any(id(p) in head_params for b in blocks for p in b.parameters()), arch


def test_shipped_b3_checkpoints_load_as_before(tiny_classifier):
    model, spec = load_classifier(tiny_classifier)
    assert (spec.architecture, spec.head, spec.preprocess) == ("efficientnet_b3", "linear", "none")
    state = torch.load(tiny_classifier, weights_only=True)
    state.pop("head")  # a checkpoint written before heads were stored
    legacy = tiny_classifier.parent / "legacy.pt"
    torch.save(state, legacy)
    assert load_classifier(legacy)[1].head == "linear"


def test_unknown_architecture_and_head_are_refused(tiny_classifier, tmp_path):
    for key, value, text in (("architecture", "alexnet", "unknown classifier architecture"),
                             ("head", "mlp", "unknown classifier head"),
                             ("input_size", 16, "below efficientnet_b3's smallest input")):
        state = torch.load(tiny_classifier, weights_only=True)
        state[key] = value
        path = tmp_path / f"{key}.pt"
        torch.save(state, path)
        with pytest.raises(ClassifierLoadError, match=text):
            load_classifier(path)


def test_precise_bn_averages_training_batches_and_keeps_frozen_layers():
    """classification.train._precise_bn: a training batch-norm layer's running statistics become the plain average
    of its batches' statistics (unbiased variance, as torch's cumulative average keeps it); a frozen (eval-mode)
    layer keeps its own; the momentum is restored."""
    from classification.train import _precise_bn
    from classification.train_config import ClassifierTrainConfig

    torch.manual_seed(0)
    model = build_network("efficientnet_b0", 2)
    model.train()
    frozen = model.features[-1]
    frozen.eval()
    before = frozen[1].running_mean.clone()
    batches = [(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    _precise_bn(model, batches + [(torch.rand(4, 3, 32, 32) * 9, None)], 3, ClassifierTrainConfig(data="x"),
                torch.device("cpu"))   # the fourth batch is past the count: it must not be seen
    first_conv, first_bn = model.features[0][0], model.features[0][1]
    with torch.no_grad():
        outs = [first_conv(x) for x, _ in batches]
    mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.transpose(0, 1).reshape(o.shape[1], -1).var(1, unbiased=True) for o in outs]).mean(0)
    assert torch.allclose(first_bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(first_bn.running_var, var, rtol=1e-4, atol=1e-6)
    assert torch.equal(frozen[1].running_mean, before) and first_bn.momentum == 0.1
