"""The blast / non-blast crop set: every white cell the data can label, from five labs, at one field of view.

Why these sources: the classifier must learn the cell, not the camera. Its hard negatives are the non-blast cells of
ALL smears (smudge cells, bare nuclei, lymphocytes of the same patients, same camera and stain as the blasts), and
white cells of every type from other labs. So the crops are:

- `allidb1`: every cell of the ALL-IDB1 census (`workbench.builders.census`): blasts (expert points), marked
  non-blast cells (ALL-IDB2 normal crops, `other_points`), and the unmarked white cells of ALL images, which are
  non-blast because every blast of an ALL image is marked (smudge cells included). Unmarked cells at the border of
  an ALL image are left out: their blast point may lie outside the image. In healthy images every cell is non-blast.
  ALL-IDB2 is not read: its crops are cells of ALL-IDB1 images, which the census already holds (with their labels).
- `bccd`, `txl_raabin`, `txl_bcd`: every labelled white-cell box (healthy donors / no leukaemia): non-blast.
- `pbc`: the PBC single-cell images of every type (lymphocytes, monocytes, neutrophils, immature granulocytes,
  erythroblasts, ...), healthy donors: non-blast; de-duplicated by md5.

Why one field of view: each crop is a square `field_um` micrometres wide around the cell (wider only when the cell
is larger), converted to pixels with the image's red-cell ruler (`workbench.core.scale`, or the labelled red-cell boxes
where a source has them), and resized to `size` px. A small lymphocyte then looks small and a blast large, whatever
the microscope; the pipeline frames its detections the same way (`workbench.core.crops.field_window`).

Splits are by source image: ALL-IDB1 by `workbench.builders.allidb_split.allidb1_split`, BCCD and TXL-PBC by their own published
splits, PBC (one cell per image) by a hash of the file's md5, 70/15/15. Nothing of a test image is trained on.

Layout under `out_dir`: `{train,val,test}/{blast,normal}/<source>_<name>.jpg`, `split.csv` (one row per crop with
its source, group (lab / camera), diagnosis, cell type, box and pixel size), `allidb1_split.csv`, `build_report.json`
(counts per split x class x source / group / cell type, and every option of the build, so that it can be repeated).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from workbench.builders.allidb_split import allidb1_slice, allidb1_split, write_split_csv
from workbench.builders.census import ImageCensus, non_blast_label
from workbench.builders.crop_records import (
    CLASS_NAMES,
    CSV_FIELDS,
    REPORT_FILE,
    SPLIT_FILE,
    SPLITS,
    CropRecord,
)
from workbench.builders.detection_set import (
    RBC,
    bccd_images,
    red_cell_diameter,
    txl_images,
)
from workbench.core.crops import crop_cell, median_colour
from workbench.core.fileio import (
    atomic_open,
    check_build_dir,
    replace_build,
    write_atomic,
)
from workbench.core.scale import RBC_DIAMETER_UM
from workbench.core.segmentation import camera_name

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("allidb1", "bccd", "txl", "pbc")
FIELD_UM = 22.0          # field of view of a crop: a large blast (~18 um) with some context, a small lymphocyte small
ALLIDB1_SPLIT_FILE = "allidb1_split.csv"
PBC_FRACTIONS = (0.70, 0.15, 0.15)
JPEG_QUALITY = 95

__all__ = ["FIELD_UM", "SOURCES", "CropBuildOptions", "build_crops"]


@dataclass
class CropBuildOptions:
    """Everything a build depends on (stored in build_report.json and, through training, in the weights' manifest
    entry, so that the README's command rebuilds exactly the shipped classifier's data)."""

    size: int = 160
    field_um: float = FIELD_UM
    margin: float = 0.15
    seed: int = 0
    limit: int | None = None
    sources: tuple[str, ...] = SOURCES
    census: str = ""                 # the census file used (its sha256 is recorded too)
    census_sha256: str = ""
    census_detector: str = ""        # name + sha256 of the detector that mined the census

    def check(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be at least 16 px, not {self.size}")
        if not 4.0 <= self.field_um <= 100.0:
            raise ValueError(f"field_um must be in [4, 100] micrometres, not {self.field_um}")
        if self.margin < 0:
            raise ValueError(f"margin must not be negative, not {self.margin}")
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise ValueError(f"sources must be some of {list(SOURCES)}, not {list(self.sources)}")


@dataclass
class CropBuildReport:
    out_dir: str
    datasets_root: str
    options: dict[str, Any]
    class_names: list[str]
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)   # split -> label -> source
    groups: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)   # split -> label -> group
    cell_types: dict[str, dict[str, int]] = field(default_factory=dict)          # split -> cell type
    source_images: dict[str, dict[str, int]] = field(default_factory=dict)       # split -> source -> images
    um_per_px: dict[str, dict[str, float]] = field(default_factory=dict)         # source -> p5 / p50 / p95
    skipped: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    created: str = ""
    seconds: float = 0.0

    def summary_line(self) -> str:
        parts = []
        for split in SPLITS:
            per = self.counts.get(split, {})
            parts.append(f"{split} {self.totals.get(split, 0)} (" + ", ".join(
                f"{c} {sum(per.get(c, {}).values())}" for c in CLASS_NAMES) + ")")
        skipped = sum(self.skipped.values())
        return "; ".join(parts) + (f"; {skipped} skipped" if skipped else "")


@dataclass
class _Cell:
    """One crop to cut: its label, box (or None: the image's centre cell, PBC) and descriptors."""

    label: str
    box: tuple[float, float, float, float] | None
    cell_type: str


@dataclass
class _Image:
    source: str
    group: str
    diagnosis: str
    split: str
    path: Path
    cells: list[_Cell]
    red_cell_boxes: list[tuple[int, tuple[float, float, float, float]]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# sources


def _allidb1(root: Path, census: dict[str, ImageCensus], seed: int, limit: int | None,
             skipped: Counter) -> Iterator[_Image]:
    for name, part in allidb1_slice(root, seed, limit).items():
        if name not in census:
            raise ValueError(f"the census has no entry for {name}: rebuild it (workbench dataset census)")
        c = census[name]
        cells = []
        for cell in c.cells:
            label = non_blast_label(cell, c.diagnosis)
            if label is None:
                skipped["allidb1_unmarked_at_border_of_all_image"] += 1
                continue
            kind = cell.kind if cell.kind in ("blast", "unmarked") else "marked_normal"
            cell_type = f"unmarked_{cell.found_by}" if cell.kind == "unmarked" else kind
            cells.append(_Cell(label, tuple(cell.xyxy), cell_type))
        yield _Image("allidb1", f"allidb1_{camera_name(c.width, c.height)}", c.diagnosis, part,
                     root / "ALL_IDB1" / "im" / name, cells)


def _boxed(items, source_of) -> Iterator[_Image]:
    """BCCD / TXL-PBC images (workbench.builders.detection_set readers): every white-cell box is a non-blast crop."""
    for item in items:
        cells = [_Cell("normal", box, "wbc") for cls, box in item.boxes if cls == 0]
        yield _Image(source_of(item), item.group, "healthy" if item.source.startswith("txl") else "unknown",
                     item.split, item.path, cells, red_cell_boxes=[(c, b) for c, b in item.boxes if c == RBC])


def _pbc_split(md5: str) -> str:
    value = int(md5[:8], 16) / 0xFFFFFFFF
    return "train" if value < PBC_FRACTIONS[0] else "val" if value < PBC_FRACTIONS[0] + PBC_FRACTIONS[1] else "test"


def _pbc(root: Path, limit: int | None, skipped: Counter) -> Iterator[_Image]:
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["file"])
    seen: set[str] = set()
    taken: Counter = Counter()
    for row in rows:
        if row["md5"] in seen:
            skipped["pbc_duplicate_md5"] += 1
            continue
        seen.add(row["md5"])
        part = _pbc_split(row["md5"])
        if limit and taken[(part, row["class"])] >= max(1, limit // 4):
            continue
        taken[(part, row["class"])] += 1
        yield _Image("pbc", "pbc", "healthy", part, root / row["file"], [_Cell("normal", None, f"pbc_{row['class']}")])


# --------------------------------------------------------------------------------------------------------------------
# building


def build_crops(datasets_root: Path | str, out_dir: Path | str, census: dict[str, ImageCensus] | None,
                options: CropBuildOptions | None = None) -> CropBuildReport:
    """Cut, label and split the crops (see the module docstring) into `out_dir` (staged, then moved in)."""
    started = time.perf_counter()
    options = options or CropBuildOptions()
    options.check()
    datasets_root, out_dir = Path(datasets_root).resolve(), Path(out_dir).resolve()
    if "allidb1" in options.sources and census is None:
        raise ValueError("the ALL-IDB1 crops need the census (workbench dataset census)")
    check_build_dir(out_dir, REPORT_FILE)
    report = CropBuildReport(str(out_dir), str(datasets_root), _plain(asdict(options)), list(CLASS_NAMES))
    skipped: Counter = Counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        records: list[CropRecord] = []
        scales: dict[str, list[float]] = {}
        for image in _images(datasets_root, census, options, skipped):
            records += _cut(image, staging, options, skipped, scales)
        if not records:
            raise ValueError(f"no crops were produced from {datasets_root} (are the datasets there?)")
        if "allidb1" in options.sources:
            write_split_csv(staging / ALLIDB1_SPLIT_FILE, allidb1_split(datasets_root / "all-idb", options.seed))
        _summarise(records, report, scales)
        report.skipped = dict(sorted(skipped.items()))
        report.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.seconds = round(time.perf_counter() - started, 1)
        _write_split_file(staging / SPLIT_FILE, records)
        write_atomic(staging / REPORT_FILE, json.dumps(asdict(report), indent=2) + "\n")
        replace_build(staging, out_dir, (*SPLITS, SPLIT_FILE, ALLIDB1_SPLIT_FILE, REPORT_FILE))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("crops: %s", report.summary_line())
    return report


def _images(root: Path, census, options: CropBuildOptions, skipped: Counter) -> Iterator[_Image]:
    if "allidb1" in options.sources:
        yield from _allidb1(root / "all-idb", census, options.seed, options.limit, skipped)
    if "bccd" in options.sources:
        yield from _boxed(bccd_images(root / "bccd" / "BCCD", options.limit), lambda item: "bccd")
    if "txl" in options.sources:
        yield from _boxed(txl_images(root / "txl-pbc", options.limit), lambda item: item.source)
    if "pbc" in options.sources:
        yield from _pbc(root / "pbc", options.limit, skipped)


def _cut(image: _Image, root: Path, options: CropBuildOptions, skipped: Counter,
         scales: dict[str, list[float]]) -> list[CropRecord]:
    if not image.cells:
        return []
    bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
    if bgr is None:
        skipped[f"{image.source}_unreadable"] += 1
        log.warning("cannot read %s; skipped", image.path)
        return []
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    height, width = rgb.shape[:2]
    diameter, confident = red_cell_diameter(rgb, image.red_cell_boxes)
    seen = scales.setdefault(image.source, [])
    if confident:
        um_per_px = RBC_DIAMETER_UM / diameter
        seen.append(um_per_px)
    else:
        # one source is one microscope: an image without a trusted ruler takes the source's pixel size so far
        skipped[f"{image.source}_scale_from_source_median"] += 1
        um_per_px = (float(np.median(seen)) if seen else RBC_DIAMETER_UM / diameter if math.isfinite(diameter)
                     else RBC_DIAMETER_UM / 56.0)
    field_px = options.field_um / um_per_px
    fill = median_colour(rgb)
    records = []
    for index, cell in enumerate(image.cells):
        box = cell.box or (width / 2 - 1, height / 2 - 1, width / 2 + 1, height / 2 + 1)
        crop = crop_cell(rgb, box, options.margin, options.size, fill, field_px=field_px)
        name = f"{image.source}_{image.path.stem}_{index:02d}.jpg"
        rel = f"{image.split}/{cell.label}/{name}"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"cannot encode {path}")
        path.write_bytes(data.tobytes())
        x1, y1, x2, y2 = box if cell.box else (0.0, 0.0, float(width), float(height))
        records.append(CropRecord(
            file=rel, label=cell.label, split=image.split, dataset=image.source, source_image=image.path.name,
            x1=x1, y1=y1, x2=x2, y2=y2, extra_normal=image.source != "allidb1", group=image.group,
            diagnosis=image.diagnosis, cell_type=cell.cell_type, um_per_px=round(um_per_px, 5)))
    return records


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _summarise(records: Sequence[CropRecord], report: CropBuildReport, scales: dict[str, list[float]]) -> None:
    for split in SPLITS:
        rows = [r for r in records if r.split == split]
        report.totals[split] = len(rows)
        report.counts[split] = {c: dict(sorted(Counter(r.dataset for r in rows if r.label == c).items()))
                                for c in CLASS_NAMES}
        report.groups[split] = {c: dict(sorted(Counter(f"{r.group}/{r.diagnosis}" for r in rows if r.label == c)
                                               .items())) for c in CLASS_NAMES}
        report.cell_types[split] = dict(sorted(Counter(r.cell_type for r in rows).items()))
        report.source_images[split] = dict(sorted(Counter(r.dataset for r in
                                                          {(r.dataset, r.source_image): r for r in rows}.values())
                                                  .items()))
    report.um_per_px = {s: {f"p{q}": round(float(np.percentile(v, q)), 4) for q in (5, 50, 95)}
                        for s, v in sorted(scales.items())}


def _write_split_file(path: Path, records: Sequence[CropRecord]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for rec in sorted(records, key=lambda r: (SPLITS.index(r.split), r.file)):
            writer.writerow(rec.row())
