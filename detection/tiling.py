"""Analysing images larger than the network input in overlapping native-resolution tiles, and merging the boxes.

Why this works: neighbouring tiles share `overlap` of their side. Any cell narrower than that overlap lies wholly
inside at least one tile, so a box touching an *inner* tile edge (an edge that is not the image border) is a cut
cell whose whole version is found by a neighbour. Merging therefore prefers uncut boxes; cut pieces of a cell
larger than the overlap are joined into their union, so no cell is dropped and none is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from workbench.core.boxes import pairwise_overlaps

# (tiles as HxWx3 arrays) -> one (N, 5) array per tile: x1, y1, x2, y2 (tile pixels), conf
TilePredictor = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


@dataclass
class TilingConfig:
    mode: str = "auto"          # auto | on | off
    tile_factor: float = 1.5    # auto tiles when an image side exceeds tile_factor * tile size
    overlap: float = 0.25       # fraction of the tile side shared by neighbours
    batch: int = 8              # tiles per forward pass
    edge_margin: float = 4.0    # px from an inner tile edge within which a box counts as cut
    merge_ios: float = 0.6      # intersection-over-smaller above which boxes from different tiles are one cell

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "on", "off"):
            raise ValueError(f"tiling mode must be auto, on or off, not {self.mode!r}")
        if not 0.0 <= self.overlap < 0.9:
            raise ValueError(f"tiling overlap must be in [0, 0.9), not {self.overlap}")


def should_tile(width: int, height: int, tile: int, config: TilingConfig) -> bool:
    if config.mode == "off":
        return False
    if config.mode == "on":
        return max(width, height) > tile
    return max(width, height) > config.tile_factor * tile


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # last tile flush with the border, so every pixel is covered
    return sorted(set(starts))


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tile windows (x0, y0, x1, y1) covering the image, neighbours overlapping by at least `overlap * tile`."""
    step = max(1, int(round(tile * (1.0 - overlap))))
    return [
        (x0, y0, min(x0 + tile, width), min(y0 + tile, height))
        for y0 in _starts(height, tile, step)
        for x0 in _starts(width, tile, step)
    ]


def _cut_by_inner_edge(box: np.ndarray, window: tuple[int, int, int, int], width: int, height: int,
                       margin: float) -> bool:
    x0, y0, x1, y1 = window
    return bool(
        (x0 > 0 and box[0] <= x0 + margin)
        or (y0 > 0 and box[1] <= y0 + margin)
        or (x1 < width and box[2] >= x1 - margin)
        or (y1 < height and box[3] >= y1 - margin)
    )


def merge_tile_boxes(boxes: np.ndarray, confs: np.ndarray, cut: np.ndarray, tile_ids: np.ndarray,
                     iou_threshold: float, ios_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merge across tiles. Uncut boxes outrank cut ones, then higher confidence. A cluster represented by an
    uncut box keeps that box; a cluster of only cut pieces becomes their union (a cell larger than the overlap)."""
    if len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    order = np.lexsort((-confs, cut.astype(int)))
    iou, ios = pairwise_overlaps(boxes, boxes)
    same_cell = (iou >= iou_threshold) | ((ios >= ios_threshold) & (tile_ids[:, None] != tile_ids[None, :]))
    taken = np.zeros(len(boxes), dtype=bool)
    merged_boxes, merged_confs = [], []
    for i in order:
        if taken[i]:
            continue
        members = np.flatnonzero(same_cell[i] & ~taken)
        members = members[members != i]
        taken[i] = True
        taken[members] = True
        box = boxes[i].copy()
        if cut[i]:
            group = np.concatenate(([i], members[cut[members]]))
            box = np.array([boxes[group, 0].min(), boxes[group, 1].min(), boxes[group, 2].max(), boxes[group, 3].max()])
        merged_boxes.append(box)
        merged_confs.append(confs[np.concatenate(([i], members))].max())
    return np.asarray(merged_boxes, dtype=np.float64), np.asarray(merged_confs, dtype=np.float64)


def predict_tiled(image: np.ndarray, predict_tiles: TilePredictor, tile: int, config: TilingConfig,
                  iou_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Run `predict_tiles` over batched tiles of `image`; returns boxes (N,4) in image pixels, confs (N,), n_tiles."""
    height, width = image.shape[:2]
    windows = tile_grid(width, height, tile, config.overlap)
    all_boxes, all_confs, all_cut, all_tiles = [], [], [], []
    for start in range(0, len(windows), max(1, config.batch)):
        chunk = windows[start:start + config.batch]
        outputs = predict_tiles([image[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk])
        for offset, (window, out) in enumerate(zip(chunk, outputs)):
            if len(out) == 0:
                continue
            out = np.asarray(out, dtype=np.float64)
            shifted = out[:, :4] + np.array([window[0], window[1], window[0], window[1]], dtype=np.float64)
            all_boxes.append(shifted)
            all_confs.append(out[:, 4])
            all_cut.append([_cut_by_inner_edge(b, window, width, height, config.edge_margin) for b in shifted])
            all_tiles.append(np.full(len(out), start + offset))
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0), len(windows)
    boxes, confs = merge_tile_boxes(
        np.concatenate(all_boxes), np.concatenate(all_confs), np.concatenate(all_cut).astype(bool),
        np.concatenate(all_tiles), iou_threshold, config.merge_ios,
    )
    return boxes, confs, len(windows)
