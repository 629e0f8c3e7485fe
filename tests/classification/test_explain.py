"""Grad-CAM (classification.explain, through captum) against a hand-written Grad-CAM on the shipped classifier and
a real ALL-IDB1 blast: the map is the one of the class asked for, and it changes with the class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BLAST_BOX = (1158.7, 1214.7, 1296.3, 1361.3)     # an expert-marked blast of Im006_1 (weights/splits)
NORMAL_BOX = (1309.8, 1161.8, 1481.2, 1332.2)      # a non-blast of the same image (weights/splits)


@pytest.fixture(scope="module")
def shipped():
    import torch

    from classification.predictor import BlastClassifier
    from workbench.app.weights import Manifest

    torch.set_num_threads(2)
    manifest = Manifest.load(REPO / "weights" / "manifest.yaml")
    return BlastClassifier(manifest.file_of(manifest.default("classify")))


def hand_grad_cam(classifier, crop, class_index: int) -> np.ndarray:
    """Selvaraju et al. by hand: the class logit's gradient at the last conv stage, averaged per channel, weights
    the channels' activations; summed and ReLU'd."""
    import torch

    from classification.explain import target_layer
    from workbench.core.crops import to_tensor_batch

    seen = {}
    hook = target_layer(classifier.model).register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    try:
        x = to_tensor_batch([crop], classifier.spec.mean, classifier.spec.std)
        with torch.enable_grad():
            logits = classifier.model(x)
            grad = torch.autograd.grad(logits[0, class_index], seen["a"])[0]
        return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * seen["a"]).sum(1))[0].detach().numpy()
    finally:
        hook.remove()


def test_grad_cam_is_for_the_class_asked_and_changes_with_it(shipped, datasets_root):
    from classification.explain import cell_cams, overlay
    from workbench.core.images import load_image

    image = load_image(datasets_root / "all-idb" / "ALL_IDB1" / "im" / "Im006_1.jpg")
    names = [n.lower() for n in shipped.class_names]
    for box in (BLAST_BOX,):
        [blast] = cell_cams(shipped, image, [box], "blast")
        [normal] = cell_cams(shipped, image, [box], "normal")
        ref_blast = hand_grad_cam(shipped, blast.crop, names.index("blast"))
        ref_normal = hand_grad_cam(shipped, blast.crop, names.index("normal"))
        assert ref_blast.max() > 0 or ref_normal.max() > 0
        # each map is the hand computation for its own class, not for the other one
        np.testing.assert_allclose(blast.raw, ref_blast, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(normal.raw, ref_normal, rtol=1e-4, atol=1e-6)
        assert not np.allclose(blast.raw, ref_normal) and not np.allclose(normal.raw, ref_blast)
        assert not np.allclose(blast.cam, normal.cam)                  # the picture changes with the class
        assert blast.cam.shape == blast.crop.shape[:2] and 0.0 <= blast.cam.min() and blast.cam.max() <= 1.0
        assert abs(blast.probability + normal.probability - 1.0) < 1e-5
        assert overlay(blast.crop, blast.cam).shape == blast.crop.shape
    # the expert's blast is called blast, with its evidence on the cell; another cell has its own map
    [cam] = cell_cams(shipped, image, [BLAST_BOX], "blast")
    assert cam.probability > 0.5 and cam.cam.max() == pytest.approx(1.0)
    [other] = cell_cams(shipped, image, [NORMAL_BOX], "blast")
    assert not np.allclose(other.cam, cam.cam)
    with pytest.raises(ValueError, match="lymphocyte"):
        cell_cams(shipped, image, [BLAST_BOX], "lymphocyte")
