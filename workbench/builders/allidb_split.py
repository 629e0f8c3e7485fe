"""THE split of the ALL-IDB1 source images into train / val / test, shared by every builder (detector tiles and
classifier crops alike), so that no cell of a test image is ever trained on."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path
from typing import Sequence

from PIL import Image

from workbench.core.errors import LabelFileError
from workbench.core.fileio import write_atomic
from workbench.core.segmentation import camera_name

SPLITS: tuple[str, ...] = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------------------------
# the split of ALL-IDB1 source images


def allidb1_split(
    allidb_root: Path, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, str]:
    """Image name -> "train" / "val" / "test" for every ALL-IDB1 image, in name order.

    THE split of ALL-IDB source images: the detection tiles and the classifier's crops (ALL-IDB2 crops come from
    ALL-IDB1 images, see crop_sources.csv) both use it, so no cell of a test image is ever trained on. Stratified by
    (label L, camera), because camera and label are confounded in ALL-IDB1 (every Olympus image is ALL): each
    stratum of >= 3 images gives every split at least one image, so every split holds ALL and healthy images and both
    cameras. A stratum of 1-2 images (the single 1226x652 image) goes to train. Deterministic for a given `seed`:
    names are sorted, then shuffled per stratum by a generator seeded with (seed, stratum).
    """
    fractions = _check_fractions(fractions)
    idb1 = Path(allidb_root).expanduser() / "ALL_IDB1" / "im"
    if not idb1.is_dir():
        raise FileNotFoundError(f"{idb1} not found: allidb_root must be <datasets>/all-idb")
    strata: dict[tuple[str, str], list[str]] = {}
    for path in sorted(p for p in idb1.iterdir() if p.suffix.lower() == ".jpg"):
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
        strata.setdefault((_image_label(path.name), camera_name(width, height)), []).append(path.name)
    split: dict[str, str] = {}
    for (label, camera), names in sorted(strata.items()):
        rng = random.Random(f"allidb1-split:{seed}:{label}:{camera}")  # str seeds hash with sha512: stable
        order = list(names)
        rng.shuffle(order)
        n_train, n_val, n_test = _allocate(len(order), fractions)
        for i, name in enumerate(order):
            split[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return dict(sorted(split.items()))


def allidb1_slice(allidb_root: Path, seed: int = 0, limit: int | None = None) -> dict[str, str]:
    """allidb1_split cut to the images a `--limit N` build uses: the first N by name of each split (all without)."""
    split = allidb1_split(allidb_root, seed)
    if not limit:
        return split
    taken: dict[str, int] = {}
    out: dict[str, str] = {}
    for name, part in split.items():
        if taken.get(part, 0) < limit:
            taken[part] = taken.get(part, 0) + 1
            out[name] = part
    return out


def _image_label(name: str) -> str:
    """"1" (ALL patient) or "0" (healthy) from ImNNN_L.jpg."""
    label = Path(name).stem.rsplit("_", 1)[-1]
    if label not in ("0", "1"):
        raise ValueError(f"{name}: not an ALL-IDB1 name ImNNN_L with L 0 or 1")
    return label


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be (train, val, test) >= 0 with train > 0 and sum 1, got {fractions!r}")
    return values  # type: ignore[return-value]


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if n < 3:
        return n, 0, 0
    n_val = int(math.floor(n * fractions[1] + 0.5))
    n_test = int(math.floor(n * fractions[2] + 0.5))
    if fractions[1] > 0:
        n_val = max(1, n_val)
    if fractions[2] > 0:
        n_test = max(1, n_test)
    while n - n_val - n_test < 1:  # train keeps at least one image
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def write_split_csv(path: Path, split: dict[str, str]) -> None:
    """Write `split` (image name -> split) as CSV with the columns image,split, in name order, atomically."""
    bad = {name: s for name, s in split.items() if s not in SPLITS}
    if bad:
        raise ValueError(f"unknown split name(s) {sorted(set(bad.values()))}; expected {list(SPLITS)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "split"])
    for name in sorted(split):
        writer.writerow([name, split[name]])
    write_atomic(path, buffer.getvalue())


def read_split_csv(path: Path) -> dict[str, str]:
    """The split written by write_split_csv. Raises LabelFileError for a malformed file or a repeated image."""
    path = Path(path)
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames[:2]] != ["image", "split"]:
            raise LabelFileError(f"{path}: expected the header 'image,split', got {reader.fieldnames}")
        for number, row in enumerate(reader, 2):
            name, value = (row.get("image") or "").strip(), (row.get("split") or "").strip()
            if not name or value not in SPLITS:
                raise LabelFileError(f"{path}:{number}: expected an image name and one of {list(SPLITS)}, got {row}")
            if name in out:
                raise LabelFileError(f"{path}:{number}: {name} is listed twice")
            out[name] = value
    return out
