"""Box records and the box geometry the detector needs (IoU, intersection over the smaller box, NMS-style merge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BoxDetection:
    """One detected object in original image pixels."""

    xyxy: tuple[float, float, float, float]
    conf: float
    class_name: str


def pairwise_overlaps(boxes: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection-over-smaller-area between every box in `boxes` (N,4) and `others` (M,4)."""
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    ios = np.where(smaller > 0, inter / np.maximum(smaller, 1e-9), 0.0)
    return iou, ios


def clear_of_border(box, width: float, height: float, margin: float) -> bool:
    """Whether an xyxy box lies more than `margin` px inside every edge of a `width` x `height` image: a box that
    does not may be an object cut by the edge, not measured whole (rulers and width rules skip it)."""
    return box[0] > margin and box[1] > margin and box[2] < width - margin and box[3] < height - margin


def round_cell_max_diameter(box, width: float, height: float, margin: float) -> float | None:
    """The largest diameter a round object can have whose visible part is an xyxy `box` cut by one image edge (within
    `margin` px of it): None for a box clear of every edge (it is whole: its own size) or cut by two edges (a corner
    piece bounds nothing). A disc of diameter D seen `w` px deep from the edge shows a chord
    h = 2 * sqrt(w * (D - w)) along it, so D = w + h^2 / (4 w); a disc seen more than half shows h = D and the
    formula gives at least D. An upper bound for round cells, not for a long thin object pointing into the image."""
    cut = (box[0] <= margin, box[2] >= width - margin, box[1] <= margin, box[3] >= height - margin)
    if sum(cut) != 1:
        return None
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    deep, along = (box_w, box_h) if cut[0] or cut[1] else (box_h, box_w)
    if deep <= 0:
        return None
    return deep + along * along / (4.0 * deep)


def box_iou(a, b) -> float:
    """IoU of two xyxy boxes (plain sequences), for the per-pair checks of the dataset builders."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
