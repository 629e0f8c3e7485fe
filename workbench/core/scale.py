"""Pixel size of a smear image, read off its red blood cells.

Why: the detector and classifier see cells at whatever magnification a microscope and camera produce (a red cell is
~75 px wide on one ALL-IDB camera, ~90 px on the other, ~100 px in BCCD). Red cells are the one ruler present on
every peripheral smear: their mean diameter is ~7.5 um with little spread, so the typical red-cell diameter in pixels
gives micrometres per pixel without a calibration slide.

How (classical image processing, no model): on a working copy shrunk by a whole factor to a short side of 640 to
1279 px (fast, and the same cells at any input resolution), cells are separated from the bright background by Otsu
on the green channel (red cells absorb green), with nucleus pixels (strongly blue-purple) left out of the threshold
so that one large white cell cannot capture it. Red cells touch and overlap, so instead of demanding isolated blobs,
each visible *arc* of the cell outline is used: every boundary pixel votes, along its inward normal, for circle
centres at each trial radius (a directional Hough transform). An overlapped cell still shows most of its outline,
pale centres vote outwards and so for nothing, and gaps between cells vote for the surrounding cells. Each vote peak
is refined by fitting a circle, then an ellipse, to the boundary pixels that face it; an oval cell's diameter is its
mean axis. Circles on white cells (nucleus inside) are dropped. The diameter reported is the dominant mode of the
fitted diameters (a kernel density in log-diameter, weighted by the length of outline supporting each circle),
because spurious fits (the bulge of a clump, the tip of an elongated cell) are smaller and less supported than real
cells, and a plain median is dragged down by them.

The cell edge is put where the stain begins rather than at half contrast, the way cells are boxed by annotators.
Measured (tests/core/test_scale.py): within ~3 % of hand measurements on ALL-IDB1, 3-8 % below the labelled red-cell
boxes of BCCD and TXL-PBC, which are themselves 8-13 % larger than the cells they hold. About 40-150 ms per image on
two cores; check `ScaleEstimate.confident` before trusting a single image's value.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["RBC_DIAMETER_UM", "ScaleEstimate", "estimate_rbc_scale"]

log = logging.getLogger(__name__)

RBC_DIAMETER_UM = 7.5

_WORK_SIDE = 640            # the working copy's short side is 640 to 1279 px: a red cell spans >= ~25 px there
_R_RANGE = (0.025, 0.2)     # trial radii as fractions of the working short side (a cell is 1/20 to 1/4 of a field)
_R_STEP = 1.06              # geometric radius ladder: 6 % steps; the circle fit refines the radius afterwards
_BIN = 0.1                  # accumulator cell size as a fraction of the trial radius (scale-free vote tolerance)
_MIN_VOTES = 0.3            # a peak needs votes from >= 30 % of its circumference to be worth fitting
_EDGE_ALPHA = 0.8           # move the Otsu threshold 80 % towards the background: the cell edge is taken where the
                            # stain begins, as annotators box it, not at half contrast (matters on blurred images)
_NUCLEUS_EXCESS = 30.0      # a nucleus pixel is bluer (blue - green) than the median cell pixel by this much
_MIN_SUPPORT = 0.45         # fitted circle: outline pixels found / circumference
_MIN_COVER = 0.6            # fitted circle: fraction of 16 angular sectors holding outline pixels (rejects bulges)
_MAX_RING_SPREAD = 0.1      # fitted circle: IQR of the outline radii / radius (a round outline, not a blob)
_MAX_NUCLEUS = 0.15         # a circle holding more nucleus pixels than this is a white cell
_NMS = 0.5                  # circles closer than this many radii are the same cell
_MAX_CELLS = 60             # stop after this many cells (a 2592x1944 field holds ~600 red cells)
_MODE_BANDWIDTH = 0.1       # kernel width in log-diameter (~10 %): red cells vary by about that much
_MODE_HALF_WIDTH = 0.2      # cells within +-20 % (log) of the mode make the estimate
_MAX_SPREAD = 0.2           # IQR / median of those cells above which the estimate is not trusted


@dataclass(frozen=True)
class ScaleEstimate:
    """Red-cell ruler of one image. `rbc_diameter_px` is NaN when no red cell was found (then n_cells is 0)."""

    rbc_diameter_px: float      # dominant diameter of the red cells found, in px of the image given
    n_cells: int                # how many fitted red cells the estimate rests on
    spread: float               # IQR / median of their diameters (NaN without cells)
    confident: bool             # enough cells and a tight spread; False: do not trust it, fall back to a default

    @property
    def um_per_px(self) -> float:
        return RBC_DIAMETER_UM / self.rbc_diameter_px


def estimate_rbc_scale(image_rgb: np.ndarray, *, min_cells: int = 5) -> ScaleEstimate:
    """Estimate the red-cell diameter (px) of an RGB uint8 smear image of shape HxWx3.

    Raises ValueError for anything else. Returns confident=False (and NaN diameter when nothing was found) when fewer
    than `min_cells` cells agree or their diameters spread by more than `_MAX_SPREAD` (IQR / median).
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 16:
        raise ValueError(f"expected an HxWx3 uint8 RGB image (sides >= 16 px), got shape {image.shape} {image.dtype}")
    # Shrink by a whole factor: INTER_AREA is then a plain box average, 3x faster than at a fractional factor.
    k = max(1, min(image.shape[:2]) // _WORK_SIDE)
    h, w = image.shape[0] // k, image.shape[1] // k
    small = cv2.resize(image[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA) if k > 1 else image
    scale = 1.0 / k
    cells, nucleus = _cell_mask(small)
    circles = _find_circles(cells, nucleus)
    if len(circles) == 0:
        log.info("no red cells found in a %dx%d image", image.shape[1], image.shape[0])
        return ScaleEstimate(math.nan, 0, math.nan, False)
    diameters = 2 * circles[:, 2] / scale
    kept = _dominant(diameters, weights=circles[:, 3] * circles[:, 2])
    median = float(np.median(kept))
    q1, q3 = np.percentile(kept, [25, 75])
    spread = float((q3 - q1) / median)
    confident = len(kept) >= min_cells and spread <= _MAX_SPREAD
    log.debug("red cells: %d circles, %d in the mode, diameter %.1f px, spread %.2f", len(circles), len(kept),
              median, spread)
    return ScaleEstimate(median, len(kept), spread, confident)


def _otsu(values: np.ndarray) -> float:
    """Otsu threshold of uint8 values (cv2.threshold cannot take a pixel subset)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    if hist.sum() == 0:
        return 128.0
    p = hist / hist.sum()
    w0 = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * (1 - w0))
    return float(np.nanargmax(between)) if np.isfinite(between).any() else 128.0


def _cell_mask(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cells, nucleus) boolean masks. Cells: darker than the background in green; nucleus: much bluer than cells."""
    green = cv2.GaussianBlur(small[..., 1], (3, 3), 0)
    bluish = small[..., 2].astype(np.float32) - small[..., 1].astype(np.float32)
    # Stain colour varies between labs (Raabin's red cells are lavender), so "blue" is judged against this image's
    # own cells: every pixel clearly darker than the background (its brightest quarter), which takes in the red cells
    # even where a plain Otsu split would only separate a few large dark white cells from everything else.
    bright = green[green >= np.percentile(green, 75)].astype(np.float32)
    level = float(np.median(bright))
    noise = 1.4826 * float(np.median(np.abs(bright - level)))
    darker = green < level - max(3 * noise, 8.0)
    nucleus = bluish > (np.median(bluish[darker]) if darker.any() else 0.0) + _NUCLEUS_EXCESS
    threshold = _otsu(green[~nucleus]) if (~nucleus).any() else _otsu(green)
    return (green <= _towards_background(green, threshold, _EDGE_ALPHA)) | nucleus, nucleus


def _towards_background(green: np.ndarray, threshold: float, alpha: float) -> float:
    """The threshold moved by `alpha` of the way to the background level (median of the pixels above it)."""
    background = green[green > threshold]
    return threshold + alpha * (float(np.median(background)) - threshold) if background.size else threshold


def _find_circles(cells: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """Fitted cell circles as rows (x, y, r, support) in working-copy pixels."""
    h, w = cells.shape
    edge, nx, ny = _boundary(cells)
    ys, xs = np.nonzero(edge)
    if len(xs) < 16:
        return np.zeros((0, 4))
    ux, uy = nx[ys, xs], ny[ys, xs]
    candidates = []
    r = max(4.0, _R_RANGE[0] * min(h, w))
    while r <= _R_RANGE[1] * min(h, w):
        candidates += _vote(xs, ys, ux, uy, r, (h, w))
        r *= _R_STEP
    candidates.sort(key=lambda c: -c[3])      # strongest first, so NMS keeps the best-supported fit of each cell
    taken = np.zeros((h, w), np.uint8)         # centres of accepted cells, grown by _NMS radii (non-max suppression)
    found: list[tuple[float, float, float, float]] = []
    attempts = 0
    for cx, cy, cr, _ in candidates:
        if len(found) >= _MAX_CELLS or attempts >= 3 * _MAX_CELLS:
            break                             # 60 cells fix the mode well; more only cost time
        if taken[min(int(cy), h - 1), min(int(cx), w - 1)]:
            continue
        attempts += 1
        fit = _fit(edge, nx, ny, cx, cy, cr)
        if fit is None:
            continue
        x, y, rr, support = fit
        if x - rr < 0 or y - rr < 0 or x + rr > w or y + rr > h:
            continue                          # cut by the image border: its size is unknown
        if taken[int(y), int(x)] or _disc_mean(nucleus, x, y, rr) > _MAX_NUCLEUS:
            continue                          # already found, or a white cell
        cv2.circle(taken, (int(round(x)), int(round(y))), max(1, int(_NMS * rr)), 1, -1)
        found.append((x, y, rr, support))
    return np.array(found, dtype=np.float64).reshape(-1, 4)


def _boundary(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundary pixels of the cell mask and the unit normal pointing into the cell at each pixel."""
    m8 = cells.astype(np.uint8)
    soft = cv2.GaussianBlur(m8.astype(np.float32), (5, 5), 1.0)
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    norm = np.hypot(gx, gy)
    edge = cv2.morphologyEx(m8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool) & cells & (norm > 1e-3)
    norm[norm == 0] = 1.0
    return edge, gx / norm, gy / norm


def _vote(xs: np.ndarray, ys: np.ndarray, ux: np.ndarray, uy: np.ndarray, r: float,
          shape: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Peaks of the centre votes at trial radius r: (x, y, r, votes / circumference)."""
    h, w = shape
    q = max(1.0, _BIN * r)                     # bins grow with r, so the tolerance is the same at every scale
    gw, gh = int(w / q) + 1, int(h / q) + 1
    cx, cy = xs + r * ux, ys + r * uy
    inside = (cx >= 0) & (cy >= 0) & (cx < w) & (cy < h)
    idx = (cy[inside] / q).astype(np.int64) * gw + (cx[inside] / q).astype(np.int64)
    acc = np.bincount(idx, minlength=gw * gh).reshape(gh, gw).astype(np.float32)
    acc = cv2.boxFilter(acc, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    score = acc / (2 * math.pi * r)
    peaks = (score >= _MIN_VOTES) & (score >= cv2.dilate(score, np.ones((3, 3), np.uint8)))
    py, px = np.nonzero(peaks)
    return [((x + 0.5) * q, (y + 0.5) * q, r, float(score[y, x])) for y, x in zip(py, px)]


def _fit(edge: np.ndarray, nx: np.ndarray, ny: np.ndarray, x: float, y: float,
         r: float) -> tuple[float, float, float, float] | None:
    """Refine a vote peak on the outline pixels that face it; None unless they form a round, well-covered outline."""
    h, w = edge.shape
    for _ in range(3):
        x0, x1 = max(0, int(x - 1.4 * r)), min(w, int(x + 1.4 * r) + 1)
        y0, y1 = max(0, int(y - 1.4 * r)), min(h, int(y + 1.4 * r) + 1)
        py, px = np.nonzero(edge[y0:y1, x0:x1])
        py, px = py + y0, px + x0
        vx, vy = x - px, y - py
        dist = np.hypot(vx, vy) + 1e-6
        facing = (nx[py, px] * vx + ny[py, px] * vy) / dist > 0.9   # normal points at the centre (inner outline)
        sel = facing & (np.abs(dist - r) < 0.25 * r)
        if sel.sum() < 8:
            return None
        fx, fy, fr = _kasa(px[sel].astype(np.float64), py[sel].astype(np.float64))
        if not 0.5 * r < fr < 2 * r:
            return None
        x, y, r = fx, fy, fr
    pts = np.stack([px[sel], py[sel]], 1).astype(np.float64)
    dist = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
    on = np.abs(dist - r) < 0.15 * r
    if on.sum() < 12:
        return None
    support = on.sum() / (2 * math.pi * r)
    angles = np.arctan2(pts[on, 1] - y, pts[on, 0] - x)
    cover = len(np.unique(((angles + math.pi) / (2 * math.pi) * 16).astype(int) % 16)) / 16
    q1, q3 = np.percentile(dist[on], [25, 75])
    if support < _MIN_SUPPORT or cover < _MIN_COVER or (q3 - q1) / r > _MAX_RING_SPREAD:
        return None
    # An oval cell's circle fit follows its most curved arcs; the mean axis of an ellipse fit is its diameter. The
    # cover test above guarantees enough of the outline for a stable ellipse; wild fits keep the circle.
    (_, _), (a, b), _ = cv2.fitEllipse(pts[on].astype(np.float32))
    if min(a, b) > 0 and max(a, b) / min(a, b) < 1.7 and 0.7 * r < (a + b) / 4 < 1.5 * r:
        r = (a + b) / 4
    return x, y, r, float(support)


def _kasa(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle through points (centre x, centre y, radius)."""
    mx, my = x.mean(), y.mean()
    u, v = x - mx, y - my                      # centred coordinates keep the 2x2 normal equations well conditioned
    suu, svv, suv = (u * u).sum(), (v * v).sum(), (u * v).sum()
    r2 = u * u + v * v
    det = suu * svv - suv * suv
    if det <= 1e-9:
        return float(mx), float(my), 0.0
    ru, rv = (u * r2).sum() / 2, (v * r2).sum() / 2
    uc, vc = (ru * svv - rv * suv) / det, (rv * suu - ru * suv) / det
    return float(mx + uc), float(my + vc), float(math.sqrt(uc * uc + vc * vc + r2.mean()))


def _disc_mean(mask: np.ndarray, x: float, y: float, r: float) -> float:
    h, w = mask.shape
    x0, x1, y0, y1 = max(0, int(x - r)), min(w, int(x + r) + 1), max(0, int(y - r)), min(h, int(y + r) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return float(mask[y0:y1, x0:x1][inside].mean()) if inside.any() else 0.0


def _dominant(diameters: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Diameters within +-_MODE_HALF_WIDTH (log) of the weighted mode of their log-density."""
    logs = np.log(diameters)
    grid = np.linspace(logs.min() - 0.2, logs.max() + 0.2, 256)
    density = (weights[None, :] * np.exp(-0.5 * ((grid[:, None] - logs[None, :]) / _MODE_BANDWIDTH) ** 2)).sum(1)
    mode = grid[int(np.argmax(density))]
    near = np.abs(logs - mode) <= _MODE_HALF_WIDTH
    return diameters[near] if near.any() else diameters[[int(np.argmin(np.abs(logs - mode)))]]
