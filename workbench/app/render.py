"""Annotated PNGs of a result: boxes coloured by label, label + confidence text, counts in the top-left corner."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from workbench.app.results import SmearResult, write_atomic

# BGR, as OpenCV draws. Red for blasts (what a technician must not miss), green for normal cells.
LABEL_COLOURS_BGR = {"blast": (40, 40, 230), "normal": (60, 170, 40)}
OTHER_COLOUR_BGR = (200, 120, 0)
UNIDENTIFIED_BGR = (0, 140, 235)    # amber: in the classifier's unidentified band, waiting for review


def _text_with_background(canvas: np.ndarray, text: str, org: tuple[int, int], scale: float, thickness: int,
                          colour: tuple[int, int, int]) -> None:
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = org
    x = int(min(max(x, 0), max(canvas.shape[1] - tw - 4, 0)))
    y = int(min(max(y, th + 4), canvas.shape[0] - baseline - 2))
    cv2.rectangle(canvas, (x, y - th - 4), (x + tw + 4, y + baseline), colour, -1)
    cv2.putText(canvas, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def render_result(image_rgb: np.ndarray, result: SmearResult, font_scale: float = 0.6) -> np.ndarray:
    """RGB image with the result drawn on it. Line and text sizes follow the image size so a 2592 px smear is as
    readable as a 640 px one."""
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1]).copy()
    size_factor = max(canvas.shape[:2]) / 640.0
    scale = font_scale * max(1.0, size_factor * 0.8)
    thickness = max(1, int(round(2 * size_factor)))
    text_thickness = max(1, int(round(scale * 1.6)))
    for cell in result.cells:
        colour = UNIDENTIFIED_BGR if cell.waiting else LABEL_COLOURS_BGR.get(cell.label, OTHER_COLOUR_BGR)
        x1, y1, x2, y2 = (int(round(v)) for v in cell.xyxy)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"? {cell.label} {cell.label_conf:.2f}" if cell.waiting else f"{cell.label} {cell.label_conf:.2f}"
        _text_with_background(canvas, text, (x1, y1 - thickness), scale, text_thickness, colour)
    c = result.counts
    waiting = f"  unidentified {c.unidentified}" if c.unidentified else ""
    summary = f"WBC {c.wbc}  blasts {c.blast}  normal {c.normal}{waiting}  ({c.blast_pct:.1f}% blasts)"
    _text_with_background(canvas, summary, (4, 4), scale * 1.1, text_thickness, (40, 40, 40))
    return canvas[:, :, ::-1]


def write_png(path: Path, image_rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"cannot encode PNG for {path}")
    write_atomic(path, encoded.tobytes())
