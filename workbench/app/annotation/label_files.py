"""One label file for one image -> boxes: the importer is picked by the file's suffix (YOLO .txt, VOC .xml, COCO
.json, ALL-IDB points .xyc). The GUI's "Import labels…" calls this; it knows no Qt and no window."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from workbench.app.annotation import importers
from workbench.app.results import CellDetection
from workbench.core.errors import LabelFileError

LABEL_SUFFIXES = (".txt", ".xml", ".json", ".xyc")
LABEL_FILTER = "Label files (" + " ".join(f"*{s}" for s in LABEL_SUFFIXES) + ");;All files (*)"


def _read_rgb(image_path: Path):
    import cv2   # only the point importer needs the pixels (and OpenCV)

    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise LabelFileError(f"{image_path}: cannot read the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def import_label_file(path: Path | str, image_path: Path | str, width: int, height: int,
                      names: Sequence[str]) -> tuple[list[CellDetection], int]:
    """The boxes that `path` gives the image at `image_path` (width x height px; YOLO needs the size, and `names`
    for its class indices), and how many marked points gave no box (ALL-IDB .xyc; 0 for the other formats). A COCO
    file gives the boxes of the image with the same file name (none if it does not list it). Raises LabelFileError
    (a ValueError) for an unknown suffix or a bad file, OSError for an unreadable one."""
    path, image_path = Path(path), Path(image_path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return importers.import_voc(path)[3], 0
    if suffix == ".txt":
        return importers.import_yolo(path, width, height, names), 0
    if suffix == ".json":
        coco = importers.import_coco(path)
        return (coco[image_path.name][2] if image_path.name in coco else []), 0
    if suffix == ".xyc":
        return importers.import_points(_read_rgb(image_path), importers.read_points(path))
    raise LabelFileError(f"{path.name}: not a YOLO .txt, VOC .xml, COCO .json or ALL-IDB .xyc file")
