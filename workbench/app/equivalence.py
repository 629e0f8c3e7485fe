"""How far the cells of one backend are from those of another (PyTorch, the reference) on the same image.

Each reference cell is paired with the unpaired cell of highest IoU (reference cells in decreasing confidence, as the
detection metrics pair predictions); the comparison reports the counts, the pairs, the lowest paired IoU and the
largest differences of det_conf and p_blast. `workbench export` records it in the manifest, the equivalence tests
hold every backend to it (IoU >= 0.98, differences <= 2e-3, equal counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from workbench.core.boxes import pairwise_overlaps


@dataclass
class Deviation:
    n_reference: int = 0
    n_other: int = 0
    paired: int = 0
    min_iou: float = 1.0            # lowest IoU of a pair (1.0 when there is no pair)
    max_box_px: float = 0.0         # largest coordinate difference of a pair, pixels
    max_det_conf: float = 0.0       # largest |det_conf difference| of a pair
    max_p_blast: float = 0.0        # largest |p_blast difference| of a pair (0 when not compared)
    labels_differ: int = 0          # pairs whose labels differ (when labels are compared)

    @property
    def counts_equal(self) -> bool:
        return self.n_reference == self.n_other == self.paired

    def within(self, min_iou: float = 0.98, tolerance: float = 2e-3) -> bool:
        return (self.counts_equal and self.min_iou >= min_iou and self.max_det_conf <= tolerance
                and self.max_p_blast <= tolerance)

    def merge(self, other: "Deviation") -> "Deviation":
        """The worst of two comparisons (e.g. of two images), counts added."""
        return Deviation(self.n_reference + other.n_reference, self.n_other + other.n_other,
                         self.paired + other.paired, min(self.min_iou, other.min_iou),
                         max(self.max_box_px, other.max_box_px), max(self.max_det_conf, other.max_det_conf),
                         max(self.max_p_blast, other.max_p_blast), self.labels_differ + other.labels_differ)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["counts_equal"] = self.counts_equal
        return {k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in out.items()}


def compare_boxes(ref_xyxy: np.ndarray, ref_conf: np.ndarray, xyxy: np.ndarray, conf: np.ndarray,
                  ref_p: np.ndarray | None = None, p: np.ndarray | None = None,
                  ref_labels: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Deviation:
    ref_xyxy = np.asarray(ref_xyxy, np.float64).reshape(-1, 4)
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    ref_conf, conf = np.asarray(ref_conf, np.float64), np.asarray(conf, np.float64)
    out = Deviation(n_reference=len(ref_xyxy), n_other=len(xyxy))
    if len(ref_xyxy) == 0 or len(xyxy) == 0:
        return out
    iou, _ = pairwise_overlaps(ref_xyxy, xyxy)
    taken = np.zeros(len(xyxy), bool)
    for i in np.argsort(-ref_conf, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] <= 0:
            continue
        taken[j] = True
        out.paired += 1
        out.min_iou = min(out.min_iou, float(iou[i, j]))
        out.max_box_px = max(out.max_box_px, float(np.abs(ref_xyxy[i] - xyxy[j]).max()))
        out.max_det_conf = max(out.max_det_conf, abs(float(ref_conf[i]) - float(conf[j])))
        if ref_p is not None and p is not None:
            out.max_p_blast = max(out.max_p_blast, abs(float(ref_p[i]) - float(p[j])))
        if ref_labels is not None and labels is not None and ref_labels[i] != labels[j]:
            out.labels_differ += 1
    return out


def compare_results(reference, other) -> Deviation:
    """Two SmearResults of one image (workbench.app.results), cell by cell."""
    def arrays(result):
        cells = result.cells
        return (np.array([c.xyxy for c in cells], np.float64).reshape(-1, 4), np.array([c.det_conf for c in cells]),
                np.array([c.p_blast for c in cells]), [c.label for c in cells])

    (a, ac, ap, al), (b, bc, bp, bl) = arrays(reference), arrays(other)
    return compare_boxes(a, ac, b, bc, ap, bp, al, bl)
