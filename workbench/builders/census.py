"""Every white cell of an ALL-IDB1 smear, marked or not: the census both training sets are built from.

ALL-IDB1 marks every blast of an ALL image (`xyc/`), and some of the other white cells (`other_points/`, ALL-IDB2's
normal crops). On ALL smears boxed cell by cell by another annotator, the blast boxes and the `.xyc` points matched
one for one (see the datasets README). So in an ALL image a white cell that holds no blast point is a non-blast
cell, smudge cells and bare nuclei included; in a healthy image every white cell is non-blast. The census finds the
unmarked ones and gives every cell a box, a kind and a flag for the image border:

- marked cells: the point's segmented box (`workbench.builders.allidb_cells.segment_image`); a point whose segmentation failed
  takes the detector box that holds it, if any;
- unmarked cells: candidates are the detector's boxes (the shipped detector, run beforehand; see
  `workbench dataset census`) and the stained white-cell-sized blobs that no marked box explains. A candidate is a
  white cell when the segmentation at its centre gives a box with a nucleus that agrees with it, or (a smudge cell
  or bare nucleus, which the nucleus rule of the segmentation refuses) when the detector is sure of it and the blob
  at its centre is white-cell-sized;
- what is neither (a stained blob that fails both rules: platelet clumps, overlaps, debris), and any non-blast cell
  (unmarked or marked) narrower than a red cell (7.5 um, measured on the image's red cells: giant platelets, clumps,
  ghosts; at the border, the largest round cell its visible piece can belong to), is listed as `ambiguous`: the
  detector tiles paint it out, the classifier never sees it.

Cells within `BORDER_PX` of the image border are flagged: their point may lie outside the image, so an unmarked
cell there may be an unmarked blast.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from workbench.builders.allidb_cells import _unmatched_blobs, segment_image
from workbench.builders.allidb_points import CellPoint
from workbench.builders.allidb_split import _image_label
from workbench.core.boxes import box_iou, round_cell_max_diameter
from workbench.core.scale import RBC_DIAMETER_UM, estimate_rbc_scale
from workbench.core.segmentation import (
    STAIN_NUCLEUS,
    StainMap,
    segment_point,
    stain_map,
)

log = logging.getLogger(__name__)

BORDER_PX = 10.0          # a box closer than this to the image border is "at the border"
SAME_CELL_IOU = 0.3       # a candidate overlapping a marked box this much is that cell
AGREE_IOU = 0.4           # segmented box and detector box of one unmarked cell must agree this well
SMUDGE_CONF = 0.5         # detector confidence that makes a nucleus-less white-cell-sized blob a smudge cell
MIN_DET_CONF = 0.25       # detector boxes below this are not candidates

Box = tuple[float, float, float, float]


@dataclass
class CensusCell:
    """One white cell. kind: blast | normal (ALL-IDB2 normal crop) | other (other_points white cell) | unmarked.
    `found_by`: point (segmented at the mark), point+detector (mark inside a detector box, segmentation failed),
    segmentation (unmarked, segmented and agreeing with a detector box or a blob), smudge (unmarked, detector sure,
    no nucleus by the stain rule)."""

    xyxy: Box
    kind: str
    found_by: str
    det_conf: float | None = None
    at_border: bool = False

    @property
    def blast(self) -> bool:
        return self.kind == "blast"


@dataclass
class ImageCensus:
    name: str
    diagnosis: str            # "ALL" (ImNNN_1) or "healthy" (ImNNN_0)
    width: int
    height: int
    cells: list[CensusCell] = field(default_factory=list)
    ambiguous: list[Box] = field(default_factory=list)   # stained blobs that are neither a cell nor nothing
    ambiguous_why: list[str] = field(default_factory=list)  # the segmentation's reason, per ambiguous box
    unboxed_points: list[tuple[float, float, str]] = field(default_factory=list)  # marks that got no box at all

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageCensus":
        cells = [CensusCell(**{**c, "xyxy": tuple(c["xyxy"])}) for c in data.get("cells", [])]
        return cls(name=data["name"], diagnosis=data["diagnosis"], width=data["width"], height=data["height"],
                   cells=cells, ambiguous=[tuple(b) for b in data.get("ambiguous", [])],
                   ambiguous_why=list(data.get("ambiguous_why", [])),
                   unboxed_points=[tuple(p) for p in data.get("unboxed_points", [])])


def _at_border(box: Box, width: int, height: int) -> bool:
    return box[0] < BORDER_PX or box[1] < BORDER_PX or box[2] > width - BORDER_PX or box[3] > height - BORDER_PX


def _contains(box: Box, x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _matches_any(box: Box, boxes: Iterable[Box], iou: float = SAME_CELL_IOU) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(box_iou(box, other) >= iou or _contains(other, cx, cy) for other in boxes)


def census_image(
    image_rgb: np.ndarray,
    points: Sequence[CellPoint],
    detections: Sequence[Sequence[float]],
    name: str,
    min_cell_um: float | None = None,
) -> ImageCensus:
    """The census of one ALL-IDB1 image. `points`: its marks (blast > normal > other, de-duplicated, as
    `read_allidb1_points` gives them); `detections`: the detector's boxes `[x1, y1, x2, y2, conf]` in image pixels;
    `min_cell_um`: the narrowest non-blast cell (see _too_narrow; default MIN_CELL_UM; 0: no such rule,
    as the census of the v2 detector's and v3 classifier's data was taken)."""
    height, width = image_rgb.shape[:2]
    census = ImageCensus(name=name, diagnosis="ALL" if _image_label(name) == "1" else "healthy",
                         width=width, height=height)
    stain = stain_map(image_rgb)
    marked = segment_image(image_rgb, points, name)  # reuses nothing of `stain`: it recomputes the same map
    dets = sorted((tuple(float(v) for v in d[:4]) + (float(d[4]),) for d in detections if d[4] >= MIN_DET_CONF),
                  key=lambda d: -d[4])
    cells: list[CensusCell] = []
    for box in marked.boxes:
        conf = max((d[4] for d in dets if box_iou(box.xyxy, d[:4]) >= 0.5), default=None)
        cells.append(CensusCell(tuple(round(v, 1) for v in box.xyxy), box.kind, "point", conf))

    # Marks without a box: a white-cell point (not a platelet) inside a detector box takes that box.
    boxed = [c.xyxy for c in cells]
    for point in points:
        if any(_contains(b, point.x, point.y) for b in boxed):
            continue
        holder = next((d for d in dets if _contains(d[:4], point.x, point.y) and not _matches_any(d[:4], boxed)),
                      None)
        if holder is not None and (point.kind == "blast" or holder[4] >= SMUDGE_CONF):
            cell = CensusCell(tuple(round(v, 1) for v in holder[:4]), point.kind, "point+detector", holder[4])
            cells.append(cell)
            boxed.append(cell.xyxy)
        elif point.kind != "other":  # other_points also marks platelets: only blasts and normals must have a box
            census.unboxed_points.append((point.x, point.y, point.kind))

    # Unmarked candidates: detector boxes, then stained blobs that nothing explains yet.
    seeds = [(p.x, p.y) for p in points]
    candidates: list[tuple[Box, float | None]] = [(d[:4], d[4]) for d in dets]
    _, blob_boxes = _unmatched_blobs(stain, marked.boxes)
    for blob in blob_boxes:
        fb = tuple(float(v) for v in blob)
        if not _matches_any(fb, [c[0] for c in candidates]):
            candidates.append((fb, None))
    for cand, conf in candidates:
        if _matches_any(cand, [c.xyxy for c in cells]):
            continue
        cx, cy = (cand[0] + cand[2]) / 2, (cand[1] + cand[3]) / 2
        others = seeds + [((c.xyxy[0] + c.xyxy[2]) / 2, (c.xyxy[1] + c.xyxy[3]) / 2) for c in cells]
        result = segment_point(None, cx, cy, kind="unmarked", neighbours=others, stain=stain)
        cell = _accept(cand, conf, result, stain)
        if cell is None:
            if result.status != "platelet" and (conf is None or conf >= MIN_DET_CONF) and result.size > 0:
                census.ambiguous.append(tuple(round(v, 1) for v in cand))
                census.ambiguous_why.append(f"{result.status}: {result.reason} (d {result.size:.0f}, "
                                            f"conf {conf if conf is not None else 0:.2f})")
            continue
        if _matches_any(cell.xyxy, [c.xyxy for c in cells]):
            continue
        cells.append(cell)

    for cell in cells:
        cell.at_border = _at_border(cell.xyxy, width, height)
    # A thin sliver away from the border is a red-cell overlap or a streak, not a (whole) white cell.
    cells = [c for c in cells if c.kind != "unmarked" or c.at_border or _aspect(c.xyxy) >= MIN_ASPECT]
    # A non-blast cell narrower than a red cell (at the border: whose piece no cell that wide leaves) is a (giant)
    # platelet, a platelet clump, a red-cell ghost or a piece of a neighbour, whether unmarked or marked by
    # other_points / an ALL-IDB2 "normal" crop (neither says "white cell": they mark what is not a blast): it is
    # left ambiguous (painted out, never a crop), not taught as a white cell. Blast marks are kept whatever their size.
    min_um = MIN_CELL_UM if min_cell_um is None else min_cell_um
    min_side = _min_cell_side_px(image_rgb, stain, min_um) if min_um > 0 else 0.0
    census.cells = []
    for cell in cells:
        why = _too_narrow(cell, min_side, width, height)
        if why:
            census.ambiguous.append(cell.xyxy)
            census.ambiguous_why.append(f"{why} ({cell.found_by}, conf {cell.det_conf or 0:.2f})")
            continue
        census.cells.append(cell)
    return census


BORDER_PIECE_SLACK = 0.1   # a piece a few px deep is measured a few % short (pixel rounding): never cut a cell for it


def _too_narrow(cell: CensusCell, min_side: float, width: int, height: int) -> str | None:
    """Why a non-blast cell cannot be a whole white cell by its size, or None. Away from the border: its box's short
    side is under `min_side`. At the border its box may be a cut piece of a larger cell, so it is measured by the
    largest round cell its visible piece can belong to (workbench.core.boxes.round_cell_max_diameter): a platelet
    cut by the edge, e.g., shows a piece a few um deep and a few um long, which no white cell leaves. A corner piece
    bounds nothing and is kept."""
    if cell.kind == "blast" or min_side <= 0:
        return None
    side = min(cell.xyxy[2] - cell.xyxy[0], cell.xyxy[3] - cell.xyxy[1])
    if not cell.at_border:
        return f"narrower than a red cell: {side:.0f} px < {min_side:.0f} px" if side < min_side else None
    largest = round_cell_max_diameter(cell.xyxy, width, height, BORDER_PX)
    if largest is not None and largest < (1 - BORDER_PIECE_SLACK) * min_side:
        return f"at the border, a piece of at most {largest:.0f} px across < {min_side:.0f} px (a red cell)"
    return None


# Set on contact sheets of every non-blast census cell away from the border (ALL-IDB1, both cameras). Unmarked: all
# of those with a short side under 7.5 um were platelet clumps, pale red-cell ghosts or a lobe of a neighbouring
# cell; the first whole white cells (bare nuclei, small lymphocytes) measure 8.2-8.5 um. Marked (other_points,
# ALL-IDB2 "normal" crops, 203 cells): the 33 under 7.5 um are granular lilac discs without a nucleus, smaller than
# the red cells around them (giant platelets; the datasets README: other_points marks platelets too), while the
# smallest dense-nucleus lymphocytes measure 8.3 um. 7.5 um is one red-cell diameter.
MIN_CELL_UM = RBC_DIAMETER_UM
MIN_CELL_WBC_MIN = 1.45   # without a red-cell ruler: the same side as a multiple of the camera's wbc_min


def _min_cell_side_px(image_rgb: np.ndarray, stain: StainMap, min_um: float) -> float:
    """The smallest box side (px) of an unmarked white cell away from the border: `min_um` at the pixel size read off
    the image's red cells (workbench.core.scale), or in proportion to the camera's wbc_min without a ruler."""
    ruler = estimate_rbc_scale(image_rgb)
    if ruler.confident:
        return min_um / ruler.um_per_px
    return MIN_CELL_WBC_MIN * stain.scale.wbc_min * min_um / MIN_CELL_UM


def _accept(cand: Box, conf: float | None, result, stain: StainMap) -> CensusCell | None:
    """The rule that makes an unmarked candidate a white cell (see the module docstring)."""
    if result.status == "box":
        seg = result.box
        if conf is not None and box_iou(seg.xyxy, cand) < AGREE_IOU:
            return None
        if not _compact_nucleus(seg, stain):
            return None   # scattered dark granules: a platelet clump, not a nucleus
        return CensusCell(tuple(round(v, 1) for v in seg.xyxy), "unmarked", "segmentation", conf)
    if result.status == "failed" and result.reason.startswith("no nucleus"):
        # A white-cell-sized stained blob without dense chromatin: a smudge (basket) cell, i.e. a lysed nucleated
        # cell. It is a nucleated cell for the count and a non-blast for the classifier.
        return CensusCell(tuple(round(v, 1) for v in cand), "unmarked", "smudge", conf)
    return None


MIN_ASPECT = 0.5      # short side / long side of an unmarked cell's box away from the border


def _aspect(box: Box) -> float:
    w, h = box[2] - box[0], box[3] - box[1]
    return min(w, h) / max(w, h, 1e-6)


NUCLEUS_CORE = 0.08   # the largest dense-chromatin patch of a white cell covers at least this much of the cell


def _compact_nucleus(box, stain: StainMap) -> bool:
    """A nucleus is one or a few large dense patches (lobes); a platelet clump's dark granules are many tiny ones."""
    if box.mask is None:
        return True
    ox, oy = box.mask_origin
    h, w = box.mask.shape
    window = stain.stain[oy:oy + h, ox:ox + w]
    dense = ((window > STAIN_NUCLEUS) & box.mask[:window.shape[0], :window.shape[1]]).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
    if n <= 1:
        return False
    return stats[1:, cv2.CC_STAT_AREA].max() >= NUCLEUS_CORE * np.count_nonzero(box.mask)


def non_blast_label(cell: CensusCell, diagnosis: str) -> str | None:
    """The classifier label a census cell may teach: "blast" for a blast mark; "normal" for a marked normal cell and
    for an unmarked cell away from the border (of an ALL image: non-blast by the completeness of the blast marks;
    of a healthy image: there are no blasts); None for an unmarked cell at the border of an ALL image (its blast
    point may lie outside the image)."""
    if cell.kind == "blast":
        return "blast"
    if cell.kind in ("normal", "other"):
        return "normal"
    if diagnosis == "ALL" and cell.at_border:
        return None
    return "normal"


def summarise(censuses: Iterable[ImageCensus]) -> dict:
    """Counts by diagnosis and kind / found_by, for build reports."""
    out: dict = {}
    for c in censuses:
        d = out.setdefault(c.diagnosis, {"images": 0, "cells": {}, "found_by": {}, "at_border": 0, "ambiguous": 0,
                                         "unboxed_points": 0})
        d["images"] += 1
        d["ambiguous"] += len(c.ambiguous)
        d["unboxed_points"] += len(c.unboxed_points)
        for cell in c.cells:
            d["cells"][cell.kind] = d["cells"].get(cell.kind, 0) + 1
            d["found_by"][cell.found_by] = d["found_by"].get(cell.found_by, 0) + 1
            d["at_border"] += cell.at_border
    return out


# --------------------------------------------------------------------------------------------------------------------
# the census of every image, and its file

CENSUS_FORMAT = "smear-workbench-allidb1-census/1"


def build_census(allidb_root: Path, detect, *, limit: int | None = None, names: Sequence[str] | None = None,
                 detector: dict | None = None, progress=None, min_cell_um: float | None = None) -> dict:
    """The census of every ALL-IDB1 image (or `names`, or the first `limit` by name). `detect(image_rgb)` returns
    the detector's boxes `[[x1, y1, x2, y2, conf], ...]` in image pixels (tiled as in analyze); `detector` (name,
    sha256) is recorded, because the census depends on it; `min_cell_um`: see census_image (None: MIN_CELL_UM)."""
    min_cell_um = MIN_CELL_UM if min_cell_um is None else min_cell_um
    from workbench.builders.allidb_points import read_allidb1_points

    allidb_root = Path(allidb_root)
    points = read_allidb1_points(allidb_root)
    chosen = [n for n in points if names is None or n in names][: limit or None]
    images = {}
    for i, name in enumerate(chosen, 1):
        bgr = cv2.imread(str(allidb_root / "ALL_IDB1" / "im" / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read {allidb_root / 'ALL_IDB1' / 'im' / name}")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        images[name] = census_image(rgb, points[name], detect(rgb), name, min_cell_um).to_dict()
        if progress is not None:
            progress(i, len(chosen))
    censuses = [ImageCensus.from_dict(v) for v in images.values()]
    return {"format": CENSUS_FORMAT, "detector": detector or {}, "rules": census_rules(min_cell_um),
            "summary": summarise(censuses), "images": images}


def census_rules(min_cell_um: float = MIN_CELL_UM) -> dict:
    return {"border_px": BORDER_PX, "same_cell_iou": SAME_CELL_IOU, "agree_iou": AGREE_IOU,
            "min_det_conf": MIN_DET_CONF, "min_aspect": MIN_ASPECT, "nucleus_core": NUCLEUS_CORE,
            "min_cell_um": min_cell_um, "min_cell_wbc_min": MIN_CELL_WBC_MIN,
            "min_cell_at_border": "round_cell_max_diameter", "border_piece_slack": BORDER_PIECE_SLACK}


def read_census(path: Path) -> tuple[dict[str, ImageCensus], dict]:
    """The census file written by `workbench dataset census`: {image name: ImageCensus} and its header."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != CENSUS_FORMAT:
        raise ValueError(f"{path} is not an ALL-IDB1 census ({CENSUS_FORMAT})")
    images = {name: ImageCensus.from_dict(v) for name, v in data["images"].items()}
    return images, {k: v for k, v in data.items() if k != "images"}


def census_sheet(allidb_root: Path, census: dict[str, ImageCensus], found_by: str, n: int = 48,
                 seed: int = 0) -> np.ndarray:
    """A contact sheet (RGB) of up to `n` census cells found by `found_by` ("segmentation", "smudge", ...) or, with
    "ambiguous", of the ambiguous blobs: how the rules were decided, and how to check them on a new build."""
    import random

    items = []
    for name, c in sorted(census.items()):
        if found_by == "ambiguous":
            items += [(name, box, "ambiguous") for box in c.ambiguous]
        else:
            items += [(name, cell.xyxy, f"{cell.kind[:5]} {cell.det_conf or 0:.2f}{' B' if cell.at_border else ''}")
                      for cell in c.cells if cell.found_by == found_by]
    random.Random(f"census-sheet:{seed}:{found_by}").shuffle(items)
    side, cols = 150, 8
    tiles = []
    loaded: dict[str, np.ndarray] = {}
    for name, (x1, y1, x2, y2), caption in items[:n]:
        if name not in loaded:
            loaded = {name: cv2.imread(str(Path(allidb_root) / "ALL_IDB1" / "im" / name))[:, :, ::-1]}
        image = loaded[name]
        s = int(1.6 * max(x2 - x1, y2 - y1))
        x0, y0 = int((x1 + x2 - s) / 2), int((y1 + y2 - s) / 2)
        crop = np.zeros((s, s, 3), np.uint8)
        h, w = image.shape[:2]
        crop[max(0, -y0):min(s, h - y0), max(0, -x0):min(s, w - x0)] = \
            image[max(0, y0):min(h, y0 + s), max(0, x0):min(w, x0 + s)]
        f = side / s
        tile = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        cv2.rectangle(tile, (int((x1 - x0) * f), int((y1 - y0) * f)), (int((x2 - x0) * f), int((y2 - y0) * f)),
                      (0, 200, 0), 1)
        cv2.rectangle(tile, (0, 0), (side, 12), (255, 255, 255), -1)
        cv2.putText(tile, f"{Path(name).stem} {caption}", (1, 9), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
        tiles.append(tile)
    rows = max(1, -(-len(tiles) // cols))
    sheet = np.full((rows * side, cols * side, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    return sheet
