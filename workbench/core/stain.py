"""Stain augmentation: the same cell under another lab's stain, camera white balance or a grey-scale camera.

Models trained on two or three labs learn their colours as a cue ("this purple = blast", "grey-blue disc = white
cell"). Jittering the stain amounts in optical density space (Tellez et al. 2018, "H&E stain augmentation": scale
and shift each stain component) changes how much of each dye a cell holds, the way another lab's staining time or
batch would, while keeping the cell's structure; a grey-scale copy now and then removes colour as a cue entirely.

The colour deconvolution uses the Ruifrok-Johnston haematoxylin / eosin / DAB basis (as scikit-image's
`rgb2hed`): Romanowsky stains (May-Grunwald-Giemsa, Wright) are also a blue-violet basic dye plus eosin, so the
first two components carry the nucleus / cytoplasm stain and the red cells; the third takes the rest.
Works on uint8 RGB or BGR arrays (the basis is applied in the given channel order's reverse where needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# rows: stain vectors in RGB optical density (normalised), as skimage.color.rgb_from_hed
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


@dataclass(frozen=True)
class StainJitter:
    """Per image: with probability `p`, scale each stain by 1 + U(-alpha, alpha) and shift it by U(-beta, beta)
    (optical density units); then with probability `p_gray` replace the image by its grey-scale copy."""

    p: float = 0.5
    alpha: float = 0.2
    beta: float = 0.03
    p_gray: float = 0.1

    def __post_init__(self) -> None:
        for name in ("p", "p_gray"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if not (0.0 <= self.alpha < 1.0 and 0.0 <= self.beta <= 0.5):
            raise ValueError(f"alpha must be in [0, 1) and beta in [0, 0.5], got {self.alpha}, {self.beta}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator, bgr: bool = False) -> np.ndarray:
        out = image
        if self.p and rng.random() < self.p:
            out = hed_jitter(out, rng.uniform(-self.alpha, self.alpha, 3), rng.uniform(-self.beta, self.beta, 3),
                             bgr=bgr)
        if self.p_gray and rng.random() < self.p_gray:
            out = to_gray3(out, bgr=bgr)
        return out


def hed_jitter(image: np.ndarray, alpha: np.ndarray, beta: np.ndarray, bgr: bool = False) -> np.ndarray:
    """`image` (HxWx3 uint8) with its stain components scaled by (1 + alpha) and shifted by beta."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    rgb = image[..., ::-1] if bgr else image
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ _HED_FROM_RGB.astype(np.float32)
    hed = hed * (1.0 + np.asarray(alpha, np.float32)) + np.asarray(beta, np.float32)
    od = hed @ _RGB_FROM_HED.astype(np.float32)
    out = np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).reshape(rgb.shape)
    out = np.rint(out).astype(np.uint8)
    return np.ascontiguousarray(out[..., ::-1] if bgr else out)


def to_gray3(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Grey-scale copy with 3 equal channels (ITU-R BT.601 luma)."""
    weights = np.array([0.114, 0.587, 0.299] if bgr else [0.299, 0.587, 0.114], np.float32)
    gray = np.rint(image.astype(np.float32) @ weights).clip(0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)
