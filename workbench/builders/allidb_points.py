"""ALL-IDB1's expert marks as points: blast centroids (`xyc/`), the centroids of other objects (`other_points/`:
normal white cells AND platelets) and the centres of ALL-IDB2's normal crops (`ALL_IDB2/crop_sources.csv`).

ALL-IDB (University of Milan) is research use only: never commit or redistribute it; every output of the builders
goes under the git-ignored datasets/build/.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workbench.core.errors import LabelFileError
from workbench.core.points import read_xyc

log = logging.getLogger(__name__)

Kind = Literal["blast", "normal", "other"]
KINDS: tuple[str, ...] = ("blast", "normal", "other")  # also the priority order when two points mark one cell
MERGE_PX = 20.0  # points closer than this mark the same object (ALL-IDB2 centres are accurate to ~4 px)


# --------------------------------------------------------------------------------------------------------------------
# points


@dataclass(frozen=True)
class CellPoint:
    """One marked object in an ALL-IDB1 image, in image pixels. kind: "blast" (xyc), "normal" (an ALL-IDB2
    label_blast=0 crop centre) or "other" (other_points: a normal white cell or a platelet)."""

    x: float
    y: float
    kind: Kind


def read_allidb1_points(allidb_root: Path, merge_px: float = MERGE_PX) -> dict[str, list[CellPoint]]:
    """Every ALL-IDB1 image name (e.g. "Im048_1.jpg", all images of ALL_IDB1/im, in name order) -> its points.

    `allidb_root` is `<datasets>/all-idb`. Points closer than `merge_px` to a point of higher priority (blast >
    normal > other) are dropped as marks of the same object; within a kind, file order is kept.
    Raises FileNotFoundError for a missing folder, LabelFileError for a malformed point file or CSV row.
    """
    return _read_points(Path(allidb_root), merge_px)[0]


def _read_points(allidb_root: Path, merge_px: float) -> tuple[dict[str, list[CellPoint]], Counter]:
    """Points per image and a Counter of the points read per kind ("read_<kind>") and dropped as duplicates
    ("duplicate_<kind>")."""
    idb1 = Path(allidb_root).expanduser() / "ALL_IDB1"
    for sub in ("im", "xyc", "other_points"):
        if not (idb1 / sub).is_dir():
            raise FileNotFoundError(f"{idb1 / sub} not found: allidb_root must be <datasets>/all-idb")
    images = sorted(p.name for p in (idb1 / "im").iterdir() if p.suffix.lower() == ".jpg")
    raw: dict[str, dict[str, list[tuple[float, float]]]] = {n: {k: [] for k in KINDS} for n in images}
    for name in images:
        stem = Path(name).stem
        raw[name]["blast"] = _read_xyc(idb1 / "xyc" / f"{stem}.xyc", required=True)
        raw[name]["other"] = _read_xyc(idb1 / "other_points" / f"{stem}.xyc", required=False)
    for name, x, y in _read_allidb2_normals(Path(allidb_root).expanduser()):
        if name not in raw:
            raise LabelFileError(f"ALL_IDB2/crop_sources.csv names {name}, which is not in {idb1 / 'im'}")
        raw[name]["normal"].append((x, y))

    stats: Counter = Counter()
    points: dict[str, list[CellPoint]] = {}
    for name in images:
        kept: list[CellPoint] = []
        for kind in KINDS:  # priority order: a lower kind never displaces a higher one
            for x, y in raw[name][kind]:
                stats[f"read_{kind}"] += 1
                if any(math.hypot(p.x - x, p.y - y) < merge_px for p in kept):
                    stats[f"duplicate_{kind}"] += 1
                    continue
                kept.append(CellPoint(x, y, kind))  # type: ignore[arg-type]
        points[name] = kept
    return points, stats


def _read_xyc(path: Path, required: bool) -> list[tuple[float, float]]:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found")
        return []
    return read_xyc(path)


def _read_allidb2_normals(allidb_root: Path) -> list[tuple[str, float, float]]:
    """(source image, x, y) of every ALL-IDB2 crop with label_blast=0; [] when crop_sources.csv is absent."""
    path = allidb_root / "ALL_IDB2" / "crop_sources.csv"
    if not path.is_file():
        log.warning("%s not found: no 'normal' points from ALL-IDB2", path)
        return []
    out = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            try:
                if int(row["label_blast"]) == 0:
                    out.append((row["allidb1_source_image"], float(row["cell_centre_x"]), float(row["cell_centre_y"])))
            except (KeyError, TypeError, ValueError):
                raise LabelFileError(f"{path}:{number}: bad row {row}") from None
    return out
