"""The blast / normal crop dataset as files: one record per crop (`split.csv`) and a torch Dataset over them.

`workbench.builders.crop_set` writes a build (see its docstring for the sources and the split by source image);
training, `workbench eval classifier` and the comparison tools read it through `read_split_file` / `CropDataset`.

The class order is fixed: CLASS_NAMES = ("blast", "normal"), blast = index 0 = the positive class. It is the one
class map of the package; datasets, training and checkpoints all use it and never renumber.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from workbench.core.images import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    import torch

from workbench.builders.crop_records import (
    CLASS_INDEX,
    CLASS_NAMES,
    CSV_FIELDS,
    REPORT_FILE,
    REQUIRED_FIELDS,
    SPLIT_FILE,
    SPLITS,
    CropRecord,
    read_split_file,
)

__all__ = ["CLASS_INDEX", "CLASS_NAMES", "CSV_FIELDS", "REPORT_FILE", "REQUIRED_FIELDS", "SPLITS", "SPLIT_FILE",
           "CropDataset", "CropRecord", "read_split_file"]

log = logging.getLogger(__name__)


def _read_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR whatever the file holds
    return None if image is None else np.ascontiguousarray(image[:, :, ::-1])


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
                if path.suffix.lower() in IMAGE_EXTENSIONS:
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
