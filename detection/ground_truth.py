"""Detection ground truth: a split of an ultralytics data yaml (YOLO labels, optional `ignore/` regions) or of a
Pascal VOC folder, as GtImage boxes in pixels, and the regions nobody could label (ignored like COCO's crowds).

COCO ids: images, annotations and categories are numbered from 1. pycocotools records a matched ground truth by its
annotation id and treats id 0 as "unmatched", so a ground-truth id of 0 would silently count as a miss.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from workbench.builders.bccd import DUPLICATE_IOU
from workbench.core.boxes import box_iou, pairwise_overlaps
from workbench.core.errors import DatasetFormatError, LabelFileError
from workbench.core.images import IMAGE_EXTENSIONS, pil_open
from workbench.core.voc import parse_voc
from workbench.core.yaml_io import load_yaml_file, short_error

log = logging.getLogger(__name__)

IOU_MATCH = 0.5
XYXY = tuple[float, float, float, float]

__all__ = ["GroundTruth", "GtImage", "drop_ignored", "load_ground_truth", "load_voc_split", "load_yolo_split",
           "read_yolo_labels"]


def _read_text(path: Path, encoding: str = "utf-8-sig") -> str:
    """A label / list file's text; one that is not UTF-8 is a DatasetFormatError naming it (a label file is
    outside input: it may be anything)."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path}: not UTF-8 text") from None


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


# --------------------------------------------------------------------------------------------------------------------
# ground truth


@dataclass
class GtImage:
    image_id: int                                   # 1-based (see module docstring)
    path: Path
    width: int
    height: int
    boxes: list[tuple[XYXY, int]] = field(default_factory=list)  # (xyxy pixels, class index)
    # regions whose content nobody could label (e.g. a stained blob that may be one cell or several): a prediction
    # lying mostly inside one and matching no labelled box is neither right nor wrong, as COCO's iscrowd regions
    ignore: list[XYXY] = field(default_factory=list)


@dataclass
class GroundTruth:
    """The labelled images of one split, boxes in pixels, classes in id order (names lowercased)."""

    class_names: list[str]
    images: list[GtImage]
    data: str
    split: str
    source: str                                     # "yolo" | "voc"
    # what was repaired or missing while loading, reported in metrics.json rather than hidden
    notes: dict[str, Any] = field(default_factory=dict)

    def instances(self) -> list[int]:
        counts = [0] * len(self.class_names)
        for image in self.images:
            for _, c in image.boxes:
                counts[c] += 1
        return counts

    def images_with(self) -> list[int]:
        """Per class, how many images hold at least one box of it."""
        return [sum(any(c == k for _, c in image.boxes) for image in self.images) for k in range(len(self.class_names))]

    def to_coco(self) -> dict[str, Any]:
        annotations = []
        for image in self.images:
            for xyxy, c in image.boxes:
                x1, y1, x2, y2 = xyxy
                w, h = x2 - x1, y2 - y1
                annotations.append({"id": len(annotations) + 1, "image_id": image.image_id, "category_id": c + 1,
                                    "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
        return {
            "info": {"description": f"{self.data} [{self.split}] ground truth", "source": self.source},
            "licenses": [],
            "images": [{"id": i.image_id, "file_name": i.path.name, "path": str(i.path), "width": i.width,
                        "height": i.height} for i in self.images],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(self.class_names)],
            "annotations": annotations,
        }

    def select(self, classes: Sequence[str]) -> "GroundTruth":
        """The same images with only `classes` (renumbered in the given order). Raises DatasetFormatError when the
        data does not have one of them."""
        wanted = [c.lower() for c in classes]
        missing = [c for c in wanted if c not in self.class_names]
        if missing:
            raise DatasetFormatError(f"{self.data}: classes {self.class_names} do not include {missing} (the "
                                     f"model's classes are {wanted})")
        remap = {self.class_names.index(c): k for k, c in enumerate(wanted)}
        images = [GtImage(i.image_id, i.path, i.width, i.height, [(b, remap[c]) for b, c in i.boxes if c in remap],
                          list(i.ignore)) for i in self.images]
        # per-class repair counts follow the selection; other notes (e.g. missing label files) stay as they are
        notes = {key: ({c: n for c, n in value.items() if c in wanted} if isinstance(value, dict) else value)
                 for key, value in self.notes.items()}
        return GroundTruth(wanted, images, self.data, self.split, self.source, notes)


def load_ground_truth(data: Path | str, split: str = "test", classes: Sequence[str] | None = None) -> GroundTruth:
    """`data` is an ultralytics data yaml (YOLO labels) or a Pascal VOC folder holding Annotations/, JPEGImages/ and
    ImageSets/Main/<split>.txt (BCCD as published). `classes` (optional) keeps only those classes, in that order."""
    data = Path(data).expanduser()
    if data.is_dir() and not (data / "Annotations").is_dir() and (data / "data.yaml").is_file():
        data = data / "data.yaml"  # a YOLO dataset folder: its data yaml
    if data.is_dir():
        gt = load_voc_split(data, split)
    elif data.suffix.lower() in (".yaml", ".yml"):
        if not data.is_file():
            raise DatasetFormatError(f"data yaml not found: {data}")
        gt = load_yolo_split(data, split)
    elif not data.exists():
        raise DatasetFormatError(f"data not found: {data}")
    else:
        raise DatasetFormatError(f"{data} is neither an ultralytics data yaml nor a Pascal VOC folder")
    return gt.select(classes) if classes is not None else gt


def _names_list(names: Any, where: Path) -> list[str]:
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}: 'names' keys must be class ids 0..N-1") from None
        if ids != list(range(len(ids))):
            raise DatasetFormatError(f"{where}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        values = [names[k] if k in names else names[str(k)] for k in ids]
    elif isinstance(names, list):
        values = names
    else:
        raise DatasetFormatError(f"{where}: 'names' must be a list or an id -> name mapping")
    out = [str(v).strip().lower() for v in values]
    if not out or any(not n for n in out) or len(set(out)) != len(out):
        raise DatasetFormatError(f"{where}: 'names' must be distinct non-empty class names, got {values}")
    return out


def _dataset_root(data_yaml: Path, raw: dict) -> Path:
    # ultralytics falls back to its global datasets folder for a relative path; we never look outside what the
    # user gave: a relative `path` is taken from the yaml's folder (or the working folder, as ultralytics does).
    given = raw.get("path")
    if not given:
        return data_yaml.parent.resolve()
    root = Path(str(given)).expanduser()
    if root.is_absolute():
        return root
    for base in (data_yaml.parent, Path.cwd()):
        if (base / root).exists():
            return (base / root).resolve()
    return (data_yaml.parent / root).resolve()


def _split_images(entry: str, root: Path, data_yaml: Path) -> list[Path]:
    source = Path(entry).expanduser()
    source = source if source.is_absolute() else root / source
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if source.is_file() and source.suffix.lower() == ".txt":  # a list of image paths, as ultralytics accepts
        images = []
        for line in _read_text(source).splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                images.append(p if p.is_absolute() else (source.parent / p))
        return images
    raise DatasetFormatError(f"{data_yaml}: split source {source} is neither a folder of images nor a .txt list")


def _ignore_path(label: Path) -> Path:
    parts = list(label.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            parts[i] = "ignore"
            return Path(*parts)
    return label.with_suffix(".ignore")


def _ignored(pred_xyxy: list[float], gt_boxes: list[XYXY], ignore: list[XYXY], iou_match: float) -> bool:
    """A prediction mostly (>= 50 % of its area) inside an ignore region that matches no labelled box."""
    if not ignore:
        return False
    if any(box_iou(pred_xyxy, g) >= iou_match for g in gt_boxes):
        return False
    x1, y1, x2, y2 = pred_xyxy
    area = max(1e-9, (x2 - x1) * (y2 - y1))
    for a1, b1, a2, b2 in ignore:
        inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
        if inter / area >= 0.5:
            return True
    return False


def drop_ignored(gt: GroundTruth, predictions: list[dict[str, Any]], iou_match: float = IOU_MATCH
                 ) -> tuple[list[dict[str, Any]], int]:
    """`predictions` without those in an ignore region of their image (see GtImage.ignore), and how many went."""
    by_id = {i.image_id: i for i in gt.images}
    kept, dropped = [], 0
    for p in predictions:
        image = by_id.get(int(p["image_id"]))
        if image is not None and _ignored(_xyxy(p["bbox"]), [b for b, _ in image.boxes], image.ignore, iou_match):
            dropped += 1
            continue
        kept.append(p)
    return kept, dropped


def _label_path(image: Path) -> Path:
    # ultralytics' img2label_paths: the last /images/ of the path becomes /labels/, the suffix .txt
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with pil_open(path) as im:  # header only
            return im.size
    except FileNotFoundError:
        raise DatasetFormatError(f"image not found: {path}") from None
    except OSError as exc:
        raise DatasetFormatError(f"{path}: not a readable image ({exc})") from None


def read_yolo_labels(path: Path, n_classes: int, width: int, height: int) -> list[tuple[XYXY, int]]:
    """`class cx cy w h` lines (normalised) -> pixel boxes. Raises DatasetFormatError naming the file and line."""
    boxes = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetFormatError(f"{path}:{number}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            cls_f = float(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DatasetFormatError(f"{path}:{number}: not numbers: {line.strip()!r}") from None
        if not cls_f.is_integer() or not 0 <= cls_f < n_classes:
            raise DatasetFormatError(f"{path}:{number}: class id {fields[0]} is out of range: the names list "
                                     f"has {n_classes} class(es), ids 0..{n_classes - 1}")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise DatasetFormatError(f"{path}:{number}: box {fields[1:]} must be finite with positive size")
        boxes.append(((( cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height),
                      int(cls_f)))
    return boxes


def load_yolo_split(data_yaml: Path | str, split: str = "test") -> GroundTruth:
    """Ground truth of one split of an ultralytics data yaml (`path`, `train`/`val`/`test` as a folder, a .txt list
    or a list of those, `names`). An image without a label file has no boxes (as in ultralytics) and is noted."""
    data_yaml = Path(data_yaml)
    try:
        raw = load_yaml_file(data_yaml)
    except FileNotFoundError:
        raise DatasetFormatError(f"data yaml not found: {data_yaml}") from None
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{data_yaml}: not UTF-8 text") from None
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetFormatError(f"{data_yaml}: cannot read data yaml ({short_error(exc)})") from None
    if not isinstance(raw, dict) or "names" not in raw:
        raise DatasetFormatError(f"{data_yaml}: not an ultralytics data yaml (no 'names')")
    names = _names_list(raw["names"], data_yaml)
    if not raw.get(split):
        raise DatasetFormatError(f"{data_yaml}: has no '{split}' split")
    root = _dataset_root(data_yaml, raw)
    entries = raw[split] if isinstance(raw[split], list) else [raw[split]]
    paths: list[Path] = []
    for entry in entries:
        paths += _split_images(str(entry), root, data_yaml)
    if not paths:
        raise DatasetFormatError(f"{data_yaml}: the '{split}' split holds no images")
    images, no_label_file = [], []
    for path in paths:
        width, height = _image_size(path)
        label = _label_path(path)
        if label.is_file():
            boxes = read_yolo_labels(label, len(names), width, height)
        else:
            boxes = []
            no_label_file.append(path.name)
        ignore_file = _ignore_path(label)   # optional: `ignore/` beside `labels/`, same format
        ignore = [b for b, _ in read_yolo_labels(ignore_file, len(names), width, height)] if ignore_file.is_file() \
            else []
        images.append(GtImage(len(images) + 1, path, width, height, boxes, ignore))
    if no_label_file:
        log.warning("%s [%s]: %d image(s) have no label file and count as images without objects (e.g. %s)",
                    data_yaml, split, len(no_label_file), no_label_file[:3])
    return GroundTruth(names, images, str(data_yaml), split, "yolo", {"images_without_label_file": no_label_file})


def load_voc_split(voc_root: Path | str, split: str = "test") -> GroundTruth:
    """Ground truth of a Pascal VOC folder's split (ImageSets/Main/<split>.txt). Class names are lowercased and
    numbered in order of first appearance. Boxes are repaired exactly as the BCCD converter does (clipped to the
    image, zero-area and duplicate boxes of a class with IoU >= 0.9 dropped), so the VOC folder and its YOLO build
    give the same ground truth; the repairs are counted in `notes`."""
    root = Path(voc_root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not (root / "Annotations").is_dir():
        raise DatasetFormatError(f"{root} is not a Pascal VOC folder (no Annotations/)")
    if not split_file.is_file():
        raise DatasetFormatError(f"{split_file} not found: the VOC folder has no '{split}' split")
    stems = list(dict.fromkeys(s.strip() for s in _read_text(split_file).splitlines() if s.strip()))
    names: list[str] = []
    images = []
    notes: dict[str, dict[str, int]] = {"clipped": {}, "dropped_degenerate": {}, "dropped_duplicates": {}}
    for stem in stems:
        image_path = root / "JPEGImages" / f"{stem}.jpg"
        if not image_path.is_file():
            found = [p for p in (root / "JPEGImages").glob(f"{stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
            if not found:
                raise DatasetFormatError(f"{image_path} not found (listed in {split_file})")
            image_path = found[0]
        width, height = _image_size(image_path)  # the JPEG's size wins over the XML's, as in the converter
        try:
            annotation = parse_voc(root / "Annotations" / f"{stem}.xml")
        except LabelFileError as exc:
            raise DatasetFormatError(str(exc)) from None
        kept: list[tuple[XYXY, int]] = []
        for obj in annotation.objects:
            name = obj.name.strip().lower()
            if name not in names:
                names.append(name)
            c = names.index(name)
            x1, y1, x2, y2 = obj.xyxy
            box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
                   min(max(x2, 0.0), width), min(max(y2, 0.0), height))
            if box[2] <= box[0] or box[3] <= box[1]:
                _count(notes["dropped_degenerate"], name)
                continue
            same = np.array([b for b, k in kept if k == c]).reshape(-1, 4)
            if len(same) and pairwise_overlaps(np.array([box]), same)[0].max() >= DUPLICATE_IOU:
                _count(notes["dropped_duplicates"], name)
                continue
            if box != (x1, y1, x2, y2):
                _count(notes["clipped"], name)
            kept.append((box, c))
        images.append(GtImage(len(images) + 1, image_path, width, height, kept))
    if not images:
        raise DatasetFormatError(f"{split_file} lists no images")
    return GroundTruth(names, images, str(root), split, "voc", notes)


def _count(counter: dict[str, int], name: str) -> None:
    counter[name] = counter.get(name, 0) + 1
