"""Cutting square, aspect-preserving network inputs around detected cells."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

Box = Sequence[float]  # x1, y1, x2, y2 in image pixels
Colour = tuple[int, int, int]

# pixels sampled for the background colour: enough for a stable median, cheap on 20-megapixel smears
_MEDIAN_SAMPLES = 65536


def median_colour(image: np.ndarray) -> Colour:
    """Per-channel median of a strided subsample: the smear background, used to fill outside the image."""
    _check_image(image)
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return (0, 0, 0)
    step = max(1, int(math.sqrt(h * w / _MEDIAN_SAMPLES)))
    sample = image[::step, ::step].reshape(-1, 3)
    return tuple(int(v) for v in np.median(sample, axis=0))  # type: ignore[return-value]


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got shape {shape} dtype {dtype}")


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))  # half up, not Python's banker's rounding, so edges shift consistently


def field_window(xyxy: Box, field_px: float, margin: float) -> tuple[int, int, int, int]:
    """Square window centred on the box: `field_px` wide (a fixed field of view in micrometres, converted with the
    image's pixel size), or wider when the box plus `margin` does not fit in it. A fixed field keeps a cell's size
    visible to the classifier (a small lymphocyte fills less of it than a blast), which box-relative framing hides."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, field_px)):
        raise ValueError(f"box and field must be finite, got {tuple(xyxy)}, {field_px}")
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    side = max(float(field_px), (1.0 + 2.0 * margin) * max(x2 - x1, y2 - y1), 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0, y0 = _round(cx - side / 2), _round(cy - side / 2)
    s = max(1, _round(side))
    return x0, y0, x0 + s, y0 + s


def _window(xyxy: Box, margin: float) -> tuple[int, int, int, int]:
    """Integer window (x0, y0, x1, y1), x1/y1 exclusive, of the box grown by `margin` of each side's length."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box coordinates must be finite, got {tuple(xyxy)}")
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    x0, x1i = _round(x1 - dx), _round(x2 + dx)
    y0, y1i = _round(y1 - dy), _round(y2 + dy)
    # a degenerate box still gets one pixel, so the caller always receives a crop per box
    return x0, y0, max(x1i, x0 + 1), max(y1i, y0 + 1)


def crop_cell(
    image: np.ndarray, xyxy: Box, margin: float, size: int, fill: Sequence[int] | None = None,
    field_px: float | None = None,
) -> np.ndarray:
    """(size, size, 3) uint8 crop of the box plus margin, aspect kept, padded with `fill` (default: median colour).
    With `field_px`, the crop is the square field_window instead (a fixed field of view around the cell).

    Padding with the background colour rather than black keeps border cells looking like the rest of the smear,
    which is what the classifier saw in training.
    """
    _check_image(image)
    if size < 1:
        raise ValueError(f"crop size must be positive, not {size}")
    colour = tuple(int(c) for c in (fill if fill is not None else median_colour(image)))
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _window(xyxy, margin) if field_px is None else field_window(xyxy, field_px, margin)
    cw, ch = x1 - x0, y1 - y0

    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix0 == x0 and iy0 == y0 and ix1 == x1 and iy1 == y1:
        region = image[y0:y1, x0:x1]
    else:
        region = np.empty((ch, cw, 3), np.uint8)
        region[:] = colour
        if ix1 > ix0 and iy1 > iy0:
            region[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]

    scale = size / max(cw, ch)
    nw, nh = min(size, max(1, _round(cw * scale))), min(size, max(1, _round(ch * scale)))
    if (nw, nh) != (cw, ch):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        region = cv2.resize(np.ascontiguousarray(region), (nw, nh), interpolation=interp)
    if nw == size and nh == size:
        return np.ascontiguousarray(region)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = colour
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = region
    return out


def crop_cells(image: np.ndarray, boxes: Sequence[Box], margin: float, size: int,
               field_px: float | None = None) -> list[np.ndarray]:
    """Crops for all boxes of one image; the fill colour is computed once per image."""
    if len(boxes) == 0:
        return []
    fill = median_colour(image)
    return [crop_cell(image, box, margin, size, fill, field_px) for box in boxes]


def to_tensor_batch(crops: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> "torch.Tensor":
    """(N, 3, S, S) float32 tensor of RGB uint8 crops, normalised with the checkpoint's mean and std."""
    import torch  # lazy: cropping alone should not need torch

    if len(crops) == 0:
        return torch.empty((0, 3, 0, 0), dtype=torch.float32)
    shapes = {c.shape for c in crops}
    if len(shapes) != 1:
        raise ValueError(f"crops in one batch must share a shape, got {sorted(shapes)}")
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t).contiguous()
