"""Crop preprocessing that belongs to the weights (`--preprocess none|histeq|clahe`): the name is stored in the
checkpoint's meta (`preprocess`) and the one function here, `apply_preprocess`, is applied to every network input,
in training (classification.augment, after augmentation) and at inference (`prepare_batch`, used by the predictor for
analyze, the GUI and eval), so a model never sees crops prepared differently from those it was trained on.

- `none`: the crop as it is;
- `histeq`: global histogram equalisation of the luminance (Y of YCrCb), so the hue of the stain is kept while
  brightness and contrast are spread over the full range (the "histogram equalisation" of the published studies);
- `clahe`: contrast-limited adaptive equalisation of the lightness (L of Lab), clip limit 2.0 on an 8 x 8 grid.

Both operate on the crop at the network's input size. No torch at import (the app reads the names cheaply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.core.errors import ClassifierLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["CLAHE_CLIP", "CLAHE_GRID", "PREPROCESS", "apply_preprocess", "prepare_batch", "preprocess_of"]

PREPROCESS = ("none", "histeq", "clahe")
CLAHE_CLIP = 2.0
CLAHE_GRID = (8, 8)


def _histeq(rgb: np.ndarray) -> np.ndarray:
    import cv2   # here, not at the top: the command line's parsers read PREPROCESSING without loading OpenCV

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycc[:, :, 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[:, :, 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _clahe(rgb: np.ndarray) -> np.ndarray:
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_GRID)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def apply_preprocess(name: str, rgb: np.ndarray) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 prepared by the named step, as a new (H, W, 3) uint8 array (`none`: unchanged)."""
    if name == "none":
        return rgb
    if name not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {name!r} (known: {', '.join(PREPROCESS)})")
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise ValueError(f"preprocessing expects an RGB uint8 (H, W, 3) crop, got {getattr(rgb, 'shape', None)}")
    rgb = np.ascontiguousarray(rgb)
    return _histeq(rgb) if name == "histeq" else _clahe(rgb)


def preprocess_of(spec: Any) -> str:
    """The preprocessing a checkpoint's spec names (`none` for weights written before it existed)."""
    meta = getattr(spec, "meta", None)
    name = meta.get("preprocess", "none") if isinstance(meta, dict) else "none"
    if name not in PREPROCESS:
        raise ClassifierLoadError(f"classifier weights name an unknown preprocessing {name!r} "
                                  f"(known: {', '.join(PREPROCESS)})")
    return str(name)


def prepare_batch(crops: Sequence[np.ndarray], spec: Any) -> "torch.Tensor":
    """The network input of RGB uint8 crops at the spec's input size: its preprocessing, then its mean / std."""
    from workbench.core.crops import to_tensor_batch

    name = preprocess_of(spec)
    return to_tensor_batch([apply_preprocess(name, c) for c in crops], spec.mean, spec.std)
