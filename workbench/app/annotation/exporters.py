"""Reviewed images of a ProjectStore -> training data sets, split by image (never one image in two splits).

- YOLO (ultralytics): `images/<split>/`, `labels/<split>/<stem>.txt`, `data.yaml`. Classes are the project's label
  list in its fixed order, or one class (`single_class="wbc"`, the detector's class map) for all boxes.
- Crops per class (classifier): `<split>/<label>/<stem>_<cell>.png` via workbench.core.crops.crop_cell, plus
  `split.csv` in classification.dataset's layout (what `workbench train classifier --data` reads).
- COCO (`annotations.json`, image ids in path order) and Pascal VOC (`Annotations/<stem>.xml`).

The split is a seeded shuffle of the image paths (`split_images`), so the same project and seed always give the same
split. Every file is written atomically (workbench.core.fileio), so a kill never leaves a half-written label file.

Every exporter writes the same boxes (`boxes_inside`): a box partly outside its image is cut at the border, a box
entirely outside is left out (with a warning naming the image and how many), so no format gets a negative or
out-of-image coordinate, a blank crop or a box another format dropped.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from workbench.app.results import CellDetection
from workbench.core.box_bounds import clip_box
from workbench.core.fileio import write_atomic
from workbench.core.voc import VocAnnotation, VocObject, write_voc
from workbench.app.annotation.store import ImageEntry, ProjectStore

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


def boxes_inside(store: ProjectStore, entry: ImageEntry, width: int, height: int) -> list[CellDetection]:
    """The image's boxes as every exporter writes them: cut to the image; those with nothing inside it left out
    (logged). A box is outside when it only touches the border."""
    kept, dropped = [], 0
    for cell in store.cells(entry.id):
        box = clip_box(cell.xyxy, width, height)
        if box is None:
            dropped += 1
            continue
        kept.append(cell if box == tuple(cell.xyxy) else replace(cell, xyxy=box))
    if dropped:
        log.warning("%s: %d box(es) entirely outside the %dx%d image left out of the export", entry.name, dropped,
                    width, height)
    return kept


def split_images(names: Sequence[str], fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0) -> dict[str, str]:
    """{name: split}: a seeded shuffle of the sorted names cut by `fractions` (train, val, test). With two or more
    images train and val each get at least one."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions!r}")
    names = sorted(set(names))
    random.Random(seed).shuffle(names)
    n = len(names)
    total = float(sum(fractions))
    n_val = round(n * fractions[1] / total)
    n_test = round(n * fractions[2] / total)
    if n >= 2 and fractions[1] > 0:
        n_val = max(n_val, 1)
    n_test = min(n_test, max(n - n_val - 1, 0))
    n_train = n - n_val - n_test
    return {name: ("train" if i < n_train else "val" if i < n_train + n_val else "test")
            for i, name in enumerate(names)}


def _chosen(store: ProjectStore, reviewed_only: bool) -> list[ImageEntry]:
    images = store.images("reviewed") if reviewed_only else [e for e in store.images() if e.status != "new"]
    if not images:
        raise ValueError("no reviewed images to export" if reviewed_only else "no labelled images to export")
    return images


def _image_size(entry: ImageEntry) -> tuple[int, int]:
    if entry.width and entry.height:
        return entry.width, entry.height
    from PIL import Image

    with Image.open(entry.path) as image:
        return image.size


def export_yolo(store: ProjectStore, out: Path | str, *, single_class: str | None = None, reviewed_only: bool = True,
                fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0) -> Path:
    """Write an ultralytics data set; returns its data.yaml."""
    import yaml

    out = Path(out)
    images = _chosen(store, reviewed_only)
    names = [single_class] if single_class else store.labels
    index = {name: i for i, name in enumerate(names)}
    split = split_images([e.name for e in images], fractions, seed)
    for entry in images:
        part = split[entry.name]
        width, height = _image_size(entry)
        lines = []
        for cell in boxes_inside(store, entry, width, height):
            if not single_class and cell.label not in index:
                raise ValueError(f"{entry.name}: label {cell.label!r} is not in the project labels {names}")
            x1, y1, x2, y2 = cell.xyxy
            cls = 0 if single_class else index[cell.label]
            lines.append(f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                         f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        write_atomic(out / "images" / part / entry.name, entry.path.read_bytes())
        write_atomic(out / "labels" / part / f"{Path(entry.name).stem}.txt", "".join(l + "\n" for l in lines))
    used = sorted(set(split.values()), key=SPLITS.index)
    data = {"path": str(out.resolve()), **{s: f"images/{s}" for s in used}, "names": dict(enumerate(names))}
    if "val" not in data:
        data["val"] = data["train"]
    write_atomic(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    _write_split_csv(out / "split.csv", split)
    return out / "data.yaml"


def export_crops(store: ProjectStore, out: Path | str, *, size: int = 300, margin: float = 0.15,
                 reviewed_only: bool = True, fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 0) -> Path:
    """Write one crop per box into `<split>/<label>/` (workbench.core.crops.crop_cell, padded with the image's
    median colour); returns `split.csv` in classification.dataset's layout, so `workbench train classifier --data
    <out>` trains on it. Boxes of a label outside classification's class map are cropped but left out of split.csv."""
    import cv2
    import numpy as np

    from workbench.core.crops import crop_cells
    from classification.dataset import CLASS_NAMES, CSV_FIELDS, CropRecord

    out = Path(out)
    images = _chosen(store, reviewed_only)
    split = split_images([e.name for e in images], fractions, seed)
    records = []
    for entry in images:
        if not store.cells(entry.id):
            continue
        bgr = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{entry.path}: cannot read image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        cells = boxes_inside(store, entry, rgb.shape[1], rgb.shape[0])   # never a blank crop of outside pixels
        crops = crop_cells(rgb, [c.xyxy for c in cells], margin, size)
        for cell, crop in zip(cells, crops):
            rel = f"{split[entry.name]}/{cell.label}/{Path(entry.name).stem}_{cell.cell_id}.png"
            ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"cannot encode crop {rel}")
            write_atomic(out / rel, png.tobytes())
            if cell.label in CLASS_NAMES:
                records.append(CropRecord(rel, cell.label, split[entry.name], "project", entry.name, *cell.xyxy))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in sorted(records, key=lambda r: (SPLITS.index(r.split), r.file)):
        writer.writerow(record.row())
    write_atomic(out / "split.csv", buffer.getvalue())
    return out / "split.csv"


def export_coco(store: ProjectStore, path: Path | str, *, reviewed_only: bool = True) -> Path:
    path = Path(path)
    labels = store.labels
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(labels)]
    images, annotations = [], []
    for image_id, entry in enumerate(_chosen(store, reviewed_only), 1):
        width, height = _image_size(entry)
        images.append({"id": image_id, "file_name": entry.name, "width": width, "height": height})
        for cell in boxes_inside(store, entry, width, height):
            if cell.label not in labels:
                raise ValueError(f"{entry.name}: label {cell.label!r} is not in the project labels {labels}")
            x1, y1, x2, y2 = cell.xyxy
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": labels.index(cell.label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    write_atomic(path, json.dumps({"images": images, "annotations": annotations, "categories": categories}, indent=1))
    return path


def export_voc(store: ProjectStore, out: Path | str, *, reviewed_only: bool = True) -> Path:
    out = Path(out)
    for entry in _chosen(store, reviewed_only):
        width, height = _image_size(entry)
        objects = [VocObject(c.label, tuple(float(v) for v in c.xyxy))
                   for c in boxes_inside(store, entry, width, height)]
        write_voc(out / "Annotations" / f"{Path(entry.name).stem}.xml",
                  VocAnnotation(filename=entry.name, width=width, height=height, objects=objects))
    return out / "Annotations"


def _write_split_csv(path: Path, split: dict[str, str]) -> None:
    write_atomic(path, "image,split\n" + "".join(f"{k},{v}\n" for k, v in sorted(split.items())))
