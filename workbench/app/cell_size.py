"""A box too narrow to be a white cell is not one: it is dropped before classification.

The smallest white cells, small lymphocytes, are about 7 um across; a platelet is 2-3 um, and a fragment of a cell
boxed on its own is narrower still. The detector has seen platelets as a class of their own only on some sources,
and on ALL smears it still boxes some platelets and thin slivers of pale cytoplasm as white cells; the classifier
then calls some of them blasts. With the image's pixel size known (the red-cell ruler or the case's setting), such a
box can be told by its width alone.

Rule: a box whose shorter side measures less than `detector.min_cell_um` micrometres, and which lies clear of the
image border (a cell cut by the border can be as narrow as it likes), is dropped and listed in the result's
`too_small`. Without a pixel size nothing is dropped, and neither with a weak one: a red-cell estimate that was not
trusted (`weak_estimate`) may be off by more than the margin below.

The default 4.5 um was set on the labelled training and validation white cells of every source (det_v3: BCCD, TXL
Raabin and 416 px set, ALL-IDB1 tiles): away from the border the narrowest measure 5.8 um (BCCD), 6.4 um (Raabin),
7.3 um (416 px set) and 7.6 um (ALL-IDB1), apart from two 2 um boxes that are labelling slips. The margin below
5.8 um covers a pixel-size estimate that is off by up to 20 %. On the validation images (`workbench eval detection
--split val`, wbc-yolov8n-v2), 56 detections clear of the border are narrower than 4.5 um (51 on ALL-IDB1; 5 of them
at the operating confidence 0.25, all on ALL-IDB1) and none of them matches a labelled white cell (IoU >= 0.5).
"""

from __future__ import annotations

from typing import Any, Sequence

from workbench.core.boxes import clear_of_border

BORDER_PX = 2.0   # a box this close to an image edge may be a cell cut by it: never dropped for its width


UNTRUSTED_SCALE = ("weak_estimate",)    # workbench.app.pixel_size sources too loose to measure a cell by


def width_ruler(scale: dict[str, Any]) -> float | None:
    """The pixel size the width rule may measure with: the image's, unless it is missing or only a weak estimate."""
    return None if scale.get("source") in UNTRUSTED_SCALE else scale.get("um_per_px")


def split_too_small(boxes: Sequence[Sequence[float]], width: int, height: int, um_per_px: float | None,
                    min_um: float | None) -> tuple[list[int], list[dict[str, Any]]]:
    """(indices of the boxes kept, in their order; per dropped box {index, xyxy, short_side_um}). `boxes` are
    x1, y1, x2, y2 in the image's pixels. `um_per_px` or `min_um` None (or not positive): every box is kept."""
    if not min_um or not um_per_px or um_per_px <= 0:
        return list(range(len(boxes))), []
    kept, dropped = [], []
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        short_um = min(x2 - x1, y2 - y1) * um_per_px
        if clear_of_border((x1, y1, x2, y2), width, height, BORDER_PX) and short_um < min_um:
            dropped.append({"index": index, "xyxy": [round(float(v), 2) for v in (x1, y1, x2, y2)],
                            "short_side_um": round(float(short_um), 2)})
        else:
            kept.append(index)
    return kept, dropped
