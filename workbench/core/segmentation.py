"""Segmenting a stained white cell around a point, and painting a region over with the smear's background.

A box is grown from a point by segmenting the stained cell around it (`point_to_box`): Giemsa-stained white cells
(nucleus and cytoplasm) are bluer than the pink red cells and the beige background, so the CIELAB b* channel, taken
relative to the image's median, is a camera-independent stain measure (checked on both ALL-IDB1 cameras: background
and red cells 0-3, pale cytoplasm 6-10, nuclei 25-60). Per image, the stained blobs are thresholded with hysteresis
and opened (`_cell_mask`); the blob at a point is split from touching cells by an additively weighted Voronoi split
around the marked points and distance-transform peaks (`_split_cell`), and the box is the cell's extent plus a 4%
margin. The sizes come from the image's camera (`camera_scale`): a blob smaller than the smallest white cell is a
platelet (no box); one larger than the largest is a failure, as is one without a nucleus (smudge cell, giant
platelet).

Used at run time (the annotation importer turns `.xyc` points into boxes) and by the dataset builders (the ALL-IDB1
census), so it lives on the bottom floor.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = ["CameraScale", "PointBox", "PointResult", "StainMap", "camera_name", "camera_scale", "paint_background",
           "point_to_box", "segment_point", "stain_map"]


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
    """The label at (px, py), else the nearest non-zero label within `radius`, else 0. The point may lie outside
    `labels` (a point within `radius` of a blob but outside the blob's bounding-box window in _split_cell): it is
    never used as an index then (a negative one would wrap around, a large one raise IndexError)."""
    height, width = labels.shape[:2]
    if 0 <= px < width and 0 <= py < height and labels[py, px]:
        return int(labels[py, px])
    r = int(math.ceil(radius))
    x0, y0 = max(0, px - r), max(0, py - r)
    x1, y1 = min(width, px + r + 1), min(height, py + r + 1)
    if x0 >= x1 or y0 >= y1:
        return 0
    ys, xs = np.nonzero(labels[y0:y1, x0:x1])
    if len(xs) == 0:
        return 0
    xs = xs + x0
    ys = ys + y0
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
