"""Tiling on a real 2592x1944 ALL-IDB1 smear: every cell is reported once, including cells across tile borders.

The tile predictor here is an "oracle" that finds stained white cells by colour (HSV threshold + connected
components) in whatever pixels it is given, exactly as a detector sees a tile: a cell cut by a tile edge yields a cut
box. Running the same oracle on the whole image gives the known answer the merged tiles must reproduce.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workbench.core.boxes import pairwise_overlaps
from detection.tiling import TilingConfig, merge_tile_boxes, predict_tiled, should_tile, tile_grid
from workbench.core.images import load_image

MIN_AREA = 1500  # px: platelets and stain debris are smaller than any white cell at this magnification


def stained_cells(image_bgr: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
    mask = cv2.inRange(hsv, np.array((115, 70, 0)), np.array((175, 255, 210)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    stats = stats[1:][stats[1:, 4] > MIN_AREA]
    return np.array([[x, y, x + w, y + h, 0.9] for x, y, w, h, _ in stats], dtype=np.float64).reshape(-1, 5)


class OracleTiles:
    def __init__(self):
        self.calls = []

    def __call__(self, tiles):
        self.calls.append(len(tiles))
        return [stained_cells(t) for t in tiles]


@pytest.fixture(scope="module")
def smear_bgr(allidb1_canon_image):
    return np.ascontiguousarray(load_image(allidb1_canon_image)[:, :, ::-1])


def test_grid_covers_image_with_overlap():
    windows = tile_grid(2592, 1944, 640, 0.25)
    covered = np.zeros((1944, 2592), bool)
    for x0, y0, x1, y1 in windows:
        assert x1 - x0 == 640 and y1 - y0 == 640
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in windows})
    assert all(b - a <= 480 for a, b in zip(xs, xs[1:]))  # neighbours share >= 160 px


def test_auto_mode_tiles_large_images_only():
    auto = TilingConfig(mode="auto")
    assert should_tile(2592, 1944, 640, auto)
    assert should_tile(1712, 1368, 640, auto)
    assert not should_tile(640, 480, 640, auto)
    assert not should_tile(2592, 1944, 640, TilingConfig(mode="off"))
    assert should_tile(800, 600, 640, TilingConfig(mode="on"))
    with pytest.raises(ValueError):
        TilingConfig(mode="sometimes")


def test_tiled_cells_equal_whole_image_cells(smear_bgr):
    whole = stained_cells(smear_bgr)
    oracle = OracleTiles()
    boxes, confs, n_tiles = predict_tiled(smear_bgr, oracle, 640, TilingConfig(batch=8), iou_threshold=0.5)
    assert n_tiles == len(tile_grid(2592, 1944, 640, 0.25)) > 1
    assert max(oracle.calls) == 8 and sum(oracle.calls) == n_tiles  # tiles are batched, not one call per tile
    assert len(whole) >= 15
    assert len(boxes) == len(whole)  # no cell lost, none counted twice
    iou, _ = pairwise_overlaps(whole[:, :4], boxes)
    assert (iou.max(axis=1) > 0.9).all()


def test_cell_across_tile_border_is_reported_once(smear_bgr):
    whole = stained_cells(smear_bgr)
    windows = tile_grid(2592, 1944, 640, 0.25)
    inner_x_edges = sorted({x1 for *_, x1, _ in windows if x1 < 2592} | {x0 for x0, *_ in windows if x0 > 0})
    crossing = [b for b in whole if any(b[0] < e < b[2] for e in inner_x_edges)]
    assert crossing, "the test image must have a cell lying across a tile border"
    oracle = OracleTiles()
    raw_pieces = []

    def recording(tiles):
        out = oracle(tiles)
        raw_pieces.extend(out)
        return out

    boxes, _, _ = predict_tiled(smear_bgr, recording, 640, TilingConfig(), iou_threshold=0.5)
    for cell in crossing:
        # before merging, the cell was seen by more than one tile ...
        seen = sum(len(p) for p in raw_pieces)
        assert seen > len(whole)
        # ... after merging it is reported exactly once
        _, ios = pairwise_overlaps(cell[None, :4], boxes)
        assert int((ios[0] > 0.5).sum()) == 1


def test_merge_prefers_whole_box_over_cut_piece():
    whole = np.array([[100.0, 100, 200, 200]])
    piece = np.array([[150.0, 100, 200, 200]])  # the right half, cut by a tile edge at x=200
    boxes, confs = merge_tile_boxes(np.vstack([piece, whole]), np.array([0.95, 0.8]), np.array([True, False]),
                                    np.array([0, 1]), iou_threshold=0.5, ios_threshold=0.6)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], whole[0])


def test_merge_joins_pieces_of_a_cell_larger_than_the_overlap():
    # tiles [0, 640) and [480, 1120) share 160 px; a 400 px cell from x=400 to 800 is cut in both
    left = np.array([[400.0, 100, 640, 220]])
    right = np.array([[480.0, 100, 800, 220]])
    boxes, _ = merge_tile_boxes(np.vstack([left, right]), np.array([0.9, 0.9]), np.array([True, True]),
                                np.array([0, 1]), iou_threshold=0.5, ios_threshold=0.6)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [400, 100, 800, 220])


def test_two_touching_cells_in_one_tile_stay_two():
    a = np.array([[100.0, 100, 200, 200]])
    b = np.array([[190.0, 100, 290, 200]])
    boxes, _ = merge_tile_boxes(np.vstack([a, b]), np.array([0.9, 0.8]), np.array([False, False]),
                                np.array([0, 0]), iou_threshold=0.5, ios_threshold=0.6)
    assert len(boxes) == 2
