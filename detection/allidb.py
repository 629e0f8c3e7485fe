"""ALL-IDB1 expert points -> white-blood-cell boxes -> an ultralytics YOLO detection dataset of native 640 px tiles.

ALL-IDB1 (University of Milan, research use only: never commit or redistribute it, outputs go under the git-ignored
datasets/build/) marks cells by *points*, not boxes:

    ALL_IDB1/xyc/ImNNN_L.xyc            expert centroids of the lymphoblasts ("x<TAB>y" per line; empty if L=0)
    ALL_IDB1/other_points/ImNNN_L.xyc   centroids of every other object: normal white cells AND platelets
    ALL_IDB2/crop_sources.csv           the cell centre of each ALL-IDB2 crop in its ALL-IDB1 source image;
                                        label_blast=0 rows are normal white cells

A box is grown from each point by segmenting the stained cell around it (`point_to_box`): Giemsa-stained white cells
(nucleus and cytoplasm) are bluer than the pink red cells and the beige background, so the CIELAB b* channel, taken
relative to the image's median, is a camera-independent stain measure (checked on both cameras: background and red
cells 0-3, pale cytoplasm 6-10, nuclei 25-60). Per image, the stained blobs are thresholded with hysteresis and
opened (`_cell_mask`); the blob at a point is split from touching cells by an additively weighted Voronoi split
around the marked points and distance-transform peaks (`_split_cell`), and the box is the cell's extent plus a 4%
margin. The sizes come from the image's camera (`camera_scale`): a blob smaller than the smallest white cell is a
platelet (no box); one larger than the largest is a failure, as is one without a nucleus (smudge cell, giant
platelet). Two points whose boxes overlap (IoU >= 0.5) mark one cell: the better kind (blast > normal > other) wins.

Layout written by `build_allidb1_tiles` under `out_dir`:

    images/{split}/ImNNN_L_x{X0}_y{Y0}.png  640x640 native-resolution crops (lossless, no resizing)
    labels/{split}/ImNNN_L_x{X0}_y{Y0}.txt  `0 cx cy w h` per white cell, normalised to [0, 1]
    data.yaml, split.csv, tiles.csv, build_report.json, contact_sheet.png

Unlabelled white cells would teach the detector that white cells are background, so every stained, white-cell-sized
blob in a tile that is not covered by a kept box is painted over with the tile's background colour ("mask" policy,
see `_mask_tile`), as is a box cut by the tile border that keeps less than `MIN_INSIDE` of its area.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import yaml
from PIL import Image

from detection.errors import LabelFileError
from detection.boxes import box_iou
from detection.fileio import check_build_dir, replace_build, write_atomic

__all__ = [
    "KINDS",
    "MERGE_PX",
    "MIN_INSIDE",
    "SPLITS",
    "AllIdbBuildReport",
    "AllIdbSplitReport",
    "CameraScale",
    "CellPoint",
    "ImageCells",
    "PointBox",
    "PointResult",
    "StainMap",
    "allidb1_split",
    "build_allidb1_tiles",
    "build_detection_dataset",
    "camera_name",
    "camera_scale",
    "point_to_box",
    "read_allidb1_points",
    "read_split_csv",
    "segment_image",
    "segment_point",
    "stain_map",
    "verify_detection_dataset",
    "write_split_csv",
]

log = logging.getLogger(__name__)

Kind = Literal["blast", "normal", "other"]
KINDS: tuple[str, ...] = ("blast", "normal", "other")  # also the priority order when two points mark one cell
SPLITS: tuple[str, ...] = ("train", "val", "test")
CLASS_NAMES = {0: "wbc"}
REPORT_NAME = "build_report.json"
MERGE_PX = 20.0  # points closer than this mark the same object (ALL-IDB2 centres are accurate to ~4 px)
MIN_INSIDE = 0.6  # a box cut by the tile border is kept if this fraction of its area is inside the tile


# --------------------------------------------------------------------------------------------------------------------
# points


@dataclass(frozen=True)
class CellPoint:
    """One marked object in an ALL-IDB1 image, in image pixels. kind: "blast" (xyc), "normal" (an ALL-IDB2
    label_blast=0 crop centre) or "other" (other_points: a normal white cell or a platelet)."""

    x: float
    y: float
    kind: Kind


def read_allidb1_points(allidb_root: Path, merge_px: float = MERGE_PX) -> dict[str, list[CellPoint]]:
    """Every ALL-IDB1 image name (e.g. "Im048_1.jpg", all images of ALL_IDB1/im, in name order) -> its points.

    `allidb_root` is `<datasets>/all-idb`. Points closer than `merge_px` to a point of higher priority (blast >
    normal > other) are dropped as marks of the same object; within a kind, file order is kept.
    Raises FileNotFoundError for a missing folder, LabelFileError for a malformed point file or CSV row.
    """
    return _read_points(Path(allidb_root), merge_px)[0]


def _read_points(allidb_root: Path, merge_px: float) -> tuple[dict[str, list[CellPoint]], Counter]:
    """Points per image and a Counter of the points read per kind ("read_<kind>") and dropped as duplicates
    ("duplicate_<kind>")."""
    idb1 = Path(allidb_root).expanduser() / "ALL_IDB1"
    for sub in ("im", "xyc", "other_points"):
        if not (idb1 / sub).is_dir():
            raise FileNotFoundError(f"{idb1 / sub} not found: allidb_root must be <datasets>/all-idb")
    images = sorted(p.name for p in (idb1 / "im").iterdir() if p.suffix.lower() == ".jpg")
    raw: dict[str, dict[str, list[tuple[float, float]]]] = {n: {k: [] for k in KINDS} for n in images}
    for name in images:
        stem = Path(name).stem
        raw[name]["blast"] = _read_xyc(idb1 / "xyc" / f"{stem}.xyc", required=True)
        raw[name]["other"] = _read_xyc(idb1 / "other_points" / f"{stem}.xyc", required=False)
    for name, x, y in _read_allidb2_normals(Path(allidb_root).expanduser()):
        if name not in raw:
            raise LabelFileError(f"ALL_IDB2/crop_sources.csv names {name}, which is not in {idb1 / 'im'}")
        raw[name]["normal"].append((x, y))

    stats: Counter = Counter()
    points: dict[str, list[CellPoint]] = {}
    for name in images:
        kept: list[CellPoint] = []
        for kind in KINDS:  # priority order: a lower kind never displaces a higher one
            for x, y in raw[name][kind]:
                stats[f"read_{kind}"] += 1
                if any(math.hypot(p.x - x, p.y - y) < merge_px for p in kept):
                    stats[f"duplicate_{kind}"] += 1
                    continue
                kept.append(CellPoint(x, y, kind))  # type: ignore[arg-type]
        points[name] = kept
    return points, stats


def _read_xyc(path: Path, required: bool) -> list[tuple[float, float]]:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found")
        return []
    return read_xyc(path)


def read_xyc(path: Path | str) -> list[tuple[float, float]]:
    """The points of an ALL-IDB `.xyc` file: `x y` per line (tab, space or comma separated); LabelFileError names the
    line that is not."""
    path = Path(path)
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.replace(",", " ").split()  # xyc uses a tab, other_points a space
        if not parts:
            continue
        try:
            if len(parts) != 2:
                raise ValueError
            out.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise LabelFileError(f"{path}:{number}: expected 'x y', got {line!r}") from None
    return out


def _read_allidb2_normals(allidb_root: Path) -> list[tuple[str, float, float]]:
    """(source image, x, y) of every ALL-IDB2 crop with label_blast=0; [] when crop_sources.csv is absent."""
    path = allidb_root / "ALL_IDB2" / "crop_sources.csv"
    if not path.is_file():
        log.warning("%s not found: no 'normal' points from ALL-IDB2", path)
        return []
    out = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            try:
                if int(row["label_blast"]) == 0:
                    out.append((row["allidb1_source_image"], float(row["cell_centre_x"]), float(row["cell_centre_y"])))
            except (KeyError, TypeError, ValueError):
                raise LabelFileError(f"{path}:{number}: bad row {row}") from None
    return out


# --------------------------------------------------------------------------------------------------------------------
# scale and stain


@dataclass(frozen=True)
class CameraScale:
    """How large a white cell is at one image size, in px. `wbc_min`: the equivalent diameter (of a disc of the same
    area) of the smallest white cell, a small lymphocyte; a stained blob smaller than that is a platelet, a platelet
    clump or stain debris. `wbc_max`: the width of the largest single white cell (a blast or monocyte); a larger
    blob is several cells or a smudge. Every other size in the segmentation is a fraction of `wbc_min`."""

    camera: str
    wbc_min: float
    wbc_max: float


# Measured on segmented ALL-IDB1 cells. Both cameras image at a similar scale (blasts: median equivalent diameter
# 118 px Olympus, 140 px Canon). wbc_min: the smallest ALL-IDB2 "normal" cells are 54 px (Canon); on the Olympus the
# stained objects of other_points leave a gap between 47 px (platelet clumps, bare nuclei) and 55 px (the smallest
# lymphocytes). wbc_max: the widest single blasts (box side) are ~200 px (Olympus) and ~240 px (Canon).
_CAMERAS: dict[tuple[int, int], CameraScale] = {
    (1712, 1368): CameraScale("olympus", 52.0, 210.0),
    (2592, 1944): CameraScale("canon", 52.0, 250.0),
}
_REFERENCE = (2592, 1944)


def camera_scale(width: int, height: int) -> CameraScale:
    """The expected white-cell size range for an ALL-IDB1 image of `width` x `height` px."""
    if (width, height) in _CAMERAS:
        return _CAMERAS[(width, height)]
    # The odd 1226x652 image is a cut-out at about the Canon's magnification (its platelets measure 18-22 px, the
    # Canon's 20-25 px), so only images larger than the reference are scaled by their width; smaller ones keep it.
    ref = _CAMERAS[_REFERENCE]
    factor = max(1.0, width / _REFERENCE[0])
    return CameraScale(f"other_{width}x{height}", ref.wbc_min * factor, ref.wbc_max * factor)


def camera_name(width: int, height: int) -> str:
    """"olympus" (1712x1368), "canon" (2592x1944) or "other_WxH": the stratum of allidb1_split."""
    return camera_scale(width, height).camera


STAIN_LOW = 5.0  # b* below the image median: the faintest cytoplasm is ~6, red cell rims and background <= 3
STAIN_CORE = 14.0  # a blob must hold pixels this stained (nucleus, dense cytoplasm) to count as a cell
# A white cell has a nucleus: >= 12% of its blob (>= 19% in all but one ALL-IDB2 normal cell) is stained above 30.
# Smudge cells (lysed cells without chromatin structure) and giant platelets have 0-11%.
STAIN_NUCLEUS = 30.0
MIN_NUCLEUS = 0.12
STAIN_BLUR = 2.0  # sigma in px: smooths JPEG noise and the thin red-cell rims before thresholding


@dataclass
class StainMap:
    """How much bluer than the image's median each pixel is, in CIELAB b* units (8-bit OpenCV scale), smoothed."""

    stain: np.ndarray  # float32, HxW
    scale: CameraScale
    cells: np.ndarray  # uint8 0/1, HxW: the stained blobs (_cell_mask)
    labels: np.ndarray  # int32, HxW: the blobs' connected-component ids (0: none)
    boxes: np.ndarray  # (n_labels, 5) int: x, y, w, h, area of each component (row 0: the background)

    @property
    def shape(self) -> tuple[int, int]:
        return self.stain.shape[:2]  # type: ignore[return-value]


def stain_map(image_rgb: np.ndarray, scale: CameraScale | None = None) -> StainMap:
    """The stain measure and stained blobs of an RGB uint8 image, at `scale` (default: camera_scale of its size).
    The median b* of the image is the reference, because background and red cells cover most of every smear,
    whatever the camera's white balance."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
    b = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2LAB)[:, :, 2]
    reference = float(np.median(b[::4, ::4]))
    stain = reference - cv2.GaussianBlur(b.astype(np.float32), (0, 0), STAIN_BLUR)
    height, width = b.shape
    scale = scale or camera_scale(width, height)
    cells = _cell_mask(stain, scale)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(cells, connectivity=8)
    return StainMap(stain, scale, cells, labels, stats)


def _cell_mask(stain: np.ndarray, scale: CameraScale) -> np.ndarray:
    """Stained blobs (uint8 0/1): pixels above STAIN_LOW, opened with a disc a third of the smallest cell wide,
    kept only where the blob holds STAIN_CORE pixels (hysteresis), with small holes (pale nucleoli, vacuoles)
    filled.

    The opening cuts what is thinner than the disc: platelets hanging on a cell by a cytoplasm tail, red-cell rims
    and narrow necks between touching cells. A cytoplasm crescent survives it, however thin, because a disc that
    straddles it and the nucleus fits inside the cell. Only small holes are filled here, because a ring of touching
    cells encloses a gap (a red cell, background) that is not part of any of them.
    """
    low = (stain > STAIN_LOW).astype(np.uint8)
    k = _odd(0.33 * scale.wbc_min)
    low = cv2.morphologyEx(low, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels = cv2.connectedComponents(low, connectivity=8)
    if n <= 1:
        return low
    has_core = np.zeros(n, bool)
    has_core[np.unique(labels[stain > STAIN_CORE])] = True
    has_core[0] = False
    mask = has_core[labels].astype(np.uint8)
    return _fill_holes(mask, max_area=math.pi / 4 * (0.67 * scale.wbc_min) ** 2)


def _fill_holes(mask: np.ndarray, max_area: float | None = None) -> np.ndarray:
    """`mask` (0/1) with its holes filled: all of them, or those of at most `max_area` px."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)  # everything reachable from outside the padding is background
    holes = (flood[1:-1, 1:-1] == 0).astype(np.uint8)
    if max_area is not None and holes.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
        small = np.zeros(n, bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        holes = small[labels]
    return (mask.astype(bool) | holes.astype(bool)).astype(np.uint8)


def _odd(value: float) -> int:
    return max(3, int(round(value)) | 1)


# --------------------------------------------------------------------------------------------------------------------
# point -> box


@dataclass
class PointBox:
    """A white cell grown from a point: float xyxy in image pixels (clipped to the image), the point's kind, and the
    cell's mask inside the integer box [floor(x1), ceil(x2)) x [floor(y1), ceil(y2)) (used to paint cut cells)."""

    x1: float
    y1: float
    x2: float
    y2: float
    kind: str
    point: tuple[float, float]
    mask: np.ndarray | None = field(default=None, repr=False)
    mask_origin: tuple[int, int] = (0, 0)  # image (x, y) of mask[0, 0]

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass
class PointResult:
    """What segment_point made of one point: status "box" (with `box`), "platelet" (the stained blob at the point is
    smaller than a white cell, or too faint to survive the opening), or "failed", with `reason`: no stained blob at
    the point, the point's part of a blob of touching cells is too small or on their border, the blob is larger
    than one white cell, or it has no nucleus (smudge cell, giant platelet)."""

    status: Literal["box", "platelet", "failed"]
    box: PointBox | None = None
    reason: str = ""
    size: float = 0.0  # equivalent diameter of the segmented blob, px (0 when nothing was found)


def point_to_box(
    image_rgb: np.ndarray,
    x: float,
    y: float,
    *,
    kind: str = "other",
    neighbours: Sequence[tuple[float, float]] = (),
    stain: StainMap | None = None,
    scale: CameraScale | None = None,
) -> PointBox | None:
    """The box of the white cell marked at (x, y) in an RGB uint8 image, or None for a platelet or a failed
    segmentation (segment_point says which). `neighbours`: the image's other marked points, which separate touching
    cells. `stain`: the image's StainMap, to avoid recomputing it per point. `scale`: the expected cell sizes
    (default: camera_scale of the image size)."""
    return segment_point(image_rgb, x, y, kind=kind, neighbours=neighbours, stain=stain, scale=scale).box


def segment_point(
    image_rgb: np.ndarray | None,
    x: float,
    y: float,
    *,
    kind: str = "other",
    neighbours: Sequence[tuple[float, float]] = (),
    stain: StainMap | None = None,
    scale: CameraScale | None = None,
) -> PointResult:
    """Segment the cell at (x, y): the stained blob containing the point (or within a few px of it, since points are
    centroids marked by hand), split from touching cells, holes filled, plus a margin; see the module docstring."""
    if stain is None:
        if image_rgb is None:
            raise ValueError("segment_point needs image_rgb or a StainMap")
        stain = stain_map(image_rgb, scale)
    elif scale is not None and scale != stain.scale:
        raise ValueError(f"scale {scale} differs from the StainMap's {stain.scale}, whose blobs were cut at its scale")
    scale = stain.scale
    height, width = stain.shape
    if not (0 <= x < width and 0 <= y < height):
        return PointResult("failed", reason="point outside the image")

    px, py = int(x), int(y)
    label = _label_near(stain.labels, px, py, radius=0.16 * scale.wbc_min)
    hole = None
    if label == 0:
        hole, label = _enclosing_hole(stain, px, py)
    if label == 0:
        # No cell-like blob: a faint platelet (too small to survive the opening) or an unstained spot.
        if (stain.stain[max(0, py - 6):py + 7, max(0, px - 6):px + 7] > STAIN_LOW).any():
            return PointResult("platelet", reason="small faint blob")
        return PointResult("failed", reason="no stained blob at the point")
    # Work in the blob's bounding box (one pixel of border, so the distance transform sees its edge).
    bx, by, bw, bh, _ = (int(v) for v in stain.boxes[label])
    x0, y0 = max(0, bx - 1), max(0, by - 1)
    x1, y1 = min(width, bx + bw + 1), min(height, by + bh + 1)
    blob = stain.labels[y0:y1, x0:x1] == label
    if hole is not None:  # enclosed by the blob, so inside its bounding box
        hx, hy, hole_mask = hole
        ys, xs = np.nonzero(hole_mask)
        blob[ys + hy - y0, xs + hx - x0] = True
    window = stain.stain[y0:y1, x0:x1]
    size = _equivalent_diameter(blob)
    if size < scale.wbc_min:
        return PointResult("platelet", reason="blob smaller than a white cell", size=size)
    px, py = px - x0, py - y0

    local = [(nx - x0, ny - y0) for nx, ny in neighbours
             if 0 <= nx - x0 < window.shape[1] and 0 <= ny - y0 < window.shape[0]]
    cell = _split_cell(blob, (px, py), local, scale)
    if cell is None:
        return PointResult("failed", reason="point on the border between touching cells", size=size)
    size = _equivalent_diameter(cell)
    if size < scale.wbc_min:
        return PointResult("failed", reason="part of a larger blob, smaller than a white cell", size=size)
    ys, xs = np.nonzero(cell)
    bw, bh = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    if max(bw, bh) > scale.wbc_max:
        return PointResult("failed", reason="blob larger than one white cell", size=size)
    if np.count_nonzero(window[cell] > STAIN_NUCLEUS) < MIN_NUCLEUS * np.count_nonzero(cell):
        return PointResult("failed", reason="no nucleus (smudge cell, giant platelet)", size=size)

    # The threshold sits inside the soft, blurred cell edge; a small margin proportional to the cell reaches the
    # cytoplasm's outer edge without swallowing the neighbours.
    margin = 0.04 * max(bw, bh) + STAIN_BLUR
    bx1 = float(max(0.0, x0 + xs.min() - margin))
    by1 = float(max(0.0, y0 + ys.min() - margin))
    bx2 = float(min(width, x0 + xs.max() + 1 + margin))
    by2 = float(min(height, y0 + ys.max() + 1 + margin))
    ix1, iy1 = int(math.floor(bx1)), int(math.floor(by1))
    ix2, iy2 = int(math.ceil(bx2)), int(math.ceil(by2))
    # The box (with its margin) is larger than the blob's crop: place the crop inside it.
    box_mask = np.zeros((iy2 - iy1, ix2 - ix1), bool)
    ys, xs = np.nonzero(cell)
    box_mask[ys + y0 - iy1, xs + x0 - ix1] = True
    box = PointBox(bx1, by1, bx2, by2, kind, (float(x), float(y)), box_mask, (ix1, iy1))
    return PointResult("box", box=box, size=size)


def _enclosing_hole(stain: StainMap, px: int, py: int) -> tuple[tuple[int, int, np.ndarray] | None, int]:
    """((x, y, mask) of the hole, label of the blob around it) when (px, py) lies in a hole of a blob that
    _cell_mask left open (a neutrophil's pale centre between its nuclear lobes: the point marks that cell), else
    (None, 0). Only holes narrower than the largest cell are looked for."""
    half = int(stain.scale.wbc_max)
    height, width = stain.shape
    x0, y0 = max(0, px - half), max(0, py - half)
    x1, y1 = min(width, px + half + 1), min(height, py + half + 1)
    labels = stain.labels[y0:y1, x0:x1]
    outside = np.pad((labels == 0).astype(np.uint8), 1, constant_values=1)
    ff = np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2, flags=4)
    if outside[py - y0 + 1, px - x0 + 1] != 1:
        return None, 0  # the point's background region reaches the window border: not enclosed
    cv2.floodFill(outside, None, (px - x0 + 1, py - y0 + 1), 3, flags=4)
    region = (outside == 3)[1:-1, 1:-1]
    rim = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~region
    around = labels[rim]
    around = around[around > 0]
    if len(around) == 0:
        return None, 0
    label = int(np.bincount(around).argmax())
    return (x0, y0, region), label


def _label_near(labels: np.ndarray, px: int, py: int, radius: float) -> int:
    if labels[py, px]:
        return int(labels[py, px])
    r = int(math.ceil(radius))
    ys, xs = np.nonzero(labels[max(0, py - r):py + r + 1, max(0, px - r):px + r + 1])
    if len(xs) == 0:
        return 0
    xs = xs + max(0, px - r)
    ys = ys + max(0, py - r)
    d = np.hypot(xs - px, ys - py)
    i = int(np.argmin(d))
    return int(labels[ys[i], xs[i]]) if d[i] <= radius else 0


def _equivalent_diameter(mask: np.ndarray) -> float:
    return float(math.sqrt(4.0 * float(np.count_nonzero(mask)) / math.pi))


def _split_cell(
    blob: np.ndarray, point: tuple[int, int], neighbours: Sequence[tuple[float, float]], scale: CameraScale
) -> np.ndarray | None:
    """The part of `blob` that belongs to the cell at `point`, when the blob holds several touching cells.

    Cell centres ("seeds") are the marked points inside the blob plus the peaks of the blob's distance transform that
    no marked cell already explains (unmarked neighbours). Each blob pixel goes to the seed minimising
    `distance to the seed - the seed cell's radius` (an additively weighted Voronoi split): for two touching round
    cells of radii r1, r2 the boundary passes through their contact point, whatever their sizes.
    """
    blob_u8 = blob.astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(blob_u8, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    px, py = point
    seed_r = 0.4 * scale.wbc_min  # a marked point is a centroid; look this far around it for the cell's radius

    def radius_near(cx: float, cy: float) -> float:
        r = int(seed_r)
        return float(dist[max(0, int(cy) - r):int(cy) + r + 1, max(0, int(cx) - r):int(cx) + r + 1].max())

    seeds: list[tuple[float, float, float]] = [(px, py, radius_near(px, py))]
    for nx, ny in neighbours:
        ix, iy = int(nx), int(ny)
        if not blob[iy, ix]:
            continue
        r = radius_near(nx, ny)
        if r < 0.33 * scale.wbc_min:
            continue  # a platelet or a mark at the blob's edge: not the centre of a touching white cell
        if any(math.hypot(nx - sx, ny - sy) <= max(sr, r) for sx, sy, sr in seeds):
            continue  # inside the inscribed disc of a seed's cell (or vice versa): a second mark of one cell
        seeds.append((nx, ny, r))

    # Unmarked cells: distance peaks deeper than 80% of the smallest cell's radius, outside every seed's inscribed
    # disc.
    k = _odd(0.67 * scale.wbc_min)
    peaks = (dist >= cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))) & (
        dist > 0.4 * scale.wbc_min
    )
    ys, xs = np.nonzero(peaks)
    for i in np.argsort(-dist[ys, xs]):
        cx, cy, r = float(xs[i]), float(ys[i]), float(dist[ys[i], xs[i]])
        if all(math.hypot(cx - sx, cy - sy) > max(sr, r) for sx, sy, sr in seeds):
            seeds.append((cx, cy, r))

    if len(seeds) == 1:
        return blob
    ys, xs = np.nonzero(blob)
    cost = np.stack([np.hypot(xs - sx, ys - sy) - sr for sx, sy, sr in seeds])
    mine = np.argmin(cost, axis=0) == 0
    cell = np.zeros_like(blob)
    cell[ys[mine], xs[mine]] = True
    # keep the connected part at the point (a Voronoi cell of a concave blob can be in pieces)
    n, labels = cv2.connectedComponents(cell.astype(np.uint8), connectivity=8)
    label = _label_near(labels, px, py, radius=0.16 * scale.wbc_min)
    if label == 0:
        return None
    return _fill_holes((labels == label).astype(np.uint8)).astype(bool)


# --------------------------------------------------------------------------------------------------------------------
# the split of ALL-IDB1 source images


def allidb1_split(
    allidb_root: Path, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, str]:
    """Image name -> "train" / "val" / "test" for every ALL-IDB1 image, in name order.

    THE split of ALL-IDB source images: the detection tiles and the classifier's crops (ALL-IDB2 crops come from
    ALL-IDB1 images, see crop_sources.csv) both use it, so no cell of a test image is ever trained on. Stratified by
    (label L, camera), because camera and label are confounded in ALL-IDB1 (every Olympus image is ALL): each
    stratum of >= 3 images gives every split at least one image, so every split holds ALL and healthy images and both
    cameras. A stratum of 1-2 images (the single 1226x652 image) goes to train. Deterministic for a given `seed`:
    names are sorted, then shuffled per stratum by a generator seeded with (seed, stratum).
    """
    fractions = _check_fractions(fractions)
    idb1 = Path(allidb_root).expanduser() / "ALL_IDB1" / "im"
    if not idb1.is_dir():
        raise FileNotFoundError(f"{idb1} not found: allidb_root must be <datasets>/all-idb")
    strata: dict[tuple[str, str], list[str]] = {}
    for path in sorted(p for p in idb1.iterdir() if p.suffix.lower() == ".jpg"):
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
        strata.setdefault((_image_label(path.name), camera_name(width, height)), []).append(path.name)
    split: dict[str, str] = {}
    for (label, camera), names in sorted(strata.items()):
        rng = random.Random(f"allidb1-split:{seed}:{label}:{camera}")  # str seeds hash with sha512: stable
        order = list(names)
        rng.shuffle(order)
        n_train, n_val, n_test = _allocate(len(order), fractions)
        for i, name in enumerate(order):
            split[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return dict(sorted(split.items()))


def _image_label(name: str) -> str:
    """"1" (ALL patient) or "0" (healthy) from ImNNN_L.jpg."""
    label = Path(name).stem.rsplit("_", 1)[-1]
    if label not in ("0", "1"):
        raise ValueError(f"{name}: not an ALL-IDB1 name ImNNN_L with L 0 or 1")
    return label


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be (train, val, test) >= 0 with train > 0 and sum 1, got {fractions!r}")
    return values  # type: ignore[return-value]


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if n < 3:
        return n, 0, 0
    n_val = int(math.floor(n * fractions[1] + 0.5))
    n_test = int(math.floor(n * fractions[2] + 0.5))
    if fractions[1] > 0:
        n_val = max(1, n_val)
    if fractions[2] > 0:
        n_test = max(1, n_test)
    while n - n_val - n_test < 1:  # train keeps at least one image
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def write_split_csv(path: Path, split: dict[str, str]) -> None:
    """Write `split` (image name -> split) as CSV with the columns image,split, in name order, atomically."""
    bad = {name: s for name, s in split.items() if s not in SPLITS}
    if bad:
        raise ValueError(f"unknown split name(s) {sorted(set(bad.values()))}; expected {list(SPLITS)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "split"])
    for name in sorted(split):
        writer.writerow([name, split[name]])
    write_atomic(path, buffer.getvalue())


def read_split_csv(path: Path) -> dict[str, str]:
    """The split written by write_split_csv. Raises LabelFileError for a malformed file or a repeated image."""
    path = Path(path)
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames[:2]] != ["image", "split"]:
            raise LabelFileError(f"{path}: expected the header 'image,split', got {reader.fieldnames}")
        for number, row in enumerate(reader, 2):
            name, value = (row.get("image") or "").strip(), (row.get("split") or "").strip()
            if not name or value not in SPLITS:
                raise LabelFileError(f"{path}:{number}: expected an image name and one of {list(SPLITS)}, got {row}")
            if name in out:
                raise LabelFileError(f"{path}:{number}: {name} is listed twice")
            out[name] = value
    return out


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


# --------------------------------------------------------------------------------------------------------------------
# tiles


@dataclass
class _Tile:
    x0: int
    y0: int
    image: np.ndarray  # RGB, tile x tile
    lines: list[str]
    clipped: int = 0  # label boxes cut by the tile border but kept (>= MIN_INSIDE inside)
    masked_cut_boxes: int = 0  # boxes cut by the border with < MIN_INSIDE inside, painted over
    masked_blobs: set[int] = field(default_factory=set)  # indices into ImageCells.unmatched_boxes painted here
    masked_px: int = 0  # pixels that differ from the source image


def _plan_tiles(cells: ImageCells, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of tiles that together hold every kept box whole.

    Greedy: take the first box (in reading order) not yet wholly inside a tile and, among the tile positions that
    hold it, choose the one that holds the most other uncovered boxes, cuts the fewest boxes (a cut box is either
    clipped or painted over) and overlaps the fewest unmatched blobs (which get painted over).
    """
    if not cells.boxes:
        return []
    boxes = np.array([b.xyxy for b in cells.boxes], dtype=np.float64)
    blobs = np.array(cells.unmatched_boxes, dtype=np.float64).reshape(-1, 4)
    order = np.lexsort((boxes[:, 0], boxes[:, 1]))
    covered = np.zeros(len(boxes), bool)
    step = 16
    corners: list[tuple[int, int]] = []
    for i in order:
        if covered[i]:
            continue
        b = boxes[i]
        xs = _starts_holding(b[0], b[2], tile, cells.width, step)
        ys = _starts_holding(b[1], b[3], tile, cells.height, step)
        cx, cy = (a.ravel().astype(np.float64) for a in np.meshgrid(xs, ys))
        x1, y1 = cx + tile, cy + tile
        inside = (
            (boxes[None, :, 0] >= cx[:, None]) & (boxes[None, :, 1] >= cy[:, None])
            & (boxes[None, :, 2] <= x1[:, None]) & (boxes[None, :, 3] <= y1[:, None])
        )
        touches = (
            (boxes[None, :, 2] > cx[:, None]) & (boxes[None, :, 0] < x1[:, None])
            & (boxes[None, :, 3] > cy[:, None]) & (boxes[None, :, 1] < y1[:, None])
        )
        blob_touch = (
            (blobs[None, :, 2] > cx[:, None]) & (blobs[None, :, 0] < x1[:, None])
            & (blobs[None, :, 3] > cy[:, None]) & (blobs[None, :, 1] < y1[:, None])
        )
        # Ties (common: many positions hold the same boxes) go to the position that centres the box, so cells are
        # seen with context on all sides rather than pushed into a corner.
        off_centre = np.hypot(cx + tile / 2 - (b[0] + b[2]) / 2, cy + tile / 2 - (b[1] + b[3]) / 2) / tile
        score = (
            2.0 * (inside & ~covered[None, :]).sum(1)
            + 0.2 * (inside & covered[None, :]).sum(1)
            - 1.0 * (touches & ~inside).sum(1)
            - 0.5 * blob_touch.sum(1)
            - 0.1 * off_centre
        )
        best = int(np.argmax(score))  # first maximum: deterministic
        corners.append((int(cx[best]), int(cy[best])))
        covered |= inside[best]
    return corners


def _starts_holding(lo: float, hi: float, tile: int, length: int, step: int) -> np.ndarray:
    """Tile starts s in [0, length - tile] with [lo, hi] inside [s, s + tile]."""
    first = max(0, int(math.ceil(hi)) - tile)
    last = min(length - tile, int(math.floor(lo)))
    if last < first:  # the box is wider than a tile (never for white cells at tile >= 300)
        return np.array([max(0, min(length - tile, int(lo)))])
    return np.unique(np.r_[np.arange(first, last + 1, step), last])


def _render_tile(rgb: np.ndarray, cells: ImageCells, x0: int, y0: int, tile: int, seed: int) -> _Tile:
    """Cut the tile, write its label lines and paint over what must not be seen unlabelled (see _mask_tile)."""
    crop = np.ascontiguousarray(rgb[y0:y0 + tile, x0:x0 + tile])
    out = _Tile(x0, y0, crop.copy(), [])
    paint = np.zeros((tile, tile), np.uint8)
    keep = np.zeros((tile, tile), bool)
    for box in cells.boxes:
        cx1, cy1 = max(box.x1, x0), max(box.y1, y0)
        cx2, cy2 = min(box.x2, x0 + tile), min(box.y2, y0 + tile)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        inside = (cx2 - cx1) * (cy2 - cy1) / ((box.x2 - box.x1) * (box.y2 - box.y1))
        if inside >= MIN_INSIDE:
            out.clipped += inside < 1.0
            _mark_cell(keep, box, x0, y0, cells)
            bx1, by1, bx2, by2 = cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0
            out.lines.append(
                f"0 {(bx1 + bx2) / 2 / tile:.6f} {(by1 + by2) / 2 / tile:.6f} "
                f"{(bx2 - bx1) / tile:.6f} {(by2 - by1) / tile:.6f}\n"
            )
        else:
            # Mostly outside: too little of the cell to label, too much to leave as unlabelled white-cell texture.
            out.masked_cut_boxes += 1
            _mark_cell(paint, box, x0, y0, cells)
    unmatched = cells.unmatched[y0:y0 + tile, x0:x0 + tile]
    if unmatched.any():
        paint |= unmatched
        for j, (ux1, uy1, ux2, uy2) in enumerate(cells.unmatched_boxes):
            if ux2 > x0 and ux1 < x0 + tile and uy2 > y0 and uy1 < y0 + tile:
                if unmatched[max(0, uy1 - y0):uy2 - y0, max(0, ux1 - x0):ux2 - x0].any():
                    out.masked_blobs.add(j)
    if paint.any():
        _mask_tile(out.image, paint.astype(bool), keep, seed)
        out.masked_px = int(np.count_nonzero((out.image != crop).any(axis=2)))
    return out


def _mark_cell(target: np.ndarray, box: PointBox, x0: int, y0: int, cells: ImageCells) -> None:
    """Set the pixels of `box`'s cell in the tile-sized `target` whose top-left is image (x0, y0): its segmentation
    mask, dilated a little so the soft edge below the threshold goes with it (the whole box if it has no mask).
    Painting marks the cells to paint over; keeping marks the labelled cells, whose outline then stays natural even
    where a painted neighbour reaches into their box."""
    tile = target.shape[0]
    if box.mask is None:
        region = np.ones((int(math.ceil(box.y2)) - int(box.y1), int(math.ceil(box.x2)) - int(box.x1)), np.uint8)
        ox, oy = int(box.x1), int(box.y1)
    else:
        k = _odd(0.15 * camera_scale(cells.width, cells.height).wbc_min)
        region = cv2.dilate(box.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        ox, oy = box.mask_origin
    tx1, ty1 = max(ox, x0), max(oy, y0)
    tx2, ty2 = min(ox + region.shape[1], x0 + tile), min(oy + region.shape[0], y0 + tile)
    if tx2 > tx1 and ty2 > ty1:
        target[ty1 - y0:ty2 - y0, tx1 - x0:tx2 - x0] |= region[ty1 - oy:ty2 - oy, tx1 - ox:tx2 - ox].astype(target.dtype)


def _mask_tile(image: np.ndarray, paint: np.ndarray, keep: np.ndarray, seed: int) -> None:
    """Paint `paint` pixels (in place) with the local background: the median colour of the brighter half of a band
    around the painted region (the glass between the red cells there, so illumination gradients match), plus noise
    of the band's spread, blended in over a few px so no hard edge shows. Pixels of labelled cells (`keep`) are
    never changed.

    Why mask and not skip: on ALL images white cells crowd together, so skipping every tile with an unlabelled
    white-cell-sized blob (smudge cells, unmarked cells, failed segmentations) would drop most tiles, and with them
    most labelled blasts. Masking keeps the labelled cells and removes only what would be a false negative."""
    gray = image.astype(np.float32).mean(axis=2)
    p8 = paint.astype(np.uint8)
    band = cv2.dilate(p8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))).astype(bool)
    band &= ~cv2.dilate(p8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))).astype(bool) & ~keep
    if np.count_nonzero(band) < 200:  # painted almost everywhere: fall back to the whole tile
        band = ~paint & ~keep if (~paint & ~keep).any() else np.ones_like(paint)
    sample = image[band & (gray >= np.median(gray[band]))]
    colour = np.median(sample, axis=0)
    spread = np.clip(sample.std(axis=0), 0.0, 6.0)
    rng = np.random.default_rng(seed)
    fill = colour[None, None, :] + rng.normal(0.0, 1.0, image.shape) * spread[None, None, :]
    alpha = cv2.GaussianBlur(paint.astype(np.float32), (0, 0), 2.0)
    alpha = np.maximum(alpha, paint.astype(np.float32))
    alpha[keep] = 0.0
    blended = image.astype(np.float32) * (1.0 - alpha[..., None]) + fill * alpha[..., None]
    changed = alpha > 0
    image[changed] = np.clip(np.rint(blended[changed]), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------------
# contact sheet

_SHEET_CELL = 160
_KIND_COLOUR = {"blast": (230, 30, 30), "normal": (30, 90, 230), "other": (20, 170, 40)}  # RGB


def _sheet_crop(rgb: np.ndarray, box: PointBox, name: str, camera: str) -> np.ndarray:
    """A square crop 1.6 x the box's larger side around the box, resized to _SHEET_CELL, box and caption drawn."""
    side = 1.6 * max(box.width, box.height)
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    height, width = rgb.shape[:2]
    crop = np.zeros((s, s, 3), np.uint8)
    sx1, sy1, sx2, sy2 = max(0, x0), max(0, y0), min(width, x0 + s), min(height, y0 + s)
    crop[sy1 - y0:sy2 - y0, sx1 - x0:sx2 - x0] = rgb[sy1:sy2, sx1:sx2]
    f = _SHEET_CELL / s
    cell = cv2.resize(crop, (_SHEET_CELL, _SHEET_CELL), interpolation=cv2.INTER_AREA)
    p1 = (int(round((box.x1 - x0) * f)), int(round((box.y1 - y0) * f)))
    p2 = (int(round((box.x2 - x0) * f)) - 1, int(round((box.y2 - y0) * f)) - 1)
    cv2.rectangle(cell, p1, p2, _KIND_COLOUR.get(box.kind, (255, 255, 0)), 2)
    cv2.rectangle(cell, (0, 0), (_SHEET_CELL - 1, 13), (255, 255, 255), -1)
    caption = f"{Path(name).stem} {camera[:3]} {box.kind} {int(box.width)}x{int(box.height)}"
    cv2.putText(cell, caption, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def _contact_sheet(candidates: list[tuple[str, np.ndarray]], seed: int, n: int = 48, columns: int = 8) -> np.ndarray:
    """A grid of `n` crops drawn evenly from the cameras (then filled up from whichever has more), deterministic."""
    rng = random.Random(f"allidb1-sheet:{seed}")
    by_camera: dict[str, list[np.ndarray]] = {}
    for camera, crop in candidates:
        by_camera.setdefault(camera, []).append(crop)
    for crops in by_camera.values():
        rng.shuffle(crops)
    chosen: list[np.ndarray] = []
    while len(chosen) < n and any(by_camera.values()):
        for camera in sorted(by_camera):  # round robin over cameras
            if by_camera[camera] and len(chosen) < n:
                chosen.append(by_camera[camera].pop())
    rows = max(1, math.ceil(len(chosen) / columns))
    sheet = np.full((rows * _SHEET_CELL, columns * _SHEET_CELL, 3), 255, np.uint8)
    for i, crop in enumerate(chosen):
        r, c = divmod(i, columns)
        sheet[r * _SHEET_CELL:(r + 1) * _SHEET_CELL, c * _SHEET_CELL:(c + 1) * _SHEET_CELL] = crop
    return sheet


# --------------------------------------------------------------------------------------------------------------------
# building the tile dataset


@dataclass
class AllIdbSplitReport:
    """One split of the ALL-IDB1 tile dataset. Point counts are after de-duplication of the point files; per kind:
    points = cells (boxes) + platelets + failures + duplicates."""

    images: int = 0
    images_by_group: dict[str, int] = field(default_factory=dict)  # "L1/canon" -> images
    images_without_tiles: list[str] = field(default_factory=list)  # no kept box (e.g. only platelets marked)
    tiles: int = 0
    tile_boxes: int = 0  # label lines (a cell inside two overlapping tiles counts twice)
    tile_boxes_clipped: int = 0  # of those, cut by the tile border with >= MIN_INSIDE of the box inside
    points: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    cells: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})  # kept boxes, once per cell
    platelets: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})  # too small for a white cell
    failures: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})  # segmentation failed
    failure_reasons: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})  # same cell as a kept box
    masked_blobs: int = 0  # unmatched stained white-cell-sized blobs painted over (once per blob)
    masked_cut_boxes: int = 0  # box-in-tile cuts with < MIN_INSIDE inside, painted over (per tile)
    masked_px: int = 0
    cells_outside_tiles: int = 0  # kept boxes not wholly inside any tile (0 by construction; checked)


@dataclass
class AllIdbBuildReport:
    """The result of build_allidb1_tiles."""

    allidb_root: str
    out_dir: str
    data_yaml: str
    tile: int
    seed: int
    fractions: list[float]
    limit: int | None
    images_requested: list[str] | None
    image_format: str = "png"
    unlabelled_policy: str = (
        "mask: stained white-cell-sized blobs not covered by a kept box, and boxes with < 60% inside a tile, are "
        "painted with the tile's background colour; skipping such tiles would drop most tiles of the crowded ALL "
        "images and most labelled blasts with them"
    )
    names: dict[int, str] = field(default_factory=lambda: dict(CLASS_NAMES))
    points_read: dict[str, int] = field(default_factory=dict)  # per kind, before de-duplication
    duplicate_points: dict[str, int] = field(default_factory=dict)  # dropped within MERGE_PX of a better point
    box_side_px: dict[str, dict[str, float]] = field(default_factory=dict)  # camera -> percentiles of max(w, h)
    splits: dict[str, AllIdbSplitReport] = field(default_factory=dict)
    seconds: float = 0.0

    def totals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("images", "tiles", "tile_boxes", "tile_boxes_clipped", "masked_blobs", "masked_cut_boxes",
                    "masked_px", "cells_outside_tiles"):
            out[key] = sum(getattr(s, key) for s in self.splits.values())
        for key in ("points", "cells", "platelets", "failures", "duplicates"):
            out[key] = {k: sum(getattr(s, key)[k] for s in self.splits.values()) for k in KINDS}
        points = sum(out["points"].values())
        out["box_fraction"] = round(sum(out["cells"].values()) / points, 4) if points else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["names"] = {str(k): v for k, v in self.names.items()}
        data["totals"] = self.totals()
        return data

    def summary_line(self) -> str:
        """One line for a CLI: images and tiles per split, cells by kind, what was dropped or painted over."""
        t = self.totals()
        per_split = "/".join(f"{self.splits[s].images}:{self.splits[s].tiles}" for s in SPLITS if s in self.splits)
        cells = ", ".join(f"{k} {t['cells'][k]}" for k in KINDS)
        return (
            f"{t['images']} images, {t['tiles']} tiles, {t['tile_boxes']} boxes (train/val/test images:tiles "
            f"{per_split}); cells {cells} ({t['box_fraction']:.0%} of {sum(t['points'].values())} points); "
            f"{sum(t['platelets'].values())} platelets, {sum(t['failures'].values())} failures, "
            f"{t['masked_blobs']} unlabelled blobs masked"
        )


def build_allidb1_tiles(
    allidb_root: Path,
    out_dir: Path,
    tile: int = 640,
    seed: int = 0,
    limit: int | None = None,
    contact_sheet: bool = True,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    images: Sequence[str] | None = None,
) -> AllIdbBuildReport:
    """Build the ALL-IDB1 white-cell detection dataset (class 0 `wbc`) of native-resolution `tile` x `tile` crops in
    `out_dir`, in the split of allidb1_split(allidb_root, seed, fractions); see the module docstring for the layout.

    `limit`: only the first N images (by name) of each split. `images`: only these image names (each still in its
    split). split.csv always lists the split of every ALL-IDB1 image. `out_dir` must be absent, empty or an earlier
    build (it holds build_report.json), whose parts are replaced; the build is staged beside it and moved in at the
    end, so a failed build leaves it as it was.
    """
    started = time.perf_counter()
    allidb_root = Path(allidb_root).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 256:
        raise ValueError(f"tile must be an int >= 256 (px), got {tile!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    fractions = _check_fractions(fractions)
    split = allidb1_split(allidb_root, seed, fractions)
    points, read_stats = _read_points(allidb_root, MERGE_PX)
    if images is not None:
        unknown = sorted(set(images) - set(split))
        if unknown:
            raise ValueError(f"not ALL-IDB1 images: {unknown}")
    chosen = {s: [n for n in split if split[n] == s and (images is None or n in images)] for s in SPLITS}
    if limit is not None:
        chosen = {s: names[:limit] for s, names in chosen.items()}
    check_build_dir(out_dir, REPORT_NAME)

    report = AllIdbBuildReport(
        allidb_root=str(allidb_root), out_dir=str(out_dir), data_yaml=str(out_dir / "data.yaml"), tile=tile,
        seed=seed, fractions=list(fractions), limit=limit, images_requested=list(images) if images else None,
        points_read={k: read_stats[f"read_{k}"] for k in KINDS},
        duplicate_points={k: read_stats[f"duplicate_{k}"] for k in KINDS},
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        tile_rows: list[list[Any]] = []
        sheet_candidates: list[tuple[str, np.ndarray]] = []
        widths: dict[str, list[float]] = {}
        for split_name in SPLITS:
            (staging / "images" / split_name).mkdir(parents=True)
            (staging / "labels" / split_name).mkdir(parents=True)
            sr = report.splits[split_name] = AllIdbSplitReport()
            for name in chosen[split_name]:
                _build_image(allidb_root, staging, split_name, name, points[name], tile, seed, sr, tile_rows,
                             sheet_candidates if contact_sheet else None, widths)
            log.info(
                "ALL-IDB1 %s: %d images, %d tiles, %d boxes, cells %s, platelets %s, failures %s, masked blobs %d",
                split_name, sr.images, sr.tiles, sr.tile_boxes, sr.cells, sr.platelets, sr.failures, sr.masked_blobs,
            )
        report.box_side_px = {
            camera: {f"p{q}": round(float(np.percentile(v, q)), 1) for q in (5, 50, 95)}
            for camera, v in sorted(widths.items()) if v
        }
        data = {"path": str(out_dir), **{s: f"images/{s}" for s in SPLITS}, "names": dict(CLASS_NAMES)}
        (staging / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        write_split_csv(staging / "split.csv", split)
        _write_tiles_csv(staging / "tiles.csv", tile_rows)
        if contact_sheet:
            sheet = _contact_sheet(sheet_candidates, seed)
            cv2.imwrite(str(staging / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        report.seconds = round(time.perf_counter() - started, 1)
        (staging / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        replace_build(staging, out_dir, _PARTS + (REPORT_NAME,))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("ALL-IDB1 -> YOLO tiles: wrote %s in %.0f s (%s)", out_dir, report.seconds, json.dumps(report.totals()))
    return report


def _build_image(
    allidb_root: Path,
    root: Path,
    split: str,
    name: str,
    points: list[CellPoint],
    tile: int,
    seed: int,
    sr: AllIdbSplitReport,
    tile_rows: list[list[Any]],
    sheet_candidates: list[tuple[str, np.ndarray]] | None,
    widths: dict[str, list[float]],
) -> None:
    path = allidb_root / "ALL_IDB1" / "im" / name
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    height, width = rgb.shape[:2]
    group = f"L{_image_label(name)}/{camera_name(width, height)}"
    sr.images += 1
    sr.images_by_group[group] = sr.images_by_group.get(group, 0) + 1
    for p in points:
        sr.points[p.kind] += 1
    cells = segment_image(rgb, points, name)
    for key, count in cells.results.items():
        kind, status = key[0], key[1]
        if status == "box":
            sr.cells[kind] += count
        elif status == "platelet":
            sr.platelets[kind] += count
        elif status == "duplicate":
            sr.duplicates[kind] += count
        elif len(key) == 2:  # ("kind", "failed"); the reasons are counted separately
            sr.failures[kind] += count
        else:
            sr.failure_reasons[key[2]] = sr.failure_reasons.get(key[2], 0) + count
    widths.setdefault(cells.camera, []).extend(cells.widths)
    if width < tile or height < tile:
        log.warning("%s is %dx%d, smaller than a %d px tile: skipped", name, width, height, tile)
        sr.images_without_tiles.append(name)
        return
    corners = _plan_tiles(cells, tile)
    if not corners:
        sr.images_without_tiles.append(name)
    for box in cells.boxes:
        if not any(box.x1 >= x0 and box.y1 >= y0 and box.x2 <= x0 + tile and box.y2 <= y0 + tile
                   for x0, y0 in corners):
            sr.cells_outside_tiles += 1
            log.warning("%s: box %s is not wholly inside any tile", name, [round(v) for v in box.xyxy])
    stem = Path(name).stem
    masked_blobs: set[int] = set()
    for x0, y0 in corners:
        tile_seed = zlib.crc32(f"{seed}:{name}:{x0}:{y0}".encode())
        t = _render_tile(rgb, cells, x0, y0, tile, tile_seed)
        tile_name = f"{stem}_x{x0:04d}_y{y0:04d}"
        image_path = root / "images" / split / f"{tile_name}.png"
        if not cv2.imwrite(str(image_path), cv2.cvtColor(t.image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {image_path}")
        (root / "labels" / split / f"{tile_name}.txt").write_text("".join(t.lines), encoding="utf-8")
        sr.tiles += 1
        sr.tile_boxes += len(t.lines)
        sr.tile_boxes_clipped += t.clipped
        sr.masked_cut_boxes += t.masked_cut_boxes
        sr.masked_px += t.masked_px
        masked_blobs |= t.masked_blobs
        tile_rows.append([f"{tile_name}.png", split, name, cells.camera, x0, y0, len(t.lines), t.masked_px])
    sr.masked_blobs += len(masked_blobs)
    if sheet_candidates is not None and cells.boxes:
        rng = random.Random(f"allidb1-sheet:{seed}:{name}")
        for box in rng.sample(cells.boxes, min(4, len(cells.boxes))):
            sheet_candidates.append((cells.camera, _sheet_crop(rgb, box, name, cells.camera)))
    log.debug("%s (%s): %d boxes -> %d tiles", name, split, len(cells.boxes), len(corners))


def _write_tiles_csv(path: Path, rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["tile", "split", "source_image", "camera", "x0", "y0", "boxes", "masked_px"])
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


_PARTS = ("images", "labels", "data.yaml", "split.csv", "tiles.csv", "contact_sheet.png")


# --------------------------------------------------------------------------------------------------------------------
# BCCD + ALL-IDB1 in one ultralytics dataset


def build_detection_dataset(
    datasets_root: Path,
    out_dir: Path,
    *,
    tile: int = 640,
    seed: int = 0,
    limit: int | None = None,
    link: bool = True,
    contact_sheet: bool = True,
    allidb_images: Sequence[str] | None = None,
    verify: bool = True,
) -> Path:
    """Build the white-cell detection dataset: BCCD (official split, `out_dir/bccd`, via build_bccd_yolo) and the
    ALL-IDB1 tiles (`out_dir/allidb1`, via build_allidb1_tiles), each with its own data.yaml (for per-dataset
    evaluation), plus `out_dir/data.yaml` listing both per split (`train: [bccd/images/train,
    allidb1/images/train]`, names {0: wbc}) and `out_dir/build_report.json`. Returns the combined data.yaml.

    `datasets_root` holds bccd/BCCD and all-idb. `limit` applies to each split of each part; `allidb_images` limits
    the ALL-IDB1 part to these images (each in its split). `out_dir` may be absent, empty or an earlier build. With
    `verify`, the combined yaml is loaded the way ultralytics training loads it (see verify_detection_dataset), which
    refuses a split without images.
    """
    from detection.bccd import build_bccd_yolo  # the BCCD builder; imported here to keep this module's import light

    datasets_root = Path(datasets_root).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    # Refuse a folder holding anything else; accept an earlier (even half-finished) build, whose parts each builder
    # replaces.
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        ours = ("bccd", "allidb1", "data.yaml", REPORT_NAME)
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if foreign:
            raise FileExistsError(f"{out_dir} holds {foreign[:5]}, which no detection dataset build wrote: refusing")
    out_dir.mkdir(parents=True, exist_ok=True)
    bccd = build_bccd_yolo(datasets_root / "bccd" / "BCCD", out_dir / "bccd", classes=("wbc",), limit=limit, link=link)
    allidb = build_allidb1_tiles(
        datasets_root / "all-idb", out_dir / "allidb1", tile=tile, seed=seed, limit=limit,
        contact_sheet=contact_sheet, images=allidb_images,
    )
    data = {
        "path": str(out_dir),
        **{s: [f"bccd/images/{s}", f"allidb1/images/{s}"] for s in SPLITS},
        "names": dict(CLASS_NAMES),
    }
    data_yaml = out_dir / "data.yaml"
    write_atomic(data_yaml, yaml.safe_dump(data, sort_keys=False))
    summary: dict[str, Any] = {
        "data_yaml": str(data_yaml),
        "parts": {"bccd": bccd.data_yaml, "allidb1": allidb.data_yaml},
        "bccd": bccd.totals(),
        "allidb1": allidb.totals(),
    }
    if verify:
        summary["verified"] = verify_detection_dataset(data_yaml)
    write_atomic(out_dir / REPORT_NAME, json.dumps(summary, indent=2, default=str) + "\n")
    log.info("detection dataset: wrote %s", data_yaml)
    return data_yaml


def verify_detection_dataset(data_yaml: Path) -> dict[str, Any]:
    """Load `data_yaml` as ultralytics training does (check_det_dataset, then a YOLODataset per split; train/val/test
    may be lists of folders) and return {"names", "splits": {split: {"images", "boxes", "missing_labels"}}}.
    Raises ValueError if ultralytics drops an image or label as corrupt, or an image has no label file, or a box
    lies outside [0, 1] (detection.bccd.verify_yolo_dataset checks single-folder splits only)."""
    from detection.ultralytics_env import import_ultralytics

    import_ultralytics()  # offline, analytics sync off
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, img2label_paths

    data = check_det_dataset(str(data_yaml), autodownload=False)
    result: dict[str, Any] = {"names": dict(data["names"]), "splits": {}}
    for split in SPLITS:
        folders = data.get(split)
        if not folders:
            continue
        folders = [folders] if isinstance(folders, str) else list(folders)
        listed = sum(
            1 for folder in folders for p in Path(folder).iterdir() if p.suffix.lstrip(".").lower() in IMG_FORMATS
        )
        dataset = YOLODataset(img_path=folders, data=data, task="detect", augment=False, cache=False)
        missing = sum(1 for f in img2label_paths(dataset.im_files) if not os.path.isfile(f))
        corrupt = listed - len(dataset.im_files)
        outside = sum(
            int(((label["bboxes"] < 0) | (label["bboxes"] > 1)).any()) for label in dataset.labels if len(label["cls"])
        )
        result["splits"][split] = {
            "images": len(dataset.im_files),
            "boxes": int(sum(len(label["cls"]) for label in dataset.labels)),
            "missing_labels": missing,
        }
        if missing or corrupt or outside:
            raise ValueError(
                f"{data_yaml}: in {split}, ultralytics found {missing} image(s) without a label file, {corrupt} "
                f"corrupt image/label pair(s) and {outside} label file(s) with boxes outside [0, 1]"
            )
    return result
