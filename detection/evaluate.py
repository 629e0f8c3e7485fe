"""Detection evaluation: ground truth from a YOLO data yaml or a Pascal VOC folder, COCO-style AP with pycocotools,
precision / recall at an operating confidence and at the best-F1 confidence, confusion matrix, plots.

AP50 and AP50-95 come from pycocotools' COCOeval (101 recall points, IoU .50:.05:.95, area "all"), never from our
own code: they are the numbers papers quote, so they must be the reference implementation's. Everything pycocotools
needs is written beside the metrics (`gt_coco.json`, `predictions.json`), so anyone can recompute them.

Precision / recall at a confidence use greedy matching per image and class: predictions in decreasing confidence
each take the unmatched ground-truth box of highest IoU, if that IoU is >= `iou_match`. Because a prediction's match
never depends on lower-confidence predictions, the matches at any threshold are a prefix of the matches at the
lowest one, so one pass over the low-confidence predictions gives P/R at every threshold exactly.

COCO ids: images, annotations and categories are numbered from 1. pycocotools records a matched ground truth by its
annotation id and treats id 0 as "unmatched", so a ground-truth id of 0 would silently count as a miss.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from PIL import Image

from detection.bccd import DUPLICATE_IOU
from detection.boxes import pairwise_overlaps
from detection.errors import LabelFileError
from detection.fileio import csv_text, write_atomic
from detection.voc import parse_voc

__all__ = [
    "AP_CONF",
    "COCO_MAX_DETS",
    "ClassMetrics",
    "DatasetFormatError",
    "DetectionMetrics",
    "GroundTruth",
    "GtImage",
    "IMAGE_SUFFIXES",
    "Predictor",
    "evaluate_detections",
    "greedy_match",
    "load_ground_truth",
    "load_voc_split",
    "load_yolo_split",
    "coco_eval",
    "new_figure",
    "read_yolo_labels",
    "save_figure",
    "pil_open",
    "plot_confusion_matrix",
    "run_predictions",
    "write_detection_outputs",
]

log = logging.getLogger(__name__)

AP_CONF = 0.001        # predictions for AP are collected down to this confidence (the PR curve needs the tail)
COCO_MAX_DETS = 300    # per image and class; COCO's default 100 would cut a smear with many cells
IOU_MATCH = 0.5
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

XYXY = tuple[float, float, float, float]
# image path -> detections as (xyxy in original pixels, confidence, class name)
Predictor = Callable[[Path], Sequence[tuple[Sequence[float], float, str]]]


class DatasetFormatError(ValueError):
    """A data yaml, split list or label file is missing or malformed, or its classes do not fit. The message names
    the file and makes sense on its own, on one line."""


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
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if source.is_file() and source.suffix.lower() == ".txt":  # a list of image paths, as ultralytics accepts
        images = []
        for line in source.read_text(encoding="utf-8-sig").splitlines():
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
    from detection.boxes import box_iou

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


def pil_open(path: Path):
    """PIL's own Image.open. ultralytics replaces Image.open with a wrapper that, on a file PIL cannot identify,
    tries to pip-install a HEIF plugin (network): a broken image must simply be refused instead."""
    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        opener = opener.__globals__.get("_image_open", opener)
    return opener(path)


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
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
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
        raw = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetFormatError(f"data yaml not found: {data_yaml}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetFormatError(f"{data_yaml}: cannot read data yaml ({str(exc).splitlines()[0]})") from None
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
    stems = list(dict.fromkeys(s.strip() for s in split_file.read_text(encoding="utf-8-sig").splitlines() if s.strip()))
    names: list[str] = []
    images = []
    notes: dict[str, dict[str, int]] = {"clipped": {}, "dropped_degenerate": {}, "dropped_duplicates": {}}
    for stem in stems:
        image_path = root / "JPEGImages" / f"{stem}.jpg"
        if not image_path.is_file():
            found = [p for p in (root / "JPEGImages").glob(f"{stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
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


# --------------------------------------------------------------------------------------------------------------------
# predictions


def run_predictions(gt: GroundTruth, predict: Predictor,
                    progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run `predict` on every ground-truth image and return COCO results (image_id, category_id, bbox xywh, score),
    rounded as they will be written, so metrics and the written file agree exactly. Predictions of classes the
    ground truth does not have are left out (and counted in the log)."""
    index = {name: k for k, name in enumerate(gt.class_names)}
    results: list[dict[str, Any]] = []
    foreign = 0
    for n, image in enumerate(gt.images, start=1):
        for xyxy, conf, name in predict(image.path):
            k = index.get(str(name).lower())
            if k is None:
                foreign += 1
                continue
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            results.append({"image_id": image.image_id, "category_id": k + 1,
                            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                            "score": round(float(conf), 6)})
        if progress is not None:
            progress(n, len(gt.images))
    if foreign:
        log.info("left out %d predictions of classes not in the ground truth %s", foreign, gt.class_names)
    return results


# --------------------------------------------------------------------------------------------------------------------
# metrics


@dataclass
class ClassMetrics:
    """One class (or all classes together: micro-averaged P/R, COCO's mean AP over classes with instances)."""

    images: int                   # images holding at least one instance (all images for the overall row)
    instances: int
    predictions: int              # predictions at the operating confidence
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    best_f1_conf: float | None    # the confidence threshold with the highest F1 (None without predictions)
    best_f1_precision: float
    best_f1_recall: float
    best_f1: float
    ap50: float | None            # None when the class has no instances (pycocotools gives -1)
    ap50_95: float | None


@dataclass
class DetectionMetrics:
    class_names: list[str]
    overall: ClassMetrics
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]    # rows: true class, then "background"; columns: predicted class, then background
    confusion_labels: list[str]
    per_image: list[dict[str, Any]]
    thresholds: dict[str, Any]
    # plot data: per class, COCOeval's interpolated precision at IoU .5 on its 101 recall points, and our P/R/F1
    # against confidence
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        o = self.overall
        return {"precision": o.precision, "recall": o.recall, "f1": o.f1, "ap50": o.ap50, "ap50_95": o.ap50_95,
                "images": len(self.per_image), "instances": o.instances,
                "best_f1_conf": o.best_f1_conf, "best_f1_precision": o.best_f1_precision,
                "best_f1_recall": o.best_f1_recall, "best_f1": o.best_f1}

    def per_class_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(m) for name, m in self.per_class.items()}


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0  # scikit-learn's zero_division=0 convention


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def greedy_match(pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou_match: float) -> np.ndarray:
    """For predictions sorted by decreasing confidence: index of the matched ground truth, or -1."""
    matched = np.full(len(pred_boxes), -1, dtype=int)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return matched
    iou, _ = pairwise_overlaps(pred_boxes, gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    for i in range(len(pred_boxes)):
        candidates = np.where(free, iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_match:
            matched[i] = j
            free[j] = False
    return matched


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _sweep(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> dict[str, np.ndarray]:
    """P, R, F1 at every distinct confidence threshold (predictions with score >= threshold kept)."""
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)  # end of each tie group
    conf, ctp, cfp = scores[last], ctp[last], cfp[last]
    precision = np.where(ctp + cfp > 0, ctp / np.maximum(ctp + cfp, 1), 0.0)
    recall = ctp / n_gt if n_gt else np.zeros_like(precision, dtype=float)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"conf": conf, "precision": precision, "recall": recall, "f1": f1}


def _best(sweep: dict[str, np.ndarray]) -> tuple[float | None, float, float, float]:
    if len(sweep["conf"]) == 0:
        return None, 0.0, 0.0, 0.0
    i = int(np.argmax(sweep["f1"]))  # first maximum: the highest threshold reaching the best F1
    return float(sweep["conf"][i]), float(sweep["precision"][i]), float(sweep["recall"][i]), float(sweep["f1"][i])


def coco_eval(gt_coco: dict[str, Any], predictions: list[dict[str, Any]], max_dets: int) -> np.ndarray:
    """pycocotools COCOeval (bbox) and its accumulated precision array [T=10 IoUs, R=101, K, A=4 areas, M=3].
    `maxDets` is [1, 10, max_dets]; AP is read at area "all" and max_dets, as COCOeval.summarize does."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise RuntimeError("pycocotools is needed for detection AP: pip install pycocotools") from exc

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt_coco)
        coco_gt.createIndex()
        if predictions:
            coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))  # loadRes adds fields to the dicts it is given
        else:  # loadRes cannot take an empty list (it reads anns[0]); an empty result set is still a valid answer
            coco_dt = COCO()
            coco_dt.dataset = {"info": {}, "images": list(gt_coco["images"]),
                               "categories": copy.deepcopy(gt_coco["categories"]), "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.maxDets = [1, 10, int(max_dets)]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"]


def _ap(precision: np.ndarray, k: int | None = None, iou_index: int | None = None) -> float | None:
    """COCOeval.summarize's mean over entries > -1, at area 'all' and the largest maxDets."""
    p = precision[:, :, :, 0, -1]
    if iou_index is not None:
        p = p[iou_index : iou_index + 1]
    if k is not None:
        p = p[:, :, k]
    valid = p[p > -1]
    return float(np.mean(valid)) if valid.size else None


def evaluate_detections(gt: GroundTruth, predictions: list[dict[str, Any]], conf: float = 0.25,
                        iou_match: float = IOU_MATCH, max_dets: int = COCO_MAX_DETS,
                        ap_conf: float = AP_CONF) -> DetectionMetrics:
    """Metrics of COCO-format `predictions` (from run_predictions, collected down to `ap_conf`) against `gt`.

    AP50 / AP50-95 from pycocotools with maxDets [1, 10, max_dets] (raised, and logged, when an image has more
    predictions of a class, so none is cut). Precision / recall at the operating `conf` and at the best-F1 conf
    with greedy IoU >= `iou_match` matching. The confusion matrix (classes + background) is at `conf`."""
    n_cls = len(gt.class_names)
    predictions, n_ignored = drop_ignored(gt, predictions, iou_match)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        by_image.setdefault(int(p["image_id"]), []).append(p)
    most = max((sum(1 for p in ps if p["category_id"] == k + 1) for ps in by_image.values() for k in range(n_cls)),
               default=0)
    if most > max_dets:
        log.warning("an image has %d predictions of one class, more than maxDets %d: using maxDets %d so COCOeval "
                    "cuts none", most, max_dets, most)
        max_dets = most
    precision = coco_eval(gt.to_coco(), predictions, max_dets)

    scores: list[list[float]] = [[] for _ in range(n_cls)]
    hits: list[list[bool]] = [[] for _ in range(n_cls)]
    confusion = np.zeros((n_cls + 1, n_cls + 1), dtype=int)
    per_image = []
    for image in gt.images:
        preds = sorted(by_image.get(image.image_id, []), key=lambda p: -p["score"])
        row = {"image": image.path.name, "width": image.width, "height": image.height,
               "instances": len(image.boxes), "predictions": 0, "tp": 0, "fp": 0, "fn": 0}
        for k in range(n_cls):
            pk = [p for p in preds if p["category_id"] == k + 1]
            gk = np.array([b for b, c in image.boxes if c == k], dtype=float).reshape(-1, 4)
            matched = greedy_match(np.array([_xyxy(p["bbox"]) for p in pk], dtype=float).reshape(-1, 4), gk,
                                    iou_match)
            scores[k] += [p["score"] for p in pk]
            hits[k] += list(matched >= 0)
            operating = np.array([p["score"] >= conf for p in pk], dtype=bool)
            tp = int(np.sum((matched >= 0) & operating))
            row["predictions"] += int(operating.sum())
            row["tp"] += tp
            row["fp"] += int(operating.sum()) - tp
            row["fn"] += len(gk) - tp
        _confusion_add(confusion, image, [p for p in preds if p["score"] >= conf], iou_match)
        per_image.append(row)

    instances, images_with = gt.instances(), gt.images_with()
    per_class: dict[str, ClassMetrics] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for k, name in enumerate(gt.class_names):
        s, h = np.array(scores[k], dtype=float), np.array(hits[k], dtype=bool)
        per_class[name] = _class_metrics(s, h, instances[k], images_with[k], conf,
                                         _ap(precision, k, iou_index=0), _ap(precision, k))
        sweep = _sweep(s, h, instances[k])
        curves[name] = {"recall_points": np.linspace(0, 1, 101).tolist(),
                        "precision_iou50": np.where(precision[0, :, k, 0, -1] > -1,
                                                    precision[0, :, k, 0, -1], np.nan).tolist(),
                        **{key: value.tolist() for key, value in sweep.items()}}
    all_s = np.concatenate([np.array(s, dtype=float) for s in scores]) if n_cls else np.zeros(0)
    all_h = np.concatenate([np.array(h, dtype=bool) for h in hits]) if n_cls else np.zeros(0, bool)
    overall = _class_metrics(all_s, all_h, sum(instances), len(gt.images), conf, _ap(precision, iou_index=0),
                             _ap(precision))
    thresholds = {"conf": conf, "ap_conf": ap_conf, "iou_match": iou_match,
                  "ap_iou": [round(0.5 + 0.05 * i, 2) for i in range(10)], "coco_max_dets": max_dets,
                  "coco_area": "all", "best_f1_conf": overall.best_f1_conf,
                  "ignore_regions": sum(len(i.ignore) for i in gt.images), "ignored_predictions": n_ignored}
    return DetectionMetrics(class_names=list(gt.class_names), overall=overall, per_class=per_class,
                            confusion=confusion.tolist(), confusion_labels=[*gt.class_names, "background"],
                            per_image=per_image, thresholds=thresholds, curves=curves)


def _class_metrics(scores: np.ndarray, hits: np.ndarray, n_gt: int, n_images: int, conf: float,
                   ap50: float | None, ap50_95: float | None) -> ClassMetrics:
    operating = scores >= conf
    tp = int(np.sum(hits & operating))
    n_pred = int(operating.sum())
    p, r = _ratio(tp, n_pred), _ratio(tp, n_gt)
    best_conf, bp, br, bf = _best(_sweep(scores, hits, n_gt))
    return ClassMetrics(images=n_images, instances=n_gt, predictions=n_pred, tp=tp, fp=n_pred - tp, fn=n_gt - tp,
                        precision=p, recall=r, f1=_f1(p, r), best_f1_conf=best_conf, best_f1_precision=bp,
                        best_f1_recall=br, best_f1=bf, ap50=ap50, ap50_95=ap50_95)


def _confusion_add(confusion: np.ndarray, image: GtImage, preds: list[dict[str, Any]], iou_match: float) -> None:
    """Class-agnostic greedy matching (so a box of the wrong class shows as a confusion, not as a miss plus a false
    alarm); rows are the true class, columns the predicted one, the last row/column is background."""
    background = confusion.shape[0] - 1
    gt_boxes = np.array([b for b, _ in image.boxes], dtype=float).reshape(-1, 4)
    matched = greedy_match(np.array([_xyxy(p["bbox"]) for p in preds], dtype=float).reshape(-1, 4), gt_boxes,
                            iou_match)
    for p, j in zip(preds, matched):
        confusion[image.boxes[j][1] if j >= 0 else background, p["category_id"] - 1] += 1
    for j in set(range(len(image.boxes))) - set(int(m) for m in matched if m >= 0):
        confusion[image.boxes[j][1], background] += 1


# --------------------------------------------------------------------------------------------------------------------
# outputs


def new_figure(width: float, height: float):
    # Figure + Agg canvas, not pyplot: no global backend switch, safe inside the Qt app and in worker threads
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def plot_confusion_matrix(path: Path, matrix: Sequence[Sequence[int]], labels: Sequence[str],
                          title: str, true_labels: Sequence[str] | None = None) -> None:
    """Counts with row-normalised colour (rows: true, columns: predicted)."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    shade = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig = new_figure(1.6 + 1.1 * len(labels), 1.2 + 1.0 * len(true_labels or labels))
    ax = fig.add_subplot()
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(m.shape[0]), true_labels or labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    save_figure(fig, path)


def _plot_pr(path: Path, metrics: DetectionMetrics) -> None:
    fig = new_figure(11, 4.5)
    ax_pr, ax_conf = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name in metrics.class_names:
        c, m = metrics.curves[name], metrics.per_class[name]
        ap = f"{m.ap50:.3f}" if m.ap50 is not None else "n/a"
        line, = ax_pr.plot(c["recall_points"], c["precision_iou50"], label=f"{name} AP50 {ap}")
        ax_pr.plot([m.recall], [m.precision], "o", color=line.get_color())
        if m.best_f1_conf is not None:
            ax_pr.plot([m.best_f1_recall], [m.best_f1_precision], "*", ms=11, color=line.get_color())
        ax_conf.plot(c["conf"], c["precision"], "--", color=line.get_color(), label=f"{name} precision")
        ax_conf.plot(c["conf"], c["recall"], ":", color=line.get_color(), label=f"{name} recall")
        ax_conf.plot(c["conf"], c["f1"], "-", color=line.get_color(), label=f"{name} F1")
    conf = metrics.thresholds["conf"]
    ax_conf.axvline(conf, color="grey", lw=0.8)
    ax_pr.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
              title=f"PR at IoU 0.5 (pycocotools); o conf {conf:g}, * best F1")
    ax_conf.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold",
                title=f"P / R / F1 vs confidence (IoU >= {metrics.thresholds['iou_match']:g})")
    ax_pr.legend(loc="lower left", fontsize=8)
    ax_conf.legend(loc="lower left", fontsize=7)
    save_figure(fig, path)


METRIC_COLUMNS = ["class", "images", "instances", "predictions", "tp", "fp", "fn", "precision", "recall", "f1",
                  "best_f1_conf", "best_f1_precision", "best_f1_recall", "best_f1", "ap50", "ap50_95"]
PER_IMAGE_COLUMNS = ["image", "width", "height", "instances", "predictions", "tp", "fp", "fn"]


def write_detection_outputs(out_dir: Path, gt: GroundTruth, predictions: list[dict[str, Any]],
                            metrics: DetectionMetrics) -> dict[str, dict[str, str]]:
    """Write predictions.json (COCO results), gt_coco.json, metrics.csv (all + per class, at the operating and the
    best-F1 confidence), per_image.csv, pr_curve.png and confusion_matrix.png into `out_dir`. Returns
    {"plots": {name: file}, "tables": {name: file}, "files": {name: file}} with names relative to `out_dir`."""
    out_dir = Path(out_dir)
    write_atomic(out_dir / "predictions.json", json.dumps(predictions))
    write_atomic(out_dir / "gt_coco.json", json.dumps(gt.to_coco()))
    rows = [{"class": "all", **asdict(metrics.overall)}]
    rows += [{"class": name, **asdict(m)} for name, m in metrics.per_class.items()]
    write_atomic(out_dir / "metrics.csv", csv_text(rows, METRIC_COLUMNS))
    write_atomic(out_dir / "per_image.csv", csv_text(metrics.per_image, PER_IMAGE_COLUMNS))
    _plot_pr(out_dir / "pr_curve.png", metrics)
    plot_confusion_matrix(out_dir / "confusion_matrix.png", metrics.confusion, metrics.confusion_labels,
                          f"detections at conf {metrics.thresholds['conf']:g}, IoU >= "
                          f"{metrics.thresholds['iou_match']:g}")
    return {"plots": {"pr_curve": "pr_curve.png", "confusion_matrix": "confusion_matrix.png"},
            "tables": {"metrics": "metrics.csv", "per_image": "per_image.csv"},
            "files": {"predictions": "predictions.json", "ground_truth": "gt_coco.json"}}
