"""ALL-IDB1 expert points -> white-blood-cell boxes, the by-image split, and painting a region with background.

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

The unmarked white cells of each image are found by `detection.allidb_census`, which builds on this module; the
training sets are written by `detection.multisource` (detector) and `classification.build_crops` (classifier).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
from PIL import Image

from detection.errors import LabelFileError
from detection.boxes import box_iou
from detection.fileio import write_atomic

__all__ = [
    "KINDS",
    "MERGE_PX",
    "SPLITS",
    "CameraScale",
    "CellPoint",
    "ImageCells",
    "PointBox",
    "PointResult",
    "StainMap",
    "allidb1_split",
    "camera_name",
    "camera_scale",
    "paint_background",
    "point_to_box",
    "read_allidb1_points",
    "read_split_csv",
    "segment_image",
    "segment_point",
    "stain_map",
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
# painting over


def paint_background(image: np.ndarray, paint: np.ndarray, keep: np.ndarray, seed: int) -> None:
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
