"""Label files -> boxes in the one results schema (CellDetection), ready for ProjectStore.replace_cells.

Formats: YOLO txt (class index per the project's label list, normalised cx cy w h), Pascal VOC xml
(detection.voc.parse_voc), COCO json, and ALL-IDB style point files (.xyc, one `x y` per line), which become boxes
with the dataset builder's point->box method (detection.allidb.point_to_box). Class names from a file are mapped
to project labels with `label_map` (names not in the map keep their name, lower-cased; a map value None drops the
box, e.g. {"RBC": None, "Platelets": None, "WBC": "normal"} for BCCD).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from detection.errors import LabelFileError
from detection.voc import parse_voc
from workbench.results import CellDetection

LabelMap = Mapping[str, "str | None"]


def imported_cell(cell_id: int, xyxy: Sequence[float], label: str) -> CellDetection:
    """A box from a label file: certain (det_conf = label_conf = 1), p_blast 1 for a blast."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return CellDetection(cell_id=cell_id, xyxy=(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),
                         det_conf=1.0, label=label, label_conf=1.0, p_blast=1.0 if label == "blast" else 0.0)


def _map(name: str, label_map: LabelMap | None) -> str | None:
    if label_map is not None and name in label_map:
        return label_map[name]
    return name.strip().lower()


def import_voc(path: Path | str, label_map: LabelMap | None = None) -> tuple[str, int, int, list[CellDetection]]:
    """(image file name, width, height, boxes) of a VOC xml file."""
    ann = parse_voc(path)
    cells = []
    for obj in ann.objects:
        label = _map(obj.name, label_map)
        if label is not None:
            cells.append(imported_cell(len(cells), obj.xyxy, label))
    return ann.filename, ann.width, ann.height, cells


def import_yolo(path: Path | str, width: int, height: int, names: Sequence[str],
                label_map: LabelMap | None = None) -> list[CellDetection]:
    """Boxes of a YOLO txt file (`cls cx cy w h`, normalised) for an image of width x height; `names[cls]` is
    the class name (the data yaml's names)."""
    path = Path(path)
    cells = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
            name = names[cls]
        except (ValueError, IndexError):
            raise LabelFileError(f"{path}:{number}: expected 'class cx cy w h' with a class < {len(names)}, "
                                 f"got {line!r}") from None
        label = _map(name, label_map)
        if label is None:
            continue
        cells.append(imported_cell(len(cells), ((cx - w / 2) * width, (cy - h / 2) * height,
                                                (cx + w / 2) * width, (cy + h / 2) * height), label))
    return cells


def import_coco(path: Path | str, label_map: LabelMap | None = None) -> dict[str, tuple[int, int, list[CellDetection]]]:
    """COCO json -> {image file name: (width, height, boxes)} (bbox = x, y, w, h in pixels)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        images = {im["id"]: im for im in data["images"]}
        out = {im["file_name"]: (int(im.get("width", 0)), int(im.get("height", 0)), []) for im in images.values()}
        for ann in data.get("annotations", []):
            label = _map(categories[ann["category_id"]], label_map)
            if label is None:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            cells = out[images[ann["image_id"]]["file_name"]][2]
            cells.append(imported_cell(len(cells), (x, y, x + w, y + h), label))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabelFileError(f"{path}: not a COCO detection file ({exc!r})") from exc
    return out


def read_points(path: Path | str) -> list[tuple[float, float]]:
    """The points of an ALL-IDB .xyc file (`x y` per line, tab, space or comma separated)."""
    from detection.allidb import read_xyc

    return read_xyc(path)


def import_points(image_rgb, points: Sequence[tuple[float, float]], label: str = "blast",
                  kind: str = "blast") -> tuple[list[CellDetection], int]:
    """Boxes grown from marked points (ALL-IDB .xyc) with the dataset builder's point->box method; returns the
    boxes and how many points gave no white-cell box (platelets, failed segmentations)."""
    from detection.allidb import point_to_box, stain_map

    stain = stain_map(image_rgb)
    cells, missed = [], 0
    for i, (x, y) in enumerate(points):
        others = [p for j, p in enumerate(points) if j != i]
        box = point_to_box(image_rgb, x, y, kind=kind, neighbours=others, stain=stain)
        if box is None:
            missed += 1
            continue
        cells.append(imported_cell(len(cells), box.xyxy, label))
    return cells, missed


def import_label_folder(store, images: Sequence[Path | str], labels_dir: Path | str, *,
                        names: Sequence[str] | None = None, label_map: LabelMap | None = None,
                        point_label: str = "blast") -> dict[str, int]:
    """Import the label file of each image from `labels_dir` into a ProjectStore (added images keep their boxes
    replaced in one audited transaction each). Per image stem the first of `<stem>.xml` (VOC), `<stem>.txt` (YOLO,
    classes `names`, default the project's labels) and `<stem>.xyc` (ALL-IDB points -> boxes) is used; a COCO json
    in `labels_dir` (`*.json`) covers the images it lists. Returns {image name: boxes imported}; images without a
    label file are left as they are."""
    labels_dir = Path(labels_dir)
    coco: dict[str, tuple[int, int, list[CellDetection]]] = {}
    for path in sorted(labels_dir.glob("*.json")):
        coco.update(import_coco(path, label_map))
    names = list(names or store.labels)
    out: dict[str, int] = {}
    for image in map(Path, images):
        stem = image.stem
        width = height = 0
        if (labels_dir / f"{stem}.xml").is_file():
            _name, width, height, cells = import_voc(labels_dir / f"{stem}.xml", label_map)
            kind = "voc"
        elif (labels_dir / f"{stem}.txt").is_file() or (labels_dir / f"{stem}.xyc").is_file():
            from PIL import Image

            with Image.open(image) as im:
                width, height = im.size
                rgb = im.convert("RGB") if (labels_dir / f"{stem}.xyc").is_file() else None
            if (labels_dir / f"{stem}.txt").is_file():
                cells, kind = import_yolo(labels_dir / f"{stem}.txt", width, height, names, label_map), "yolo"
            else:
                import numpy as np

                cells = import_points(np.asarray(rgb), read_points(labels_dir / f"{stem}.xyc"), point_label)[0]
                kind = "xyc"
        elif image.name in coco:
            width, height, cells = coco[image.name]
            kind = "coco"
        else:
            continue
        for label in dict.fromkeys(c.label for c in cells):
            store.add_label(label)
        entry = store.add_image(image, width, height)
        store.replace_cells(entry.id, cells, f"import {kind}", "import")
        out[image.name] = len(cells)
    return out
