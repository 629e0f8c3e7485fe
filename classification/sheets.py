"""Contact sheets of the crops a classifier gets most wrong: the non-blast cells it finds most blast-like and the
blasts it finds least blast-like, each captioned with its group, cell type and p_blast. What a reviewer looks at
to say which kinds of cells are still confused."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

TILE = 128
COLUMNS = 8


def _tile(path: Path, caption: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    tile = np.full((TILE + 24, TILE, 3), 255, np.uint8)
    if image is not None:
        tile[24:] = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
    for row, text in enumerate((caption[:24], caption[24:48])):
        cv2.putText(tile, text, (2, 10 + 11 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def hardest_sheet(out: Path, samples: Sequence, p_blast: np.ndarray, blast: bool, n: int = 40) -> int:
    """Write a sheet (JPEG, BGR) of the `n` crops of the given truth (blast or not) ranked worst first: highest
    p_blast for non-blasts, lowest for blasts. Returns how many crops it shows."""
    index = [i for i, s in enumerate(samples) if (s.label == "blast") == blast]
    index.sort(key=lambda i: p_blast[i], reverse=not blast)
    index = index[:n]
    if not index:
        return 0
    tiles = [_tile(samples[i].path, f"{p_blast[i]:.2f} {samples[i].cell_type or samples[i].label} "
                                    f"{samples[i].group}") for i in index]
    rows = -(-len(tiles) // COLUMNS)
    h, w = tiles[0].shape[:2]
    sheet = np.full((rows * h, COLUMNS * w, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, COLUMNS)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    cv2.imwrite(str(out), sheet)
    return len(index)
