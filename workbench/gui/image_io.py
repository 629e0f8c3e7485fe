"""Image decoding for the window, run in workers (`workbench.gui.workers.Worker`): the full image with the
pipeline's loader (same conversions and pixel limit) and small previews for the image list."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from PySide6.QtCore import QSize
from PySide6.QtGui import QImage, QImageReader


def numpy_to_qimage(image) -> QImage:
    """RGB uint8 (H, W, 3) -> an independent QImage (safe to hand to the UI thread)."""
    height, width = image.shape[:2]
    qimage = QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return qimage.copy()


def load_qimage(path: Path | str, max_pixels: int | None) -> QImage:
    """One image as the pipeline decodes it; raises ImageLoadError (a WorkbenchError) for a bad file."""
    from workbench.core.images import load_image

    return numpy_to_qimage(load_image(str(path), max_pixels))


def thumbnails(paths: Sequence[str], size: int = 56) -> Iterator[tuple[str, QImage]]:
    """(path, preview) per readable image, decoded at reduced size (fast for JPEG); unreadable files are skipped."""
    for path in paths:
        reader = QImageReader(path)
        reader.setAutoTransform(True)
        full = reader.size()
        if full.isValid() and full.width() > 0 and full.height() > 0:
            scale = size / max(full.width(), full.height())
            reader.setScaledSize(QSize(max(1, round(full.width() * scale)), max(1, round(full.height() * scale))))
        image = reader.read()
        if not image.isNull():
            yield path, image
