"""The GUI's one class map: how each label is named and coloured in boxes, the gallery and the counts.

The colours are those of the annotated PNGs (`workbench.app.render.LABEL_COLOURS_BGR`, as RGB here so this module
does not need OpenCV at start-up; a test keeps both in step): red for blasts, green for normal cells.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

BLAST, NORMAL = "blast", "normal"

# label -> (display name, RGB)
CLASS_MAP: dict[str, tuple[str, tuple[int, int, int]]] = {
    BLAST: ("Blast", (230, 40, 40)),
    NORMAL: ("Normal", (40, 170, 60)),
}
OTHER_RGB = (0, 120, 200)
SELECTION_RGB = (255, 210, 0)
UNIDENTIFIED_RGB = (235, 140, 0)     # cells in the classifier's unidentified band, waiting for review (render's too)


def label_rgb(label: str) -> tuple[int, int, int]:
    return CLASS_MAP.get(label, (label, OTHER_RGB))[1]


def label_colour(label: str) -> QColor:
    return QColor(*label_rgb(label))


def label_name(label: str) -> str:
    return CLASS_MAP.get(label, (label.capitalize(), OTHER_RGB))[0]


def cell_colour(cell) -> QColor:
    """A cell's colour: its label's, or amber while it waits for review as unidentified."""
    return QColor(*UNIDENTIFIED_RGB) if getattr(cell, "waiting", False) else label_colour(cell.label)
