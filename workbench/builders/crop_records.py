"""The crop build's file format: one `CropRecord` per crop in `split.csv`, written by the crop builder
(`workbench.builders.crop_set`) and read by training, evaluation and the comparison tools."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.core.classmap import BLAST_CLASSES

CLASS_NAMES: tuple[str, ...] = BLAST_CLASSES  # index 0 = blast = the positive class; never renumbered
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FILE = "split.csv"
REPORT_FILE = "build_report.json"
REQUIRED_FIELDS = ("file", "label", "split", "dataset", "source_image", "x1", "y1", "x2", "y2", "extra_normal")
CSV_FIELDS = (*REQUIRED_FIELDS, "group", "diagnosis", "cell_type", "um_per_px")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class CropRecord:
    """One crop: its file relative to the dataset folder, label, split, origin and box in the source image.

    `dataset`: the source (allidb1, bccd, txl_raabin, txl_bcd, pbc); `group`: the lab / camera stratum used for
    balanced sampling and per-group metrics; `diagnosis`: ALL / healthy / unknown of the source image; `cell_type`:
    blast, marked_normal, unmarked_segmentation, unmarked_smudge, wbc, pbc_<type>; `extra_normal`: a normal cell
    from outside ALL-IDB (evaluation can leave these out); `um_per_px`: the source image's pixel size."""

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
    group: str = ""
    diagnosis: str = ""
    cell_type: str = ""
    um_per_px: float = 0.0

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        for key in ("x1", "y1", "x2", "y2"):
            row[key] = f"{row[key]:.1f}"
        row["extra_normal"] = int(self.extra_normal)
        return row


# --------------------------------------------------------------------------------------------------------------------
# reading


def read_split_file(path: Path | str) -> list[CropRecord]:
    """The records of a split.csv written by workbench.builders.crop_set, in file order."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(REQUIRED_FIELDS) - set(reader.fieldnames or ())
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
                group=row.get("group") or row["dataset"], diagnosis=row.get("diagnosis") or "",
                cell_type=row.get("cell_type") or "", um_per_px=float(row.get("um_per_px") or 0.0),
            ))
    return records
