"""Convert BCCD (Pascal VOC, https://github.com/Shenggan/BCCD_Dataset, MIT) into an ultralytics YOLO detection dataset.

Layout written under `out_dir`:

    images/{split}/BloodImage_NNNNN.jpg   symlink to the original (or a copy with link=False)
    labels/{split}/BloodImage_NNNNN.txt   one `class cx cy w h` line per box, normalised to [0, 1], 6 decimals
    data.yaml                             path (absolute), train/val/test, names {0: wbc, ...}
    build_report.json                     what was written and every annotation defect that was repaired

BCCD's official split (ImageSets/Main/{train,val,test}.txt) is kept. Output class names are lowercase (`wbc`, `rbc`,
`platelets`); BCCD's `WBC`/`RBC`/`Platelets` map to them case-insensitively. Class ids follow the order of `classes`.

Annotation defects are repaired and reported, never silently: for the chosen classes, every box of the XML ends up
in exactly one of kept, kept-but-clipped-to-the-image (`clipped`), dropped because its area is zero or negative
after clipping (`dropped_degenerate`), or dropped as a duplicate of an earlier box of the same class with
IoU >= 0.9 (`dropped_duplicates`). So per class: boxes = boxes_in_xml - dropped_degenerate - dropped_duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from PIL import Image

from workbench.core.boxes import box_iou
from workbench.core.fileio import check_build_dir, replace_build
from workbench.core.voc import VocAnnotation, parse_voc

__all__ = [
    "BCCD_CLASSES",
    "BCCD_SPLITS",
    "DUPLICATE_IOU",
    "BccdBuildReport",
    "SplitReport",
    "build_bccd_yolo",
    "verify_yolo_dataset",
]

log = logging.getLogger(__name__)

BCCD_CLASSES = ("wbc", "rbc", "platelets")  # output names; BCCD writes WBC, RBC, Platelets
BCCD_SPLITS = ("train", "val", "test")
DUPLICATE_IOU = 0.9
REPORT_NAME = "build_report.json"
_XYXY = tuple[float, float, float, float]


@dataclass
class SplitReport:
    """What one split holds after conversion, and which annotation defects were repaired in which files.

    Counts cover the chosen classes only. `*_files` list the affected image stems, in split order, once each.
    `boxes` (written) = `boxes_in_xml` - `dropped_degenerate` - `dropped_duplicates`, per class.
    """

    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    boxes_in_xml: dict[str, int] = field(default_factory=dict)
    images_without_boxes: list[str] = field(default_factory=list)
    clipped: int = 0
    clipped_files: list[str] = field(default_factory=list)
    dropped_degenerate: int = 0
    dropped_degenerate_files: list[str] = field(default_factory=list)
    dropped_duplicates: int = 0
    dropped_duplicates_files: list[str] = field(default_factory=list)
    unknown_class_boxes: dict[str, int] = field(default_factory=dict)  # names that are not WBC/RBC/Platelets
    size_mismatch_files: list[str] = field(default_factory=list)  # XML size differs from the JPEG; JPEG size used


@dataclass
class BccdBuildReport:
    """The result of build_bccd_yolo: where things are, the class order, and a SplitReport per split."""

    bccd_root: str
    out_dir: str
    data_yaml: str
    classes: list[str]
    linked: bool  # images are symlinks (False: copies, asked for or because symlinks are not possible here)
    limit: int | None
    splits: dict[str, SplitReport] = field(default_factory=dict)

    @property
    def names(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    def totals(self) -> dict[str, Any]:
        """Sums over the splits of the image, box and defect counts."""
        out: dict[str, Any] = {
            "images": 0,
            "boxes": {c: 0 for c in self.classes},
            "clipped": 0,
            "dropped_degenerate": 0,
            "dropped_duplicates": 0,
        }
        for split in self.splits.values():
            out["images"] += split.images
            for c in self.classes:
                out["boxes"][c] += split.boxes.get(c, 0)
            for key in ("clipped", "dropped_degenerate", "dropped_duplicates"):
                out[key] += getattr(split, key)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["names"] = {str(i): n for i, n in self.names.items()}
        data["totals"] = self.totals()
        return data


# --------------------------------------------------------------------------------------------------------------------
# building


def build_bccd_yolo(
    bccd_root: Path,
    out_dir: Path,
    classes: Sequence[str] = ("wbc",),
    splits: Sequence[str] = BCCD_SPLITS,
    limit: int | None = None,
    link: bool = True,
) -> BccdBuildReport:
    """Convert BCCD at `bccd_root` (the folder holding JPEGImages/, Annotations/ and ImageSets/, i.e.
    `<datasets>/bccd/BCCD`) into an ultralytics dataset in `out_dir` and return (and write) the build report.

    `classes`: output class names in id order, a subset of ("wbc", "rbc", "platelets"), case-insensitive.
    `splits`: which of BCCD's official splits to convert. `limit`: keep only the first N images of each split.
    `link`: symlink images to the originals (falls back to copying where symlinks cannot be made); False copies.

    `out_dir` must be absent, empty, or an earlier build (it holds build_report.json): an earlier build's images/,
    labels/ (with ultralytics' .cache files), data.yaml and report are replaced, so no stale file survives. The
    build is staged in a hidden folder beside `out_dir` and moved in only once complete, so a failed build leaves
    `out_dir` as it was.
    Raises ValueError for bad arguments or an image listed in two splits, FileNotFoundError for a missing part of
    BCCD, FileExistsError for an `out_dir` that holds something else, and LabelFileError for a malformed XML file.
    """
    bccd_root = Path(bccd_root).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    class_names = _check_classes(classes)
    split_names = _check_splits(splits)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (bccd_root / sub).is_dir():
            raise FileNotFoundError(
                f"{bccd_root / sub} not found: bccd_root must be the BCCD folder holding JPEGImages/, Annotations/ "
                "and ImageSets/ (<datasets>/bccd/BCCD)"
            )

    # Read every chosen split list first, so that a leak between splits fails before anything is written.
    ids = {split: _read_split(bccd_root, split) for split in split_names}
    _check_disjoint(ids)
    if limit is not None:
        ids = {split: stems[:limit] for split, stems in ids.items()}

    check_build_dir(out_dir, REPORT_NAME)
    class_id = {name: i for i, name in enumerate(class_names)}
    report = BccdBuildReport(
        bccd_root=str(bccd_root),
        out_dir=str(out_dir),
        data_yaml=str(out_dir / "data.yaml"),
        classes=list(class_names),
        linked=link,
        limit=limit,
    )
    # Build in a staging folder beside out_dir and move the result in at the end: a build that fails half-way (a
    # malformed XML, a missing image) leaves out_dir as it was, and a rerun after the fix is not refused.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        for split in split_names:
            report.splits[split] = _convert_split(bccd_root, staging, split, ids[split], class_id, report)
            _log_split(split, report.splits[split])
        _write_data_yaml(staging, out_dir, split_names, class_names)
        (staging / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        replace_build(staging, out_dir, ("images", "labels", "data.yaml", REPORT_NAME))  # incl. labels/*.cache
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("BCCD -> YOLO: wrote %s (%s)", out_dir, json.dumps(report.totals()))
    return report


def _convert_split(
    bccd_root: Path, root: Path, split: str, stems: list[str], class_id: dict[str, int], report: BccdBuildReport
) -> SplitReport:
    image_dir = root / "images" / split
    label_dir = root / "labels" / split
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    sr = SplitReport(boxes={c: 0 for c in class_id}, boxes_in_xml={c: 0 for c in class_id})
    for stem in stems:
        image = bccd_root / "JPEGImages" / f"{stem}.jpg"
        if not image.is_file():
            raise FileNotFoundError(f"{image} not found (listed in ImageSets/Main/{split}.txt)")
        annotation = parse_voc(bccd_root / "Annotations" / f"{stem}.xml")
        lines = _convert_image(stem, image, annotation, class_id, sr)
        (label_dir / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
        report.linked = _place_image(image, image_dir / image.name, report.linked)
        sr.images += 1
        if not lines:
            sr.images_without_boxes.append(stem)
    return sr


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise ValueError(f"classes must be a sequence of names such as ('wbc',), not the string {classes!r}")
    names = tuple(str(c).strip().casefold() for c in classes)
    if not names:
        raise ValueError("classes must name at least one of " + ", ".join(BCCD_CLASSES))
    unknown = [c for c in names if c not in BCCD_CLASSES]
    if unknown:
        raise ValueError(f"unknown BCCD class(es) {unknown}; choose from {list(BCCD_CLASSES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"classes lists a class twice: {list(classes)}")
    return names


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    if isinstance(splits, str):
        raise ValueError(f"splits must be a sequence such as ('train', 'val'), not the string {splits!r}")
    names = tuple(splits)
    bad = [s for s in names if s not in BCCD_SPLITS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"splits must be distinct names from {list(BCCD_SPLITS)}, got {list(splits)}")
    return names


def _read_split(bccd_root: Path, split: str) -> list[str]:
    path = bccd_root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: BCCD's official {split} split list")
    stems: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        stem = line.strip()
        if not stem:
            continue
        if stem in {".", ".."} or "/" in stem or "\\" in stem:
            raise ValueError(f"{path}: {stem!r} is not an image name")
        if stem in seen:
            log.warning("%s lists %s twice; converting it once", path, stem)
            continue
        seen.add(stem)
        stems.append(stem)
    return stems


def _check_disjoint(ids: dict[str, list[str]]) -> None:
    splits = list(ids)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            shared = sorted(set(ids[a]) & set(ids[b]))
            if shared:
                raise ValueError(f"{len(shared)} image(s) are in both {a} and {b} (e.g. {shared[:3]}): test leakage")


def _convert_image(
    stem: str, image: Path, annotation: VocAnnotation, class_id: dict[str, int], sr: SplitReport
) -> list[str]:
    """YOLO label lines for one image; repairs and counts defects into `sr`."""
    with Image.open(image) as im:  # reads the header only
        width, height = im.size
    if (annotation.width, annotation.height) != (width, height):
        log.warning(
            "%s: XML size %dx%d differs from the image's %dx%d; using the image's",
            stem, annotation.width, annotation.height, width, height,
        )
        _add_file(sr.size_mismatch_files, stem)

    kept: dict[str, list[_XYXY]] = {}
    lines = []
    for obj in annotation.objects:
        name = obj.name.strip().casefold()
        if name not in BCCD_CLASSES:
            sr.unknown_class_boxes[obj.name] = sr.unknown_class_boxes.get(obj.name, 0) + 1
            continue
        if name not in class_id:
            continue
        sr.boxes_in_xml[name] += 1
        x1, y1, x2, y2 = obj.xyxy
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
        if box[2] <= box[0] or box[3] <= box[1]:
            sr.dropped_degenerate += 1
            _add_file(sr.dropped_degenerate_files, stem)
            log.debug("%s: dropped %s box %s (no area inside the image)", stem, obj.name, obj.xyxy)
            continue
        if any(box_iou(box, other) >= DUPLICATE_IOU for other in kept.get(name, [])):
            sr.dropped_duplicates += 1
            _add_file(sr.dropped_duplicates_files, stem)
            log.debug("%s: dropped %s box %s (duplicate, IoU >= %s)", stem, obj.name, obj.xyxy, DUPLICATE_IOU)
            continue
        if box != (x1, y1, x2, y2):
            sr.clipped += 1
            _add_file(sr.clipped_files, stem)
            log.debug("%s: clipped %s box %s to %s", stem, obj.name, obj.xyxy, box)
        kept.setdefault(name, []).append(box)
        sr.boxes[name] += 1
        cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
        w, h = (box[2] - box[0]) / width, (box[3] - box[1]) / height
        lines.append(f"{class_id[name]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return lines


def _add_file(files: list[str], stem: str) -> None:
    if not files or files[-1] != stem:  # images are processed one at a time, so a repeat can only be the last one
        files.append(stem)


def _place_image(src: Path, dst: Path, link: bool) -> bool:
    """Symlink (absolute target) or copy `src` to `dst`; returns whether later images should still be linked."""
    if link:
        try:
            os.symlink(src, dst)
            return True
        except OSError as exc:  # e.g. Windows without the symlink privilege
            log.warning("cannot symlink %s (%s); copying images instead", dst, exc)
    shutil.copy2(src, dst)
    return False


def _write_data_yaml(root: Path, out_dir: Path, splits: Sequence[str], classes: Sequence[str]) -> None:
    """data.yaml into `root`, naming `out_dir` (where the build will end up) as its absolute path."""
    data: dict[str, Any] = {"path": str(out_dir)}
    for split in splits:
        data[split] = f"images/{split}"
    data["names"] = dict(enumerate(classes))
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _log_split(split: str, sr: SplitReport) -> None:
    log.info(
        "%s: %d images, boxes %s, %d without boxes",
        split, sr.images, sr.boxes, len(sr.images_without_boxes),
    )
    if sr.clipped:
        log.warning("%s: clipped %d box(es) to the image in %s", split, sr.clipped, sr.clipped_files)
    if sr.dropped_degenerate:
        log.warning(
            "%s: dropped %d zero-area box(es) in %s", split, sr.dropped_degenerate, sr.dropped_degenerate_files
        )
    if sr.dropped_duplicates:
        log.warning(
            "%s: dropped %d duplicate box(es) in %s", split, sr.dropped_duplicates, sr.dropped_duplicates_files
        )
    if sr.unknown_class_boxes:
        log.warning("%s: ignored boxes of unknown classes %s", split, sr.unknown_class_boxes)
    if sr.size_mismatch_files:
        log.warning("%s: XML size differs from the image in %s", split, sr.size_mismatch_files)


# --------------------------------------------------------------------------------------------------------------------
# checking with ultralytics


def verify_yolo_dataset(data_yaml: Path) -> dict[str, Any]:
    """Load `data_yaml` the way ultralytics training does (check_det_dataset, then a YOLODataset per split) and
    return {"names": {id: name}, "splits": {split: {"images", "boxes", "missing_labels", "corrupt"}}}, where
    `missing_labels` counts images whose label file ultralytics does not find (it maps the last /images/ of the image
    path to /labels/; symlinks are not resolved, so linked images find the labels written beside them).

    Imports ultralytics (slow) lazily, through workbench.core.ultralytics_env (offline, analytics sync off). Raises
    ValueError if ultralytics finds a missing label file or a corrupt image/label, which would otherwise only show up
    as a warning during training.
    """
    from workbench.core.ultralytics_env import import_ultralytics

    import_ultralytics()  # offline, analytics sync off
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, img2label_paths

    data = check_det_dataset(str(data_yaml), autodownload=False)
    result: dict[str, Any] = {"names": dict(data["names"]), "splits": {}}
    for split in BCCD_SPLITS:
        if not data.get(split):
            continue
        listed = [p for p in Path(data[split]).iterdir() if p.suffix.lstrip(".").lower() in IMG_FORMATS]
        dataset = YOLODataset(img_path=data[split], data=data, task="detect", augment=False, cache=False)
        label_files = img2label_paths(dataset.im_files)
        missing = sum(1 for f in label_files if not os.path.isfile(f))
        corrupt = len(listed) - len(dataset.im_files)  # ultralytics drops images or labels it cannot read
        result["splits"][split] = {
            "images": len(dataset.im_files),
            "boxes": int(sum(len(label["cls"]) for label in dataset.labels)),
            "missing_labels": missing,
            "corrupt": corrupt,
        }
        if missing or corrupt:
            raise ValueError(
                f"{data_yaml}: ultralytics found {missing} image(s) without a label file and {corrupt} corrupt "
                f"image/label pair(s) in {split}"
            )
    return result
