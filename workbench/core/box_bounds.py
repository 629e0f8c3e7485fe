"""Boxes and the image they belong to: every box the app stores or exports lies inside its image.

`clip_box` cuts a box to the image (None when nothing of it is inside), `fit_box` moves a box inside keeping its size
(a pasted or dragged box), `clamp_shift` limits a move of several boxes so that all of them stay inside. No numpy,
no Qt: the box editor, the importers and the exporters share these, so every path refuses or clips the same way.
"""

from __future__ import annotations

from typing import Iterable, Sequence

Box = tuple[float, float, float, float]


def ordered(xyxy: Sequence[float]) -> Box:
    """x1 <= x2, y1 <= y2 (a box drawn from any corner)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def clip_box(xyxy: Sequence[float], width: float, height: float) -> Box | None:
    """`xyxy` (any corner order) cut to the image [0, width] x [0, height], or None when no part of it lies inside
    (a box touching the image only along its border is outside)."""
    x1, y1, x2, y2 = ordered(xyxy)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return None
    return max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)


def inside(xyxy: Sequence[float], width: float, height: float) -> bool:
    """The whole box lies in the image."""
    x1, y1, x2, y2 = ordered(xyxy)
    return x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height


def fit_box(xyxy: Sequence[float], width: float, height: float) -> Box:
    """The box moved (not resized) the least distance that puts it inside the image; a box larger than the image
    in one direction is cut to it in that direction."""
    x1, y1, x2, y2 = ordered(xyxy)
    dx = _shift_into(x1, x2, float(width))
    dy = _shift_into(y1, y2, float(height))
    x1, x2 = max(0.0, x1 + dx), min(float(width), x2 + dx)
    y1, y2 = max(0.0, y1 + dy), min(float(height), y2 + dy)
    return x1, y1, x2, y2


def _shift_into(low: float, high: float, limit: float) -> float:
    if high - low >= limit:
        return -low
    if low < 0:
        return -low
    if high > limit:
        return limit - high
    return 0.0


def clamp_shift(boxes: Iterable[Sequence[float]], dx: float, dy: float, width: float,
                height: float) -> tuple[float, float]:
    """The part of the move (dx, dy) that keeps every box of `boxes` inside the image (the group moves together,
    stopping at the edge the first of them reaches). Boxes already partly outside may not move further out."""
    boxes = [ordered(b) for b in boxes]
    if not boxes:
        return dx, dy
    left = min(b[0] for b in boxes)
    top = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    bottom = max(b[3] for b in boxes)
    dx = min(max(dx, min(0.0, -left)), max(0.0, float(width) - right))
    dy = min(max(dy, min(0.0, -top)), max(0.0, float(height) - bottom))
    return dx, dy
