"""One cell found twice: a box nested inside another is merged into it, so the cell is counted once.

The detector's NMS compares boxes by IoU, and a small box lying inside a large one has a small IoU (its area over
the large one's), so both survive: the whole cell and its nucleus, or one cell boxed at two scales by two tiles. On
an ALL smear that reads as e.g. "normal 0.83" inside "blast 0.77": one cell counted twice, once each way.

Rule: boxes are taken largest first (ties: the higher detector confidence first); a box whose intersection with an
already kept box covers at least `ios` of the smaller of the two (intersection over the smaller box) is merged into
that kept box: the enclosing box, the whole cell, stays. It keeps its box, call and p_blast, and takes the higher
of the two detector confidences (the detector found this cell at least that surely, so the display threshold does
not hide it); the merged box is listed in the result's `merged_duplicates`. When the two calls disagree (one blast,
one not), the machine has said both things about one cell: the kept cell is marked unidentified, so it waits for a
person instead of being counted either way.

The default `detector.nested_ios` 0.8 was set on the shipped models' ALL-IDB1 output (88 images, 896 boxes): every
pair at 0.84 or more was one cell boxed twice (a blast and a part of it, a neutrophil and one nuclear lobe), every
pair between 0.5 and 0.7 with a different label was two neighbouring cells, one box reaching into the other. With
`wbc-yolov8n-v3` (853 boxes, `analyze` defaults) one pair reaches 0.8: a cell cut by the top edge of Im012_1 and a
27 px strip of it along the edge (0.85); the next pair is at 0.71.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from workbench.app.results import CellDetection
from workbench.core.boxes import pairwise_overlaps


def merge_nested(cells: Sequence[CellDetection], ios: float | None
                 ) -> tuple[list[CellDetection], list[dict[str, Any]]]:
    """(the cells with nested duplicates merged, renumbered 0..n-1 in their order; one record per merged box).
    `ios` None: nothing is merged."""
    cells = list(cells)
    if ios is None or len(cells) < 2:
        return cells, []
    boxes = np.array([c.xyxy for c in cells], dtype=float)
    _, overlap = pairwise_overlaps(boxes, boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = sorted(range(len(cells)), key=lambda i: (-area[i], -cells[i].det_conf, i))
    kept: list[int] = []
    into: dict[int, int] = {}                      # merged index -> kept index
    for i in order:
        host = next((k for k in kept if overlap[i, k] >= ios), None)
        if host is None:
            kept.append(i)
        else:
            into[i] = host
    if not into:
        return cells, []
    kept_in_order = sorted(kept)
    new_id = {old: n for n, old in enumerate(kept_in_order)}
    disagree = {host for i, host in into.items() if (cells[i].label == "blast") != (cells[host].label == "blast")}
    surest = {host: max([cells[host].det_conf] + [cells[i].det_conf for i, h in into.items() if h == host])
              for host in set(into.values())}
    out = [replace(cells[i], cell_id=new_id[i], det_conf=surest.get(i, cells[i].det_conf),
                   unidentified=cells[i].unidentified or i in disagree) for i in kept_in_order]
    merged = [{"xyxy": list(cells[i].xyxy), "det_conf": cells[i].det_conf, "label": cells[i].label,
               "p_blast": cells[i].p_blast, "kept_cell_id": new_id[host], "ios": round(float(overlap[i, host]), 4)}
              for i, host in sorted(into.items())]
    return out, merged
