"""Grad-CAM of the classifier (Selvaraju et al. 2017) through captum's LayerGradCam: where in a cell crop the
evidence for one class lies.

The map is taken at the network's last convolutional stage (EfficientNet's `features[-1]`, 5 x 5 at 160 px input):
the class logit's gradient, averaged over the map, weights each channel; the weighted sum, passed through ReLU
(only evidence for the class), is upsampled to the crop and scaled to 0..1 by its maximum. The class is the caller's
choice, so a reviewer can ask "why blast?" and "why normal?" of the same cell and see two different maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from workbench.core.crops import Box


@dataclass
class CellCam:
    """One cell's Grad-CAM for one class."""

    crop: np.ndarray          # the classifier's input crop, RGB uint8 (S, S, 3)
    cam: np.ndarray           # the map upsampled to the crop, float32 (S, S) in 0..1 (all 0: no evidence)
    raw: np.ndarray           # the map at the layer's resolution, before upsampling and scaling
    class_name: str
    probability: float        # the class's softmax probability for this crop


def target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage: torchvision's EfficientNet / VGG / DenseNet `features[-1]`, ResNet `layer4`."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features):
        return features[-1]
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Module):
        return layer4
    if getattr(model, "workbench_arch", None):   # the zoo's others (Inception-v3 ...): their last backbone block
        from classification.architectures import cam_layer

        return cam_layer(model)
    raise ValueError(f"no known last convolutional stage in {type(model).__name__} for Grad-CAM")


def grad_cam(model: nn.Module, batch: torch.Tensor, class_index: int, layer: nn.Module | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps upsampled to the input and scaled to 0..1 (N, H, W), raw maps (N, h, w), softmax probabilities (N, C))
    of class `class_index` for a normalised input batch (N, 3, H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam

    layer = layer or target_layer(model)
    model.eval()
    with torch.enable_grad():
        batch = batch.detach().clone().requires_grad_(True)
        raw = LayerGradCam(model, layer).attribute(batch, target=int(class_index), relu_attributions=True)
        up = LayerAttribution.interpolate(raw, tuple(batch.shape[-2:]), interpolate_mode="bilinear")
    with torch.inference_mode():
        probs = torch.softmax(model(batch.detach()).float(), dim=1).cpu().numpy()
    up = up.detach().float().clamp_min(0.0)[:, 0].cpu().numpy()
    peak = up.reshape(len(up), -1).max(axis=1)
    scaled = np.where(peak[:, None, None] > 0, up / np.maximum(peak, 1e-12)[:, None, None], 0.0)
    return scaled.astype(np.float32), raw.detach().float()[:, 0].cpu().numpy(), probs


def cell_cams(classifier, image: np.ndarray, boxes: Sequence[Box], class_name: str,
              um_per_px: float | None = None) -> list[CellCam]:
    """Grad-CAM of `class_name` for cells of an RGB image, on the crops the classifier labels them from (a loaded
    classification.predictor.BlastClassifier; its network is used as is, on its device)."""
    names = [n.lower() for n in classifier.class_names]
    if class_name.lower() not in names:
        raise ValueError(f"{class_name!r} is not one of the classifier's classes {classifier.class_names}")
    index = names.index(class_name.lower())
    crops = classifier.crops(image, boxes, um_per_px)
    if not crops:
        return []
    device = next(classifier.model.parameters()).device
    batch = classifier.prepare(crops).to(device)   # the weights' preprocessing and mean / std, as when labelling
    cams, raws, probs = grad_cam(classifier.model, batch, index)
    return [CellCam(crop=crop, cam=cam, raw=raw, class_name=classifier.class_names[index],
                    probability=float(p[index])) for crop, cam, raw, p in zip(crops, cams, raws, probs)]


def overlay(crop: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop with the map laid over it in the 'jet' colours (red = most evidence), RGB uint8."""
    from matplotlib import colormaps

    heat = (colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0).astype(np.float32)
    weight = alpha * np.clip(cam, 0.0, 1.0)[..., None] ** 0.5      # weak evidence stays see-through
    return np.clip(crop.astype(np.float32) * (1.0 - weight) + heat * weight, 0, 255).astype(np.uint8)
