"""Blast / normal crop dataset: built from ALL-IDB2, ALL-IDB1 points and BCCD white cells, split by source image.

Layout written under `out_dir` (a build replaces an earlier build there):

    {train,val,test}/{blast,normal}/<name>.png   RGB crops, crop_size x crop_size
    split.csv                                     one row per crop: file, label, split, dataset, source_image,
                                                  x1, y1, x2, y2 (box in the source image), extra_normal
    allidb1_split.csv                             the ALL-IDB1 image split used (detection.allidb.write_split_csv)
    build_report.json                             counts per split x class x dataset, what was skipped and why

Sources and labels:
- ALL-IDB2 (`allidb2`): the 257x257 crops as they are, resized to crop_size (or, with `allidb2_framing="box"`,
  re-cut from the source image around the cell's box like the other crops); blast if the name ends in `_1`.
- ALL-IDB1 (`allidb1`): blast centroids (`xyc/`) and the non-blast points (`other_points/`) that
  `detection.allidb.point_to_box` accepts as a white cell (the rest are platelets or failures), each cut with
  `classification.crops.crop_cell` around the box plus `margin`, i.e. framed the way the pipeline frames detections.
- BCCD (`bccd`): every WBC box, label normal, flagged `extra_normal` (BCCD holds no blasts; these crops add normal
  cells from another microscope, and evaluation can leave them out).

Split by source image, never by crop, so no cell's neighbourhood is in two splits: ALL-IDB1 crops and ALL-IDB2 crops
take the split of their ALL-IDB1 source image from `detection.allidb.allidb1_split` (ALL-IDB2 crops were cut out
of ALL-IDB1 images, see `crop_sources.csv`), BCCD crops the split of BCCD's official lists.

ALL-IDB2 crops are cut around cells that are also ALL-IDB1 points, so the same cell would appear twice: an ALL-IDB1
point within `dedup_radius` px of an ALL-IDB2 crop centre in the same source image is dropped (the ALL-IDB2 crop and
its label are kept: that label is the dataset authors' per-cell call), as is a non-blast point within that radius of
a blast point (the expert blast centroid wins).

The class order is fixed: CLASS_NAMES = ("blast", "normal"), blast = index 0 = the positive class. It is the one
class map of the package; datasets, training and checkpoints all use it and never renumber.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from classification.crops import crop_cell, median_colour
from detection.boxes import box_iou
from detection.fileio import atomic_open, check_build_dir, replace_build, write_atomic
from detection.voc import parse_voc

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLASS_INDEX",
    "CLASS_NAMES",
    "SPLITS",
    "CropBuildReport",
    "CropDataset",
    "CropRecord",
    "build_crop_dataset",
    "read_split_file",
]

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("blast", "normal")  # THE class map: index 0 = blast = positive class
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
SPLITS: tuple[str, ...] = ("train", "val", "test")
DATASETS: tuple[str, ...] = ("allidb2", "allidb1", "bccd")
SPLIT_FILE = "split.csv"
REPORT_FILE = "build_report.json"
ALLIDB1_SPLIT_FILE = "allidb1_split.csv"
CSV_FIELDS = ("file", "label", "split", "dataset", "source_image", "x1", "y1", "x2", "y2", "extra_normal")
DEDUP_RADIUS = 20.0  # px; ALL-IDB2 centres are accurate to ~4 px and a cell is >= 90 px wide
BCCD_DUPLICATE_IOU = 0.9  # as detection.bccd: some BCCD XML files list a WBC twice
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# --------------------------------------------------------------------------------------------------------------------
# records


@dataclass
class CropRecord:
    """One crop: its file relative to the dataset folder, label, split, origin and box in the source image."""

    file: str
    label: str
    split: str
    dataset: str
    source_image: str
    x1: float
    y1: float
    x2: float
    y2: float
    extra_normal: bool = False

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        for key in ("x1", "y1", "x2", "y2"):
            row[key] = f"{row[key]:.1f}"
        row["extra_normal"] = int(self.extra_normal)
        return row


@dataclass
class CropBuildReport:
    """What build_crop_dataset wrote: counts[split][class][dataset], the source images per split, and the skips."""

    out_dir: str
    datasets_root: str
    crop_size: int
    margin: float
    seed: int
    limit: int | None
    dedup_radius: float
    allidb2_framing: str
    class_names: list[str]
    include: dict[str, bool]
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)  # per split
    source_images: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> dataset family -> images
    skipped: dict[str, int] = field(default_factory=dict)
    label_conflicts: list[str] = field(default_factory=list)
    split_file: str = ""
    allidb1_split_file: str | None = None
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        """One line for a CLI: crops per split and class, and what was skipped."""
        parts = []
        for split in SPLITS:
            per_class = self.counts.get(split, {})
            classes = ", ".join(f"{c} {sum(per_class.get(c, {}).values())}" for c in self.class_names)
            parts.append(f"{split} {self.totals.get(split, 0)} ({classes})")
        skipped = sum(self.skipped.values())
        return "; ".join(parts) + (f"; {skipped} skipped" if skipped else "")


# --------------------------------------------------------------------------------------------------------------------
# building


def build_crop_dataset(
    datasets_root: Path | str,
    out_dir: Path | str,
    crop_size: int = 300,
    margin: float = 0.15,
    include_allidb1: bool = True,
    include_bccd: bool = True,
    seed: int = 0,
    limit: int | None = None,
    include_allidb2: bool = True,
    dedup_radius: float = DEDUP_RADIUS,
    allidb2_framing: str = "native",
) -> CropBuildReport:
    """Cut, label and split the crops (see the module doc) and write them under `out_dir`.

    `allidb2_framing`: "native" keeps ALL-IDB2's own 257 px crops (the cell fills about half of the side); "box"
    re-cuts each ALL-IDB2 cell from its ALL-IDB1 source image around the box that point_to_box finds at the crop
    centre, plus `margin`, i.e. framed like every other crop and like the pipeline's detections (the label is still
    ALL-IDB2's; a cell without a box keeps its native crop).

    `limit` builds a slice for tests and smoke runs: at most `limit` source images per split of each dataset family
    (ALL-IDB images that are ALL-IDB2 sources first, so a slice still holds ALL-IDB2 crops; then by name).
    """
    datasets_root, out_dir = Path(datasets_root), Path(out_dir)
    if crop_size < 8:
        raise ValueError(f"crop_size must be at least 8 px, not {crop_size}")
    if margin < 0:
        raise ValueError(f"margin must not be negative, not {margin}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None), not {limit}")
    if allidb2_framing not in ("native", "box"):
        raise ValueError(f"allidb2_framing must be 'native' or 'box', not {allidb2_framing!r}")
    if not (include_allidb2 or include_allidb1 or include_bccd):
        raise ValueError("nothing to build: every source is switched off")
    check_build_dir(out_dir, REPORT_FILE)

    report = CropBuildReport(
        out_dir=str(out_dir.resolve()), datasets_root=str(datasets_root.resolve()), crop_size=crop_size,
        margin=margin, seed=seed, limit=limit, dedup_radius=dedup_radius, allidb2_framing=allidb2_framing,
        class_names=list(CLASS_NAMES),
        include={"allidb2": include_allidb2, "allidb1": include_allidb1, "bccd": include_bccd},
    )
    skipped: Counter[str] = Counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # staged beside out_dir (same filesystem) so the finished build moves in with renames, never half-written
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        records: list[CropRecord] = []
        if include_allidb2 or include_allidb1:
            records += _build_allidb(
                datasets_root / "all-idb", staging, report, skipped, crop_size, margin, seed, limit,
                include_allidb2, include_allidb1, dedup_radius, allidb2_framing,
            )
        if include_bccd:
            records += _build_bccd(datasets_root / "bccd" / "BCCD", staging, skipped, crop_size, margin, limit)
        if not records:
            raise ValueError(f"no crops were produced from {datasets_root} (are the datasets there?)")
        _check_no_leak(records)
        _summarise(records, report)
        report.skipped = dict(sorted(skipped.items()))
        report.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.split_file = str((out_dir / SPLIT_FILE).resolve())
        _write_split_file(staging / SPLIT_FILE, records)
        write_atomic(staging / REPORT_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
        replace_build(staging, out_dir, (*SPLITS, SPLIT_FILE, ALLIDB1_SPLIT_FILE, REPORT_FILE))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log_report(report)
    return report


def _allidb_api():
    """detection.allidb, imported when ALL-IDB is used (it owns THE ALL-IDB1 split and the point-to-box rule)."""
    from detection import allidb

    return allidb


def _build_allidb(
    allidb_root: Path, staging: Path, report: CropBuildReport, skipped: Counter, crop_size: int, margin: float,
    seed: int, limit: int | None, include_allidb2: bool, include_allidb1: bool, dedup_radius: float,
    allidb2_framing: str,
) -> list[CropRecord]:
    allidb = _allidb_api()
    raw_split = allidb.allidb1_split(allidb_root, seed=seed)
    split = {_image_key(name): s for name, s in raw_split.items()}
    allidb.write_split_csv(staging / ALLIDB1_SPLIT_FILE, raw_split)  # the detector is evaluated on the same split
    report.allidb1_split_file = str((Path(report.out_dir) / ALLIDB1_SPLIT_FILE))

    sources = _read_crop_sources(allidb_root / "ALL_IDB2" / "crop_sources.csv") if include_allidb2 else []
    boxed2 = include_allidb2 and allidb2_framing == "box"
    need_points = include_allidb1 or boxed2  # box framing separates touching cells with the image's marks
    points = {_image_key(k): v for k, v in allidb.read_allidb1_points(allidb_root).items()} if need_points else {}
    images = sorted(set(split) & ({_image_key(s["allidb1_source_image"]) for s in sources}
                                  | (set(points) if include_allidb1 else set())))
    unplaced = sorted({_image_key(s["allidb1_source_image"]) for s in sources} - set(split))
    if unplaced:
        raise ValueError(f"ALL-IDB2 source images {unplaced[:3]} are not in the ALL-IDB1 split: cannot place crops")
    if limit is not None:
        with_crops = {_image_key(s["allidb1_source_image"]) for s in sources}
        chosen: set[str] = set()
        for name in SPLITS:
            ranked = sorted((k for k in images if split[k] == name), key=lambda k: (k not in with_crops, k))
            chosen.update(ranked[:limit])
        images = sorted(chosen)

    by_image: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sources:
        by_image[_image_key(row["allidb1_source_image"])].append(row)

    records: list[CropRecord] = []
    for key in images:
        image_split = split[key]
        source = _SourceImage(allidb, allidb_root / "ALL_IDB1" / "im" / key, points.get(key, []))
        centres: list[tuple[float, float, str]] = []
        for row in by_image.get(key, []):
            rec = _allidb2_crop(allidb_root, row, staging, image_split, crop_size, margin, skipped,
                                source if boxed2 else None)
            if rec is not None:
                records.append(rec)
                centres.append((float(row["cell_centre_x"]), float(row["cell_centre_y"]), rec.label))
        if include_allidb1 and points.get(key):
            records += _allidb1_crops(
                source, key, centres, staging, image_split, crop_size, margin, dedup_radius, skipped, report,
            )
    return records


class _SourceImage:
    """One ALL-IDB1 image, decoded (and its stain map computed) only when a crop needs it, and then only once."""

    def __init__(self, allidb, path: Path, points: Sequence[Any]) -> None:
        self.allidb, self.path, self.points = allidb, path, list(points)
        self.marks = [(float(p.x), float(p.y)) for p in self.points]
        self._loaded = False
        self.image: np.ndarray | None = None

    def load(self) -> np.ndarray | None:
        if not self._loaded:
            self._loaded = True
            self.image = _read_rgb(self.path)
            if self.image is not None:
                self.fill = median_colour(self.image)
                self.stain = self.allidb.stain_map(self.image)
        return self.image

    def segment(self, x: float, y: float, kind: str):
        """allidb.segment_point at (x, y): the box point_to_box would return, and the status saying why not."""
        # the image's other marks let the segmentation split this cell from touching marked neighbours
        neighbours = [m for m in self.marks if math.hypot(m[0] - x, m[1] - y) > 1e-6]
        return self.allidb.segment_point(self.image, x, y, kind=kind, neighbours=neighbours, stain=self.stain)


def _image_key(name: str) -> str:
    """ALL-IDB1 images are keyed by file name (ImNNN_L.jpg); accept a bare stem too."""
    name = Path(str(name)).name
    return name if Path(name).suffix else f"{name}.jpg"


def _read_crop_sources(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: which ALL-IDB1 image each ALL-IDB2 crop comes from")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"allidb2_file", "label_blast", "allidb1_source_image", "crop_x0", "crop_y0", "crop_w", "crop_h",
              "cell_centre_x", "cell_centre_y"}
    if rows and not needed <= set(rows[0]):
        raise ValueError(f"{path}: missing columns {sorted(needed - set(rows[0]))}")
    return rows


def _allidb2_crop(
    allidb_root: Path, row: dict[str, str], staging: Path, split: str, crop_size: int, margin: float,
    skipped: Counter, source: _SourceImage | None,
) -> CropRecord | None:
    src = allidb_root / "ALL_IDB2" / "img" / row["allidb2_file"]
    stem = Path(row["allidb2_file"]).stem
    label_from_name = "blast" if stem.endswith("_1") else "normal"
    label = "blast" if int(row["label_blast"]) == 1 else "normal"
    if label != label_from_name:  # the file name is the dataset's own label; the csv must agree with it
        raise ValueError(f"{row['allidb2_file']}: crop_sources.csv says label_blast={row['label_blast']}")
    rel = f"{split}/{label}/allidb2_{stem}.png"
    source_name = _image_key(row["allidb1_source_image"])
    if source is not None and source.load() is not None:
        result = source.segment(float(row["cell_centre_x"]), float(row["cell_centre_y"]), label)
        if result.box is not None:
            xyxy = tuple(float(v) for v in result.box.xyxy)
            _write_png(staging / rel, crop_cell(source.image, xyxy, margin, crop_size, source.fill))
            return CropRecord(rel, label, split, "allidb2", source_name, *xyxy)
        skipped[f"allidb2_native_framing_{result.status}"] += 1  # no box at the centre: the native crop it is
    image = _read_rgb(src)
    if image is None:
        skipped["allidb2_unreadable"] += 1
        log.warning("cannot read %s; skipped", src)
        return None
    x0, y0 = float(row["crop_x0"]), float(row["crop_y0"])
    _write_png(staging / rel, _resize_square(image, crop_size))
    return CropRecord(rel, label, split, "allidb2", source_name, x0, y0,
                      x0 + float(row["crop_w"]), y0 + float(row["crop_h"]))


def _allidb1_crops(
    source: _SourceImage, key: str, allidb2_centres: list[tuple[float, float, str]], staging: Path, split: str,
    crop_size: int, margin: float, radius: float, skipped: Counter, report: CropBuildReport,
) -> list[CropRecord]:
    image, points = source.load(), source.points
    if image is None:
        skipped["allidb1_unreadable_images"] += 1
        log.warning("cannot read %s; its %d points skipped", source.path, len(points))
        return []
    stem = Path(key).stem
    kept: list[tuple[float, float]] = []
    boxes: list[tuple[str, str, float, float, tuple[float, float, float, float] | None]] = []
    # blasts first: when a blast centroid and an "other" point mark the same cell, the expert blast label wins
    priority = {"blast": 0, "normal": 1}  # then "other" (may be a platelet)
    ordered = sorted(points, key=lambda p: priority.get(str(p.kind), 2))
    for point in ordered:
        x, y, kind = float(point.x), float(point.y), str(point.kind)
        label = "blast" if kind == "blast" else "normal"
        near2 = _nearest(allidb2_centres, x, y, radius)
        if near2 is not None:
            skipped["allidb1_same_cell_as_allidb2"] += 1
            if near2[2] != label:
                report.label_conflicts.append(
                    f"{key} ({x:.0f},{y:.0f}): ALL-IDB1 {kind} point vs ALL-IDB2 {near2[2]} crop; kept ALL-IDB2"
                )
            continue
        if _nearest([(kx, ky, "") for kx, ky in kept], x, y, radius) is not None:
            skipped["allidb1_duplicate_point"] += 1
            continue
        result = source.segment(x, y, kind)
        box = result.box  # what point_to_box returns; the status says why there is none
        if box is None:
            skipped[f"allidb1_{kind}_{result.status}"] += 1  # e.g. allidb1_other_platelet, allidb1_blast_failed
            if label == "normal":
                continue
        kept.append((x, y))
        boxes.append((label, kind, x, y, tuple(float(v) for v in box.xyxy) if box is not None else None))

    # a blast centroid is an expert call: never drop it for want of a box, frame it like this image's other cells
    sides = [max(b[2] - b[0], b[3] - b[1]) for *_, b in boxes if b is not None]
    default_side = float(np.median(sides)) if sides else 0.06 * max(image.shape[:2])
    records = []
    for label, kind, x, y, xyxy in boxes:
        if xyxy is None:
            skipped["allidb1_blast_default_box"] += 1  # kept, framed by the median box of the image
            half = default_side / 2
            xyxy = (x - half, y - half, x + half, y + half)
        crop = crop_cell(image, xyxy, margin, crop_size, source.fill)
        rel = f"{split}/{label}/allidb1_{stem}_{kind}_{int(round(x))}_{int(round(y))}.png"
        _write_png(staging / rel, crop)
        records.append(CropRecord(rel, label, split, "allidb1", key, *xyxy))
    return records


def _nearest(points: Iterable[tuple[float, float, str]], x: float, y: float, radius: float):
    best, best_d = None, radius
    for p in points:
        d = math.hypot(p[0] - x, p[1] - y)
        if d <= best_d:
            best, best_d = p, d
    return best


def _build_bccd(
    bccd_root: Path, staging: Path, skipped: Counter, crop_size: int, margin: float, limit: int | None
) -> list[CropRecord]:
    records: list[CropRecord] = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        stems = _read_bccd_split(bccd_root, split)
        for stem in stems:
            if stem in seen:
                raise ValueError(f"BCCD image {stem} is in both {seen[stem]} and {split}: test leakage")
            seen[stem] = split
        if limit is not None:
            stems = stems[:limit]
        for stem in stems:
            records += _bccd_crops(bccd_root, stem, staging, split, crop_size, margin, skipped)
    return records


def _read_bccd_split(bccd_root: Path, split: str) -> list[str]:
    path = bccd_root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: BCCD's official {split} split list")
    stems = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return list(dict.fromkeys(stems))  # a name listed twice is one image


def _bccd_crops(
    bccd_root: Path, stem: str, staging: Path, split: str, crop_size: int, margin: float, skipped: Counter
) -> list[CropRecord]:
    annotation = parse_voc(bccd_root / "Annotations" / f"{stem}.xml")
    wbc = [obj.xyxy for obj in annotation.objects if obj.name.strip().lower() == "wbc"]
    if not wbc:
        skipped["bccd_images_without_wbc"] += 1
        return []
    image = _read_rgb(bccd_root / "JPEGImages" / f"{stem}.jpg")
    if image is None:
        skipped["bccd_unreadable_images"] += 1
        log.warning("cannot read BCCD image %s; skipped", stem)
        return []
    h, w = image.shape[:2]
    kept: list[tuple[float, float, float, float]] = []
    for x1, y1, x2, y2 in wbc:
        box = (max(0.0, min(x1, x2)), max(0.0, min(y1, y2)), min(float(w), max(x1, x2)), min(float(h), max(y1, y2)))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            skipped["bccd_degenerate_boxes"] += 1
            continue
        if any(box_iou(box, other) >= BCCD_DUPLICATE_IOU for other in kept):
            skipped["bccd_duplicate_boxes"] += 1
            continue
        kept.append(box)
    fill = median_colour(image)
    records = []
    for index, box in enumerate(kept):
        rel = f"{split}/normal/bccd_{stem}_{index:02d}.png"
        _write_png(staging / rel, crop_cell(image, box, margin, crop_size, fill))
        records.append(CropRecord(rel, "normal", split, "bccd", f"{stem}.jpg", *box, extra_normal=True))
    return records


def _read_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR whatever the file holds
    return None if image is None else np.ascontiguousarray(image[:, :, ::-1])


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h != w:  # ALL-IDB2 crops are square; anything else is centre-cropped rather than distorted
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
    if image.shape[0] == size:
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interp)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    path.write_bytes(data.tobytes())  # inside the staging folder: the whole build is moved in atomically


def _check_no_leak(records: Sequence[CropRecord]) -> None:
    """Refuse to write a build in which one source image feeds two splits (the test would leak into training)."""
    family = {"allidb2": "allidb", "allidb1": "allidb", "bccd": "bccd"}
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in records:
        where[(family[rec.dataset], rec.source_image)].add(rec.split)
    leaks = sorted(f"{src} ({'/'.join(sorted(s))})" for (_, src), s in where.items() if len(s) > 1)
    if leaks:
        raise ValueError(f"{len(leaks)} source image(s) are in more than one split, e.g. {leaks[:3]}")


def _summarise(records: Sequence[CropRecord], report: CropBuildReport) -> None:
    counts: dict[str, dict[str, dict[str, int]]] = {
        s: {c: {d: 0 for d in DATASETS} for c in CLASS_NAMES} for s in SPLITS
    }
    sources: dict[str, dict[str, set[str]]] = {s: defaultdict(set) for s in SPLITS}
    for rec in records:
        counts[rec.split][rec.label][rec.dataset] += 1
        sources[rec.split]["bccd" if rec.dataset == "bccd" else "allidb"].add(rec.source_image)
    report.counts = counts
    report.totals = {s: sum(sum(c.values()) for c in counts[s].values()) for s in SPLITS}
    report.source_images = {s: {fam: len(v) for fam, v in sorted(sources[s].items())} for s in SPLITS}


def _write_split_file(path: Path, records: Sequence[CropRecord]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for rec in sorted(records, key=lambda r: (SPLITS.index(r.split), r.file)):
            writer.writerow(rec.row())


def _log_report(report: CropBuildReport) -> None:
    for split in SPLITS:
        parts = [
            f"{c} {sum(report.counts[split][c].values())} ("
            + ", ".join(f"{d} {n}" for d, n in report.counts[split][c].items() if n) + ")"
            for c in CLASS_NAMES
        ]
        log.info("crops %s: %s", split, "; ".join(parts))
    if report.skipped:
        log.info("skipped: %s", ", ".join(f"{k} {v}" for k, v in report.skipped.items()))
    for conflict in report.label_conflicts:
        log.warning("label conflict: %s", conflict)


# --------------------------------------------------------------------------------------------------------------------
# reading


def read_split_file(path: Path | str) -> list[CropRecord]:
    """The records of a split.csv written by build_crop_dataset, in file order."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a crop split file (missing columns {sorted(missing)})")
        records = []
        for line, row in enumerate(reader, start=2):
            if row["label"] not in CLASS_INDEX:
                raise ValueError(f"{path}:{line}: label {row['label']!r} is not one of {list(CLASS_NAMES)}")
            if row["split"] not in SPLITS:
                raise ValueError(f"{path}:{line}: split {row['split']!r} is not one of {list(SPLITS)}")
            records.append(CropRecord(
                file=row["file"], label=row["label"], split=row["split"], dataset=row["dataset"],
                source_image=row["source_image"], x1=float(row["x1"]), y1=float(row["y1"]), x2=float(row["x2"]),
                y2=float(row["y2"]), extra_normal=row["extra_normal"].strip() in ("1", "true", "True"),
            ))
    return records


class CropDataset:
    """A torch Dataset of (image tensor, label index) over a crop build.

    `source` is a split.csv (its folder is the image root; `split` picks train/val/test, None = all rows), a build
    folder holding split.csv, or a folder-per-class tree (`<source>/blast/*.png`, `<source>/normal/*.png`; with
    `split`, `<source>/<split>/<class>/`). Label indices always follow CLASS_NAMES. Without a `transform` an item is
    the crop as a float tensor in [0, 1], normalised with the ImageNet mean/std of classification.model; a
    `transform` receives the uint8 (3, H, W) tensor and returns the network input.
    """

    class_names = CLASS_NAMES
    class_to_idx = CLASS_INDEX

    def __init__(
        self,
        source: Path | str,
        split: str | None = None,
        transform: Callable[["torch.Tensor"], "torch.Tensor"] | None = None,
        include_extra_normal: bool = True,
    ) -> None:
        source = Path(source)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)} or None, not {split!r}")
        if source.is_dir() and (source / SPLIT_FILE).is_file():
            source = source / SPLIT_FILE
        if source.is_file():
            self.root = source.parent
            records = [r for r in read_split_file(source) if split is None or r.split == split]
        elif source.is_dir():
            self.root = source / split if split is not None else source
            records = self._scan(self.root, split)
        else:
            raise FileNotFoundError(f"crop dataset not found: {source}")
        if not include_extra_normal:
            records = [r for r in records if not r.extra_normal]
        self.records = records
        self.transform = transform
        self.split = split

    @staticmethod
    def _scan(root: Path, split: str | None) -> list[CropRecord]:
        records = []
        for name in CLASS_NAMES:
            folder = root / name
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in _IMAGE_EXTS:
                    records.append(CropRecord(str(path.relative_to(root)), name, split or "", "", "", 0, 0, 0, 0,
                                              extra_normal=path.name.startswith("bccd_")))
        if not records:
            raise FileNotFoundError(f"{root} holds no {'/'.join(CLASS_NAMES)} image folders")
        return records

    @property
    def labels(self) -> list[int]:
        return [CLASS_INDEX[r.label] for r in self.records]

    def class_counts(self) -> list[int]:
        counts = Counter(self.labels)
        return [counts.get(i, 0) for i in range(len(CLASS_NAMES))]

    def __len__(self) -> int:
        return len(self.records)

    def read_image(self, index: int) -> np.ndarray:
        path = self.root / self.records[index].file
        image = _read_rgb(path)
        if image is None:
            raise OSError(f"cannot read crop {path}")
        return image

    def __getitem__(self, index: int) -> tuple["torch.Tensor", int]:
        import torch

        image = torch.from_numpy(self.read_image(index)).permute(2, 0, 1).contiguous()
        if self.transform is not None:
            tensor = self.transform(image)
        else:
            from classification.model import IMAGENET_MEAN, IMAGENET_STD

            mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
            tensor = (image.float() / 255.0 - mean) / std
        return tensor, CLASS_INDEX[self.records[index].label]
