"""The white-cell detector's training set: BCCD, TXL-PBC and ALL-IDB1, three classes, one pixel size.

Why three classes: a detector that only ever saw white cells learns "stained blob = white cell", and the grey-blue
red cells of another lab's stain become white cells. Red cells (`rbc`) and platelets (`platelet`) are taught as
what they are where a source boxes them (BCCD's VOC files, TXL-PBC's YOLO files); downstream only `wbc` is used.
ALL-IDB1 boxes white cells only: its images are listed in the data yaml's `partial_labels`, and the trainer
(`detection.trainer`) does not teach its red cells as background of the other classes.

Why one pixel size: the sources' microscopes differ (a red cell is ~100 px in BCCD's 640x480 fields, ~150 px in
Raabin's, ~60-75 px in ALL-IDB1's), and a detector trained at mixed magnifications learns size as a cue. Every image
is resampled so that its red cells measure `rbc_px` (red-cell ruler: `workbench.core.scale`), and the pipeline resamples
every smear to the same size before detection.

ALL-IDB1 labels come from the census (`workbench.builders.census`): every nucleated cell, marked or not, smudge cells
included, is a `wbc` box; only the stained blobs the census calls ambiguous are painted with the background. The
big ALL-IDB1 fields are cut into `tile` px tiles (a grid, the last tile flush with the border); a cell cut by a tile
edge keeps its visible part as a box, as a cell at a field's border does in BCCD.

Layout under `out_dir` (ultralytics YOLO; images JPEG):

    <source>/images/<split>/*.jpg, <source>/labels/<split>/*.txt, <source>/data.yaml  (per-source training sets)
    data.yaml          all sources per split, names {0: wbc, 1: rbc, 2: platelet}, partial_labels, pixel_size
    images.csv         one row per written image: source, group, split, original, scale factor, red-cell estimate
    build_report.json  counts per source x split x class, scale estimates per source, what was painted
    eval/<source>/     the val and test images as they are (symlinks to the originals, native pixels) with their
                       labels: what `workbench eval detection --data eval.yaml` measures, per source, through the
                       same pixel-size estimate, resampling and tiling as `analyze`
    eval.yaml          {sources: {name: eval/<source>/data.yaml}}
    eval_groups.yaml   the same images per group (lab / camera / diagnosis, as images.csv names them):
                       {sources: {group: eval/<source>/groups/<group>.yaml}}, each a list of its images
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import yaml

from workbench.builders.allidb_split import allidb1_slice
from workbench.builders.bccd import BCCD_SPLITS, _read_split
from workbench.builders.census import ImageCensus
from workbench.core.boxes import box_iou, clear_of_border
from workbench.core.fileio import check_build_dir, csv_text, replace_build, write_atomic
from workbench.core.scale import RBC_DIAMETER_UM, estimate_rbc_scale
from workbench.core.segmentation import camera_name, paint_background, stain_map
from workbench.core.voc import parse_voc

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("wbc", "rbc", "platelet")
WBC, RBC, PLATELET = 0, 1, 2
SPLITS = ("train", "val", "test")
RBC_PX = 56.0            # red-cell diameter every image is resampled to (~0.134 um/px)
REPORT_NAME = "build_report.json"
VOC_CLASSES = {"wbc": WBC, "rbc": RBC, "platelets": PLATELET}
TXL_SOURCES = ("raabin", "bcd")
MIN_BOX_PX = 4.0         # a clipped box narrower than this (after resampling) is dropped
DUPLICATE_IOU = 0.9      # two boxes of one class overlapping this much are one object listed twice (BCCD XML)
# A platelet is 2-3 um across, a red cell ~7.5 um and a white cell 7-20 um: a box labelled platelet whose shorter
# side is at least the image's red-cell diameter is a white cell the source mislabelled. In BCCD and TXL-PBC exactly
# two boxes are (BCCD 00133 train, 00135 test: a monocyte and a neutrophil, looked at); the widest true platelet box
# is 0.78 of its image's red cells.
PLATELET_MAX_RBC = 1.0

Box = tuple[float, float, float, float]


@dataclass
class SourceImage:
    """One original image to write: where it comes from and its boxes (class id, xyxy in original pixels)."""

    source: str              # bccd | txl_raabin | txl_bcd | allidb1
    group: str               # lab / camera / diagnosis stratum for reports
    split: str
    path: Path
    boxes: list[tuple[int, Box]]
    paint: list[Box] = field(default_factory=list)   # ALL-IDB1 ambiguous blobs: painted with the background
    platelets_as_wbc: int = 0                          # boxes labelled platelet but as wide as a red cell (see above)


@dataclass
class SourceReport:
    images: dict[str, int] = field(default_factory=dict)              # split -> images written (tiles for ALL-IDB1)
    originals: dict[str, int] = field(default_factory=dict)           # split -> original images
    boxes: dict[str, dict[str, int]] = field(default_factory=dict)    # split -> class -> boxes
    rbc_px: dict[str, float] = field(default_factory=dict)            # p5 / p50 / p95 of the red-cell estimates
    not_confident: int = 0                                            # estimates replaced by the source median
    painted_blobs: int = 0
    dropped_duplicates: int = 0
    platelets_as_wbc: int = 0                                          # mislabelled white cells (PLATELET_MAX_RBC)


@dataclass
class MultiSourceReport:
    datasets_root: str
    out_dir: str
    rbc_px: float
    um_per_px: float
    tile: int
    seed: int
    limit: int | None
    jpeg_quality: int
    classes: list[str]
    partial_labels: dict[str, list[int]]
    sources: dict[str, SourceReport] = field(default_factory=dict)
    created: str = ""
    seconds: float = 0.0

    def summary_line(self) -> str:
        parts = []
        for name, sr in self.sources.items():
            wbc = sum(b.get("wbc", 0) for b in sr.boxes.values())
            images = "/".join(str(sr.images.get(s, 0)) for s in SPLITS)
            parts.append(f"{name} {images} images (train/val/test), {wbc} wbc")
        return "; ".join(parts) + f"; red cells resampled to {self.rbc_px:g} px ({self.um_per_px:.4f} um/px)"


# --------------------------------------------------------------------------------------------------------------------
# reading the sources


def _dedup(boxes: list[tuple[int, Box]], width: int, height: int) -> tuple[list[tuple[int, Box]], int]:
    kept: list[tuple[int, Box]] = []
    dropped = 0
    for cls, (x1, y1, x2, y2) in boxes:
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
               min(max(y2, 0.0), height))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            dropped += 1
            continue
        if any(c == cls and box_iou(box, b) >= DUPLICATE_IOU for c, b in kept):
            dropped += 1
            continue
        kept.append((cls, box))
    return kept, dropped


def _labelled_red_cell_side(boxes: Sequence[tuple[int, Box]], width: int, height: int) -> float | None:
    """The median side of the labelled red-cell boxes that do not touch the border (a ruler drawn by the
    annotators), None with fewer than 3."""
    sides = [((b[2] - b[0]) + (b[3] - b[1])) / 2 for c, b in boxes if c == RBC and clear_of_border(b, width, height, 1)]
    return float(np.median(sides)) if len(sides) >= 3 else None


def wide_platelets_as_wbc(boxes: list[tuple[int, Box]], width: int, height: int
                          ) -> tuple[list[tuple[int, Box]], int]:
    """The boxes with every platelet box whose shorter side is at least the image's red-cell diameter (its labelled
    red cells; without 3 of them nothing changes) relabelled `wbc`, and how many were."""
    side = _labelled_red_cell_side(boxes, width, height)
    if side is None:
        return boxes, 0
    limit = PLATELET_MAX_RBC * side
    out = [(WBC if c == PLATELET and min(x2 - x1, y2 - y1) >= limit else c, (x1, y1, x2, y2))
           for c, (x1, y1, x2, y2) in boxes]
    return out, sum(a[0] != b[0] for a, b in zip(boxes, out))


def _source_image(source: str, split: str, path: Path, boxes: list[tuple[int, Box]], width: int,
                  height: int) -> SourceImage:
    boxes, relabelled = wide_platelets_as_wbc(boxes, width, height)
    return SourceImage(source, source, split, path, boxes, platelets_as_wbc=relabelled)


def bccd_images(bccd_root: Path, limit: int | None = None) -> list[SourceImage]:
    """BCCD with its official split; VOC classes WBC / RBC / Platelets."""
    out = []
    for split in BCCD_SPLITS:
        stems = _read_split(bccd_root, split)[:limit] if limit else _read_split(bccd_root, split)
        for stem in stems:
            ann = parse_voc(bccd_root / "Annotations" / f"{stem}.xml")
            boxes = [(VOC_CLASSES[o.name.strip().casefold()], o.xyxy) for o in ann.objects
                     if o.name.strip().casefold() in VOC_CLASSES]
            out.append(_source_image("bccd", split, bccd_root / "JPEGImages" / f"{stem}.jpg", boxes, ann.width,
                                     ann.height))
    return out


def txl_images(txl_root: Path, limit: int | None = None) -> list[SourceImage]:
    """TXL-PBC's two kept sources with TXL's own split; YOLO classes 0 WBC, 1 RBC, 2 Platelets (= ours)."""
    out = []
    counts: Counter = Counter()
    with (txl_root / "images.csv").open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image"])
    for row in rows:
        source, split = row["source"], row["split"]
        if source not in TXL_SOURCES or split not in SPLITS:
            continue
        if limit and counts[(source, split)] >= limit:
            continue
        counts[(source, split)] += 1
        image = txl_root / row["image"]
        width, height = int(row["width"]), int(row["height"])
        label = txl_root / row["image"].replace("/images/", "/labels/").rsplit(".", 1)[0]
        boxes = []
        for line in Path(f"{label}.txt").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
            boxes.append((cls, ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                                (cy + h / 2) * height)))
        out.append(_source_image(f"txl_{source}", split, image, boxes, width, height))
    return out


def allidb_images(allidb_root: Path, census: dict[str, ImageCensus], seed: int = 0,
                  limit: int | None = None, splits: Sequence[str] | None = None) -> list[SourceImage]:
    """ALL-IDB1 by THE ALL-IDB1 split (workbench.builders.allidb_split.allidb1_slice), every census cell a wbc box;
    with `splits`, only the images of those splits (the census needs only those)."""
    out = []
    for name, part in allidb1_slice(allidb_root, seed, limit).items():
        if splits is not None and part not in splits:
            continue
        if name not in census:
            raise ValueError(f"the census has no entry for {name}: rebuild it (workbench dataset census)")
        c = census[name]
        group = f"allidb1_{camera_name(c.width, c.height)}_{c.diagnosis}"
        out.append(SourceImage("allidb1", group, part, allidb_root / "ALL_IDB1" / "im" / name,
                               [(WBC, cell.xyxy) for cell in c.cells], paint=list(c.ambiguous)))
    return out


# --------------------------------------------------------------------------------------------------------------------
# writing


def red_cell_diameter(rgb: np.ndarray, boxes: Sequence[tuple[int, Box]] = ()) -> tuple[float, bool]:
    """The image's red-cell diameter: the median of its labelled red-cell boxes that do not touch the border (a
    ruler drawn by the annotators) when it has at least 3, else the estimate from the pixels (workbench.core.scale)."""
    height, width = rgb.shape[:2]
    side = _labelled_red_cell_side(boxes, width, height)
    if side is not None:
        return side, True
    estimate = estimate_rbc_scale(rgb)
    return estimate.rbc_diameter_px, estimate.confident


def _paint(rgb: np.ndarray, paint: Sequence[Box], keep: Sequence[Box], seed: int) -> None:
    """Paint the stained pixels of each `paint` box (not those of a kept cell) with the local background."""
    if not paint:
        return
    stain = stain_map(rgb)
    region = np.zeros(rgb.shape[:2], bool)
    for x1, y1, x2, y2 in paint:
        region[int(y1):int(math.ceil(y2)), int(x1):int(math.ceil(x2))] = True
    keep_mask = np.zeros(rgb.shape[:2], bool)
    for x1, y1, x2, y2 in keep:
        keep_mask[int(y1):int(math.ceil(y2)), int(x1):int(math.ceil(x2))] = True
    mask = region & (stain.cells > 0) & ~keep_mask
    if mask.any():
        mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))).astype(bool)
        mask &= ~keep_mask
        paint_background(rgb, mask, keep_mask, seed)


def _grid(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile))
    return starts + [length - tile]


def _label_lines(boxes: Iterable[tuple[int, Box]], x0: float, y0: float, w: int, h: int) -> list[str]:
    lines = []
    for cls, (x1, y1, x2, y2) in boxes:
        cx1, cy1, cx2, cy2 = max(x1 - x0, 0.0), max(y1 - y0, 0.0), min(x2 - x0, w), min(y2 - y0, h)
        if cx2 - cx1 < MIN_BOX_PX or cy2 - cy1 < MIN_BOX_PX:
            continue
        lines.append(f"{cls} {(cx1 + cx2) / 2 / w:.6f} {(cy1 + cy2) / 2 / h:.6f} {(cx2 - cx1) / w:.6f} "
                     f"{(cy2 - cy1) / h:.6f}\n")
    return lines


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(data.tobytes())


def build_multisource_detection(
    datasets_root: Path,
    out_dir: Path,
    census: dict[str, ImageCensus],
    *,
    rbc_px: float = RBC_PX,
    tile: int = 640,
    seed: int = 0,
    limit: int | None = None,
    jpeg_quality: int = 92,
    sources: Sequence[str] = ("bccd", "txl", "allidb1"),
) -> MultiSourceReport:
    """Build the dataset (see the module docstring) under `out_dir`, staged and moved in when complete."""
    started = time.perf_counter()
    datasets_root, out_dir = Path(datasets_root).resolve(), Path(out_dir).resolve()
    if not 16 <= rbc_px <= 200:
        raise ValueError(f"rbc_px must be in [16, 200], not {rbc_px}")
    check_build_dir(out_dir, REPORT_NAME)
    images: list[SourceImage] = []
    if "bccd" in sources:
        images += bccd_images(datasets_root / "bccd" / "BCCD", limit)
    if "txl" in sources:
        images += txl_images(datasets_root / "txl-pbc", limit)
    if "allidb1" in sources:
        images += allidb_images(datasets_root / "all-idb", census, seed, limit)
    partial = {"allidb1": [WBC]} if "allidb1" in sources else {}
    report = MultiSourceReport(str(datasets_root), str(out_dir), rbc_px, round(RBC_DIAMETER_UM / rbc_px, 5), tile,
                               seed, limit, jpeg_quality, list(CLASSES), partial)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        rows = _write_all(images, staging, report, rbc_px, tile, seed, jpeg_quality)
        names = dict(enumerate(CLASSES))
        source_names = sorted({i.source for i in images})
        for source in source_names:
            data = {"path": str(out_dir / source), **{s: f"images/{s}" for s in SPLITS}, "names": names}
            if source in partial:
                data["partial_labels"] = {source: partial[source]}
            (staging / source / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        combined = {"path": str(out_dir),
                    **{s: [f"{src}/images/{s}" for src in source_names] for s in SPLITS},
                    "names": names, "partial_labels": partial,
                    "pixel_size": {"rbc_px": rbc_px, "um_per_px": report.um_per_px}}
        (staging / "data.yaml").write_text(yaml.safe_dump(combined, sort_keys=False), encoding="utf-8")
        _write_eval_sets(images, staging, out_dir, names)
        columns = ("file", "source", "group", "split", "original", "width0", "height0", "factor", "rbc_px_estimate",
                   "confident", "wbc", "rbc", "platelet")
        write_atomic(staging / "images.csv", csv_text(rows, columns))
        from datetime import datetime, timezone

        report.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.seconds = round(time.perf_counter() - started, 1)
        write_atomic(staging / REPORT_NAME, json.dumps(asdict(report), indent=2) + "\n")
        replace_build(staging, out_dir, (*source_names, "data.yaml", "images.csv", REPORT_NAME, "eval", "eval.yaml",
                                         "eval_groups.yaml"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("multi-source detection set: %s", report.summary_line())
    return report


def _write_eval_sets(images: list[SourceImage], root: Path, out_dir: Path, names: dict[int, str]) -> None:
    """Native-pixel evaluation sets of the val and test splits, one per source (see the module docstring)."""
    from PIL import Image

    sources: dict[str, str] = {}
    groups: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for item in images:
        if item.split == "train":
            continue
        base = root / "eval" / item.source
        groups[(item.source, item.group)][item.split].append(f"../images/{item.split}/{item.path.name}")
        (base / "images" / item.split).mkdir(parents=True, exist_ok=True)
        (base / "labels" / item.split).mkdir(parents=True, exist_ok=True)
        link = base / "images" / item.split / item.path.name
        if not link.exists():
            link.symlink_to(item.path.resolve())
        with Image.open(item.path) as im:   # the header only
            width, height = im.size
        boxes, _ = _dedup(item.boxes, width, height)
        lines = _label_lines(boxes, 0.0, 0.0, width, height)
        (base / "labels" / item.split / f"{item.path.stem}.txt").write_text("".join(lines), encoding="utf-8")
        if item.paint:   # the ambiguous blobs: nobody can say how many cells they hold, so eval ignores them
            (base / "ignore" / item.split).mkdir(parents=True, exist_ok=True)
            ignore = _label_lines([(WBC, box) for box in item.paint], 0.0, 0.0, width, height)
            (base / "ignore" / item.split / f"{item.path.stem}.txt").write_text("".join(ignore), encoding="utf-8")
        if item.source not in sources:
            data = {"path": str(out_dir / "eval" / item.source), "val": "images/val", "test": "images/test",
                    "names": names}
            (base / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            sources[item.source] = f"eval/{item.source}/data.yaml"
    (root / "eval.yaml").write_text(yaml.safe_dump({"sources": dict(sorted(sources.items()))}, sort_keys=False),
                                    encoding="utf-8")
    group_sources: dict[str, str] = {}
    for (source, group), splits in sorted(groups.items()):
        folder = root / "eval" / source / "groups"
        folder.mkdir(exist_ok=True)
        data = {"path": str(out_dir / "eval" / source), "names": names}
        for split, lines in splits.items():   # paths relative to the list (ultralytics' .txt split lists)
            (folder / f"{group}_{split}.txt").write_text("".join(f"{line}\n" for line in sorted(lines)),
                                                         encoding="utf-8")
            data[split] = f"groups/{group}_{split}.txt"
        (folder / f"{group}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        group_sources[group] = f"eval/{source}/groups/{group}.yaml"
    (root / "eval_groups.yaml").write_text(yaml.safe_dump({"sources": group_sources}, sort_keys=False),
                                           encoding="utf-8")


def _write_all(images: list[SourceImage], root: Path, report: MultiSourceReport, rbc_px: float, tile: int,
               seed: int, quality: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # Two passes per source: the red-cell estimates first, so that an image whose estimate is not trusted gets the
    # source's median (one microscope per source) instead of a guess.
    by_source: dict[str, list[SourceImage]] = defaultdict(list)
    for image in images:
        by_source[image.source].append(image)
    for source, items in by_source.items():
        sr = report.sources.setdefault(source, SourceReport())
        measured = []
        for item in items:
            bgr = cv2.imread(str(item.path))
            if bgr is None:
                raise FileNotFoundError(f"cannot read {item.path}")
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            diameter, confident = red_cell_diameter(rgb, item.boxes)
            measured.append((item, diameter, confident))
            sr.platelets_as_wbc += item.platelets_as_wbc
        good = [d for _, d, ok in measured if ok]
        median = float(np.median(good)) if good else rbc_px
        if good:
            sr.rbc_px = {f"p{q}": round(float(np.percentile(good, q)), 1) for q in (5, 50, 95)}
        for item, diameter, confident in measured:
            if not confident:   # a source is one microscope: its median is the best guess (ALL-IDB1 has two
                sr.not_confident += 1   # magnifications, but each image's own estimate is used when trusted)
                diameter = median
            rows += _write_image(item, root, sr, diameter / rbc_px, tile, seed, quality, diameter, confident)
        log.info("%s: %s", source, sr)
    return rows


def _write_image(item: SourceImage, root: Path, sr: SourceReport, factor: float, tile: int, seed: int,
                 quality: int, diameter: float, confident: bool) -> list[dict[str, Any]]:
    rgb = np.ascontiguousarray(cv2.imread(str(item.path))[:, :, ::-1])
    height0, width0 = rgb.shape[:2]
    boxes, dropped = _dedup(item.boxes, width0, height0)
    sr.dropped_duplicates += dropped
    if item.paint:
        _paint(rgb, item.paint, [b for _, b in boxes], zlib.crc32(f"{seed}:{item.path.name}".encode()))
        sr.painted_blobs += len(item.paint)
    width, height = max(1, round(width0 / factor)), max(1, round(height0 / factor))
    interpolation = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (width, height), interpolation=interpolation)
    scaled = [(c, (x1 / factor, y1 / factor, x2 / factor, y2 / factor)) for c, (x1, y1, x2, y2) in boxes]
    image_dir = root / item.source / "images" / item.split
    label_dir = root / item.source / "labels" / item.split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    sr.originals[item.split] = sr.originals.get(item.split, 0) + 1
    windows = ([(x0, y0) for y0 in _grid(height, tile) for x0 in _grid(width, tile)]
               if max(width, height) > tile else [(0, 0)])
    rows = []
    for x0, y0 in windows:
        w, h = min(tile, width - x0), min(tile, height - y0)
        crop = small[y0:y0 + h, x0:x0 + w]
        lines = _label_lines(scaled, x0, y0, w, h)
        stem = item.path.stem if len(windows) == 1 else f"{item.path.stem}_x{x0:04d}_y{y0:04d}"
        _write_jpeg(image_dir / f"{stem}.jpg", crop, quality)
        (label_dir / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
        per_class = Counter(CLASSES[int(line.split()[0])] for line in lines)
        split_counts = sr.boxes.setdefault(item.split, {c: 0 for c in CLASSES})
        for c, n in per_class.items():
            split_counts[c] += n
        sr.images[item.split] = sr.images.get(item.split, 0) + 1
        rows.append({"file": f"{item.source}/images/{item.split}/{stem}.jpg", "source": item.source,
                     "group": item.group, "split": item.split, "original": str(item.path), "width0": width0,
                     "height0": height0, "factor": round(factor, 4), "rbc_px_estimate": round(diameter, 1),
                     "confident": int(confident), **{c: per_class.get(c, 0) for c in CLASSES}})
    return rows
