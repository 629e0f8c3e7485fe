"""The pictures of a sample report, as PNG bytes: each image with its boxes (matplotlib, Agg canvas) and the blast
gallery, each blast cell beside its Grad-CAM."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.app.results import CellDetection, SmearResult
from workbench.core.plots import new_figure

log = logging.getLogger(__name__)

THUMB_PX = 900                 # longest side of an image thumbnail
COLOURS = {"blast": "#e62828", "normal": "#28aa3c"}
OTHER_COLOUR, WAITING_COLOUR = "#0078c8", "#f0a000"


def cell_colour(cell: CellDetection) -> str:
    return WAITING_COLOUR if cell.waiting else COLOURS.get(cell.label, OTHER_COLOUR)


def _encoded(fig, photo: bool = False) -> bytes:
    """PNG bytes; JPEG for photographs (a smear thumbnail as PNG is ten times larger, no sharper)."""
    buffer = io.BytesIO()
    if photo:
        fig.savefig(buffer, format="jpg", dpi=150, pil_kwargs={"quality": 88})
    else:
        fig.savefig(buffer, format="png", bbox_inches="tight", dpi=150)
    return buffer.getvalue()


def thumbnail(result: SmearResult, image: np.ndarray | None) -> bytes:
    """JPEG: the image (downscaled) with its cells' boxes after review: red blast, green non-blast, amber unidentified
    (waiting), blue other labels; dashed boxes were reviewed by a person."""
    from matplotlib.patches import Rectangle

    width, height = result.width or 4, result.height or 3
    fig = new_figure(6.0, 6.0 * height / max(width, 1))
    ax = fig.add_axes((0, 0, 1, 1))
    if image is not None:
        step = max(1, int(np.ceil(max(image.shape[:2]) / THUMB_PX)))
        ax.imshow(image[::step, ::step], extent=(0, image.shape[1], image.shape[0], 0), interpolation="antialiased")
    else:
        ax.set_facecolor("#303034")
        ax.text(width / 2, height / 2, "image not found", color="white", ha="center", va="center")
    for cell in result.cells:
        x1, y1, x2, y2 = cell.xyxy
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, edgecolor=cell_colour(cell),
                               ls="--" if cell.reviewed else "-"))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    return _encoded(fig, photo=True)


@dataclass
class GalleryCell:
    image_name: str
    cell: CellDetection
    crop: np.ndarray               # RGB uint8
    cam: np.ndarray | None         # Grad-CAM of the blast class on the crop (0..1), None when not computed


def gallery(cells: Sequence[GalleryCell], columns: int = 4) -> bytes:
    """The blast cells, each as crop | crop with its blast Grad-CAM, with image name, cell id and p_blast."""
    from classification.explain import overlay

    rows = max(1, int(np.ceil(len(cells) / columns)))
    fig = new_figure(7.2, 1.95 * rows)
    for n, item in enumerate(cells):
        ax = fig.add_subplot(rows, columns, n + 1)
        pair = item.crop if item.cam is None else np.concatenate([item.crop, overlay(item.crop, item.cam)], axis=1)
        ax.imshow(pair)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(cell_colour(item.cell))
            spine.set_linewidth(2.0)
        tick = " ✓" if item.cell.reviewed else ""
        ax.set_title(f"{item.image_name} #{item.cell.cell_id}{tick}\np(blast) {item.cell.p_blast:.2f}", fontsize=6.5)
    fig.subplots_adjust(wspace=0.08, hspace=0.45)
    return _encoded(fig)


def load_rgb(path: str | Path) -> np.ndarray | None:
    """The image's pixels, or None when it cannot be read (the report says so instead of failing)."""
    from workbench.core.errors import ImageLoadError
    from workbench.core.images import load_image

    try:
        return load_image(path)
    except (ImageLoadError, OSError) as exc:
        log.warning("report: %s", exc)
        return None
