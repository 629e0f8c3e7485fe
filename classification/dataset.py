"""The blast / normal crop dataset as files: one record per crop (`split.csv`) and a torch Dataset over them.

`classification.build_crops` writes a build (see its docstring for the sources and the split by source image);
training, `workbench eval classifier` and the comparison tools read it through `read_split_file` / `CropDataset`.

The class order is fixed: CLASS_NAMES = ("blast", "normal"), blast = index 0 = the positive class. It is the one
class map of the package; datasets, training and checkpoints all use it and never renumber.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CLASS_INDEX", "CLASS_NAMES", "SPLITS", "CropDataset", "CropRecord", "read_split_file"]

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("blast", "normal")  # THE class map: index 0 = blast = positive class
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


def _read_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR whatever the file holds
    return None if image is None else np.ascontiguousarray(image[:, :, ::-1])


def read_split_file(path: Path | str) -> list[CropRecord]:
    """The records of a split.csv written by classification.build_crops, in file order."""
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
