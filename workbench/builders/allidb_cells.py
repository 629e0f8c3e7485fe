"""One ALL-IDB1 image: its marked points turned into white-cell boxes, and the stained blobs no box explains (the
candidates of the census's unmarked cells)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from workbench.builders.allidb_points import CellPoint
from workbench.core.boxes import box_iou
from workbench.core.segmentation import (
    PointBox,
    StainMap,
    _odd,
    segment_point,
    stain_map,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# one image: points -> boxes, and the stained blobs no box explains

DUPLICATE_IOU = 0.5  # two points' boxes overlapping this much are one cell marked twice (e.g. normal + other)


@dataclass
class ImageCells:
    """Everything build_allidb1_tiles needs from one image."""

    name: str
    camera: str
    width: int
    height: int
    boxes: list[PointBox]
    unmatched: np.ndarray  # uint8 0/1, HxW: stained white-cell-sized blob pixels outside every kept box
    unmatched_boxes: list[tuple[int, int, int, int]]  # xyxy of each unmatched blob's outside part
    results: Counter  # (kind, status[, reason]) -> count
    widths: list[float]  # max(box w, h) of the kept boxes


def segment_image(image_rgb: np.ndarray, points: Sequence[CellPoint], name: str = "") -> ImageCells:
    """Boxes for the points of one image (duplicates dropped) and the stained blobs no kept box explains."""
    stain = stain_map(image_rgb)
    height, width = stain.shape
    results: Counter = Counter()
    boxes: list[PointBox] = []
    for i, point in enumerate(points):
        neighbours = [(p.x, p.y) for j, p in enumerate(points) if j != i]
        result = segment_point(None, point.x, point.y, kind=point.kind, neighbours=neighbours, stain=stain)
        if result.box is None:
            results[(point.kind, result.status)] += 1
            if result.status == "failed":
                results[(point.kind, "failed", result.reason)] += 1
            continue
        # Points come in priority order (blast, normal, other), so the kept one of two marks is the better kind.
        if any(box_iou(result.box.xyxy, kept.xyxy) >= DUPLICATE_IOU for kept in boxes):
            results[(point.kind, "duplicate")] += 1
            continue
        results[(point.kind, "box")] += 1
        boxes.append(result.box)
    unmatched, unmatched_boxes = _unmatched_blobs(stain, boxes)
    if name:
        log.debug("%s: %d boxes, %d unmatched blobs, %s", name, len(boxes), len(unmatched_boxes), dict(results))
    return ImageCells(
        name=name,
        camera=stain.scale.camera,
        width=width,
        height=height,
        boxes=boxes,
        unmatched=unmatched,
        unmatched_boxes=unmatched_boxes,
        results=results,
        widths=[max(b.width, b.height) for b in boxes],
    )


def _unmatched_blobs(stain: StainMap, boxes: Sequence[PointBox]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The pixels of stained, white-cell-sized blobs that lie outside every kept box, where that outside part is
    itself large enough to be (most of) a cell: unlabelled white cells, smudge cells, points whose segmentation
    failed, platelet clumps. Blob parts of a few px sticking out of a box (cytoplasm beyond the margin) are not
    counted. The parts are dilated a little, so that their soft, sub-threshold edge goes with them."""
    scale = stain.scale
    inside = np.zeros(stain.shape, bool)
    for box in boxes:
        inside[int(box.y1):int(math.ceil(box.y2)), int(box.x1):int(math.ceil(box.x2))] = True
    min_cell_area = math.pi / 4 * scale.wbc_min**2
    outside = (stain.labels > 0) & ~inside
    # A blob counts when it is cell-sized as a whole and its outside part holds a third of a small cell.
    big = np.flatnonzero(stain.boxes[:, cv2.CC_STAT_AREA] >= min_cell_area)
    big = big[big > 0]
    unmatched = np.zeros(stain.shape, np.uint8)
    if len(big) == 0:
        return unmatched, []
    n, parts, stats, _ = cv2.connectedComponentsWithStats(
        (outside & np.isin(stain.labels, big)).astype(np.uint8), connectivity=8
    )
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_cell_area / 3
    if not keep.any():
        return unmatched, []
    k = _odd(0.15 * scale.wbc_min)
    unmatched = cv2.dilate(keep[parts].astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    unmatched[inside] = 0  # never paint over a labelled cell
    rects = [
        (int(x), int(y), int(x + w), int(y + h))
        for x, y, w, h, _ in stats[1:][keep[1:]]
    ]
    return unmatched, rects
