"""Preprocessing is part of the weights: the one function (classification.preprocess.apply_preprocess) prepares the
crops in training and at inference, and the name a checkpoint stores is what the predictor applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classification import preprocess as pre
from classification.augment import Preprocess, build_transforms
from classification.model import build_classifier, save_classifier
from classification.predictor import BlastClassifier
from classification.train_config import ClassifierTrainConfig, resolved
from workbench.core.crops import crop_cell
from workbench.core.errors import ClassifierLoadError
from workbench.core.images import load_image

SIZE = 64


@pytest.fixture(scope="module")
def crop(datasets_root) -> np.ndarray:
    image = load_image(datasets_root / "all-idb" / "ALL_IDB2" / "img" / "Im013_1.tif")
    return crop_cell(image, (0, 0, image.shape[1], image.shape[0]), 0.0, SIZE)


def _histeq_reference(rgb: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the luma written out by hand (Gonzalez & Woods: cdf remapped to 0..255), with
    OpenCV only for the colour conversion."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y = ycc[:, :, 0]
    hist = np.bincount(y.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    cdf_min = cdf[cdf > 0][0]
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (y.size - cdf_min)), 0, 255).astype(np.uint8)
    ycc[:, :, 0] = lut[y]
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def test_histeq_matches_a_hand_written_equalisation(crop):
    out = pre.apply_preprocess("histeq", crop)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _histeq_reference(crop).astype(int)).max() <= 1
    import cv2

    luma = np.asarray(cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)[:, :, 0])
    assert luma.min() <= 20 and luma.max() >= 235         # the luma now spans (nearly) the whole range


def test_clahe_and_none(crop):
    assert pre.apply_preprocess("none", crop) is crop
    out = pre.apply_preprocess("clahe", crop)
    assert out.shape == crop.shape and not np.array_equal(out, crop)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        pre.apply_preprocess("gamma", crop)


def test_training_and_inference_use_the_same_function():
    config = resolved(ClassifierTrainConfig(data="x", preprocess="histeq", input_size=SIZE))
    for train in (True, False):
        steps = [t for t in build_transforms(config, train).transforms if isinstance(t, Preprocess)]
        assert len(steps) == 1 and steps[0].name == "histeq" and steps[0].fn is pre.apply_preprocess


@pytest.mark.parametrize("name", ["histeq", "clahe"])
def test_stored_preprocessing_is_applied_at_inference_exactly_as_in_training(name, crop, tmp_path):
    model = build_classifier("efficientnet_b0", 2, input_size=SIZE)
    with_pre = save_classifier(tmp_path / "pre.pt", model, ["blast", "normal"], SIZE, meta={"preprocess": name},
                               half=False)
    without = save_classifier(tmp_path / "plain.pt", model, ["blast", "normal"], SIZE, half=False)
    classifier, plain = BlastClassifier(with_pre), BlastClassifier(without)
    assert classifier.preprocess == name and plain.preprocess == "none"

    # what training feeds the network for this crop (its evaluation transform: uint8 tensor -> network input)
    config = resolved(ClassifierTrainConfig(data="x", preprocess=name, input_size=SIZE))
    trained_input = build_transforms(config, train=False)(torch.from_numpy(crop).permute(2, 0, 1).contiguous())

    # what the network receives when the predictor (analyze, GUI, eval) classifies the crop
    seen: list[torch.Tensor] = []
    for c in (classifier, plain):
        handle = c.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        c.predict_proba([crop])
        handle.remove()
    assert torch.allclose(seen[0][0], trained_input, atol=1e-6)
    assert not torch.allclose(seen[1][0], trained_input, atol=1e-3)   # without the stored name: a different input


def test_unknown_stored_preprocessing_is_refused(tmp_path):
    model = build_classifier("efficientnet_b0", 2, input_size=SIZE)
    path = save_classifier(tmp_path / "bad.pt", model, ["blast", "normal"], SIZE, meta={"preprocess": "sharpen"})
    with pytest.raises(ClassifierLoadError, match="unknown preprocessing 'sharpen'"):
        BlastClassifier(path)


def test_grad_cam_explains_the_preprocessed_input(crop, tmp_path, recalibrate_batch_norm):
    """The window's Grad-CAM runs the network on the same input as the labelling: its probability is the
    predictor's, which differs from the probability of the crop without the stored preprocessing."""
    from classification.explain import cell_cams

    from classification.model import IMAGENET_MEAN, IMAGENET_STD
    from workbench.core.crops import to_tensor_batch

    torch.manual_seed(0)
    model = build_classifier("resnet50", 2, input_size=SIZE)
    torch.nn.init.normal_(model.fc.weight, std=0.01)       # a head that is not zero, so the crops differ
    views = [np.ascontiguousarray(v) for v in (crop, crop[::-1], crop[:, ::-1], crop.transpose(1, 0, 2))]
    recalibrate_batch_norm(model, to_tensor_batch([pre.apply_preprocess("histeq", v) for v in views], IMAGENET_MEAN,
                                                  IMAGENET_STD))
    path = save_classifier(tmp_path / "histeq.pt", model, ["blast", "normal"], SIZE, meta={"preprocess": "histeq"},
                           half=False)
    classifier = BlastClassifier(path, margin=0.0)
    box = (0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))
    [cam] = cell_cams(classifier, crop, [box], "blast")
    [cut] = classifier.crops(crop, [box])
    expected = classifier.predict_proba([cut])[0, 0]
    assert cam.probability == pytest.approx(float(expected), abs=1e-5)
    with torch.no_grad():   # the crop as it is, without the stored equalisation
        raw = torch.softmax(classifier.model(to_tensor_batch([cut], classifier.spec.mean, classifier.spec.std)),
                            1)[0, 0].item()
    assert abs(raw - cam.probability) > 1e-4
