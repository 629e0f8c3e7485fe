"""Box geometry at the image border (workbench.core.boxes): what a box cut by an edge can still say about its object.

The reference is independent of the formula: a disc is drawn into an image larger than the frame, the frame cuts it,
and the visible piece's bounding box (measured from the pixels) goes in.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workbench.builders.census import BORDER_PIECE_SLACK
from workbench.core.boxes import clear_of_border, round_cell_max_diameter

FRAME_W, FRAME_H = 400, 300


def _visible_box(cx: float, cy: float, diameter: float):
    """The bounding box of the part of a filled disc that falls inside a FRAME_W x FRAME_H frame (pixels, xyxy)."""
    pad = 400
    canvas = np.zeros((FRAME_H + 2 * pad, FRAME_W + 2 * pad), np.uint8)
    cv2.circle(canvas, (int(round(cx + pad)), int(round(cy + pad))), int(round(diameter / 2)), 255, -1)
    frame = canvas[pad:pad + FRAME_H, pad:pad + FRAME_W]
    ys, xs = np.nonzero(frame)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@pytest.mark.parametrize("diameter", [60, 120, 180])
@pytest.mark.parametrize("visible", [0.15, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("edge", ["left", "right", "top", "bottom"])
def test_cut_disc_bound_is_its_diameter(diameter, visible, edge):
    """A disc cut by one edge: the bound is its diameter (it bounds) up to the pixel rounding of a shallow piece
    (a 60 px disc seen 9 px deep: 7%; what census.BORDER_PIECE_SLACK allows for), and close to it while at most
    half shows (it is useful)."""
    depth = visible * diameter
    centre = {"left": (depth - diameter / 2, 150), "right": (FRAME_W - depth + diameter / 2, 150),
              "top": (200, depth - diameter / 2), "bottom": (200, FRAME_H - depth + diameter / 2)}[edge]
    box = _visible_box(*centre, diameter)
    assert not clear_of_border(box, FRAME_W, FRAME_H, 10)
    bound = round_cell_max_diameter(box, FRAME_W, FRAME_H, 10)
    assert bound >= diameter * (1 - BORDER_PIECE_SLACK)
    if visible <= 0.5:
        assert bound <= diameter * 1.05 + 3
    else:
        assert bound <= diameter * 1.4


def test_platelet_piece_cannot_be_a_white_cell():
    """ALL-IDB1 Im094_0 (Canon, red cells 175 px): the census's box at the left edge, 74 x 72 px, is a platelet.
    Whatever round object it is a piece of is at most ~92 px across: half a red cell, no white cell."""
    bound = round_cell_max_diameter((0.0, 1125.7, 73.9, 1197.9), 2592, 1944, 10)
    assert bound == pytest.approx(73.9 + 72.2 ** 2 / (4 * 73.9), abs=0.01)
    assert bound < 0.6 * 175


def test_whole_box_and_corner_piece_bound_nothing():
    assert round_cell_max_diameter((50, 50, 100, 100), FRAME_W, FRAME_H, 10) is None      # clear of every edge
    assert round_cell_max_diameter((0, 0, 30, 30), FRAME_W, FRAME_H, 10) is None          # cut by two edges
    assert round_cell_max_diameter((0, 100, 0, 140), FRAME_W, FRAME_H, 10) is None        # no depth at all
