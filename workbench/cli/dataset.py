"""`workbench dataset ...`: the dataset builders, from the real data to training sets.

    bccd       BCCD VOC -> YOLO (the official split; defects reported)
    census     every white cell of the ALL-IDB1 smears, marked or not (the detector's help is recorded)
    detection  the 3-class detector set: BCCD + TXL-PBC + ALL-IDB1 (from the census), one pixel size
    crops      the classifier's blast / non-blast crops from ALL-IDB1 (census), BCCD, TXL-PBC and PBC

Outputs go to --out (datasets/build/..., git-ignored). Each build is staged and moved in when complete, and writes
a build_report.json with its options and counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from workbench.cli.args import add_config_arg, configured_paths, non_negative_float, positive_int
from workbench.core.errors import DatasetError
from workbench.app.paths import datasets_dir

log = logging.getLogger(__name__)

CENSUS_DETECTOR = "wbc-yolov8n-v1"   # the detector that mined the shipped census (kept in weights/ for that)
CENSUS_FILE = "census.json"


def _root(args) -> Path:
    root = args.datasets or datasets_dir(configured_paths(args).datasets)
    if not root.is_dir():
        raise DatasetError(f"datasets folder not found: {root} (pass --datasets or set SMEAR_DATASETS)")
    return root


def _common(p: argparse.ArgumentParser, out_help: str = "output folder") -> None:
    p.add_argument("--datasets", type=Path, default=None, metavar="DIR",
                   help="folder holding bccd/, all-idb/, txl-pbc/ and pbc/ (default: $SMEAR_DATASETS or "
                        "../shared/datasets)")
    add_config_arg(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help=out_help)
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="build a small slice: at most N source images per split (smoke tests, quick looks)")


def _census_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--census", type=Path, metavar="FILE",
                   help=f"the ALL-IDB1 census (`workbench dataset census`; default: made now with the "
                        f"{CENSUS_DETECTOR} detector)")


# -------------------------------------------------------------------------------------------------------- bccd


def _run_bccd(args) -> int:
    from workbench.builders.bccd import build_bccd_yolo

    classes = ("wbc", "rbc", "platelets") if args.all_classes else ("wbc",)
    try:
        report = build_bccd_yolo(_root(args) / "bccd" / "BCCD", args.out, classes=classes, link=not args.copy,
                                 limit=args.limit)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    totals = report.totals()
    print(f"BCCD -> YOLO: {totals['images']} images, boxes {totals['boxes']}, duplicates dropped "
          f"{totals['dropped_duplicates']}, degenerate dropped {totals['dropped_degenerate']}, clipped "
          f"{totals['clipped']} -> {args.out / 'data.yaml'}")
    return 0


# ------------------------------------------------------------------------------------------------------ census


def slice_names(root: Path, limit: int | None, seed: int = 0) -> list[str] | None:
    """The ALL-IDB1 images a `--limit N` build uses: the first N by name of each split (None: all)."""
    if limit is None:
        return None
    from workbench.builders.allidb_split import SPLITS, allidb1_slice

    names = allidb1_slice(root / "all-idb", seed, limit)
    return sorted(names, key=lambda name: SPLITS.index(names[name]))   # by split, then by name (a stable sort)


def make_census(root: Path, detector_spec: str, limit: int | None = None, device: str = "cpu",
                seed: int = 0, min_cell_um: float | None = None) -> dict:
    """Run the detector over the ALL-IDB1 smears (tiled, native pixels, conf >= 0.05) and take the census; with
    `limit`, of the images a `--limit` build uses (slice_names)."""
    from workbench.builders.census import build_census
    from detection.predictor import WbcDetector
    from detection.tiling import TilingConfig
    from workbench.app.weights import resolve_weights

    resolved = resolve_weights(detector_spec, "detect")
    detector = WbcDetector(resolved.path, conf=0.05, iou=0.5, imgsz=640, device=device, tiling=TilingConfig())

    def detect(rgb):
        return [[*b.xyxy, b.conf] for b in detector.detect(rgb).boxes]

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="image", desc="census", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(1)

    try:
        name = resolved.entry.name if resolved.entry else resolved.path.name
        return build_census(root / "all-idb", detect, names=slice_names(root, limit, seed), progress=progress,
                            detector={"name": name, "sha256": resolved.sha256, "conf": 0.05}, min_cell_um=min_cell_um)
    finally:
        if bar is not None:
            bar.close()


def _run_census(args) -> int:
    import cv2

    from workbench.builders.census import ImageCensus, census_sheet
    from workbench.core.fileio import write_atomic

    root = _root(args)
    try:
        census = make_census(root, args.detector, args.limit, args.device, min_cell_um=args.min_cell_um)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / CENSUS_FILE, json.dumps(census) + "\n")
    images = {k: ImageCensus.from_dict(v) for k, v in census["images"].items()}
    for found_by in ("segmentation", "smudge", "ambiguous"):
        sheet = census_sheet(root / "all-idb", images, found_by)
        cv2.imwrite(str(args.out / f"census_{found_by}.jpg"), sheet[:, :, ::-1])
    summary = census["summary"]
    parts = [f"{d}: {s['images']} images, cells {s['cells']}, ambiguous {s['ambiguous']}" for d, s in summary.items()]
    print(f"ALL-IDB1 census ({census['detector'].get('name')}): {'; '.join(parts)} -> {args.out / CENSUS_FILE}")
    return 0


def _load_census(args, root: Path):
    from workbench.builders.census import ImageCensus, read_census

    if args.census is not None:
        try:
            return read_census(args.census)
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"cannot read census {args.census}: {exc}") from None
    log.info("no --census given: taking it now with %s", CENSUS_DETECTOR)
    census = make_census(root, CENSUS_DETECTOR, args.limit, seed=getattr(args, "seed", 0))
    return {k: ImageCensus.from_dict(v) for k, v in census["images"].items()}, \
        {k: v for k, v in census.items() if k != "images"}


# --------------------------------------------------------------------------------------------------- detection


def _run_detection(args) -> int:
    from workbench.builders.detection_set import build_multisource_detection

    root = _root(args)
    sources = tuple(args.sources.split(","))
    census = _load_census(args, root)[0] if "allidb1" in sources else {}
    try:
        report = build_multisource_detection(root, args.out, census, rbc_px=args.rbc_px, tile=args.tile,
                                             seed=args.seed, limit=args.limit, sources=sources)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    print(f"detection dataset: {report.summary_line()} -> {args.out / 'data.yaml'}")
    return 0


# ------------------------------------------------------------------------------------------------------- crops


def _run_crops(args) -> int:
    from workbench.builders.crop_set import CropBuildOptions, build_crops
    from workbench.core.fileio import sha256_file

    root = _root(args)
    sources = tuple(args.sources.split(","))
    census, header = _load_census(args, root) if "allidb1" in sources else (None, {})
    detector = header.get("detector") or {}
    options = CropBuildOptions(
        size=args.size, field_um=args.field_um, margin=args.margin, seed=args.seed, limit=args.limit,
        sources=sources, census=str(args.census or ""),
        census_sha256=sha256_file(args.census) if args.census else "",
        census_detector=f"{detector.get('name', '')} {detector.get('sha256', '')}".strip())
    try:
        report = build_crops(root, args.out, census, options)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    print(f"classifier crops: {report.summary_line()} -> {args.out}")
    return 0


# ------------------------------------------------------------------------------------------------------ parser


def register(sub) -> None:
    p = sub.add_parser("dataset", help="build training datasets from the real data",
                       description="Build training datasets. Outputs go to --out (use datasets/build/..., "
                                   "git-ignored).")
    dsub = p.add_subparsers(dest="dataset_command", metavar="KIND", required=True)

    b = dsub.add_parser("bccd", help="BCCD Pascal VOC -> YOLO detection dataset (official train/val/test split)")
    _common(b)
    b.add_argument("--all-classes", action="store_true", help="keep wbc, rbc and platelets (default: wbc only)")
    b.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    b.set_defaults(func=_run_bccd)

    c = dsub.add_parser("census", help="every white cell of the ALL-IDB1 smears, marked or not",
                        description="Find every white cell of the ALL-IDB1 smears: the marked ones (blast points, "
                                    "normal points) and the unmarked ones (detector boxes and stained blobs that "
                                    "the segmentation confirms; smudge cells). Writes DIR/census.json and contact "
                                    "sheets of the unmarked cells (census_segmentation.jpg, census_smudge.jpg) and "
                                    "of what was left ambiguous (census_ambiguous.jpg).")
    _common(c, "output folder for census.json and the contact sheets")
    c.add_argument("--detector", default=CENSUS_DETECTOR, metavar="W",
                   help=f"detector that proposes the unmarked cells (default {CENSUS_DETECTOR}, the one that "
                        f"mined the shipped weights' data)")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:0 ...")
    c.add_argument("--min-cell-um", type=non_negative_float, default=None, metavar="UM",
                   help="narrowest non-blast cell away from the border, micrometres (default 7.5, one red cell: "
                        "narrower ones were giant platelets, platelet clumps and red-cell ghosts, marked or not); "
                        "0 takes the census of the "
                        "shipped wbc-yolov8n-v2 / b3-allidb-160-v3 data, made before this rule")
    c.set_defaults(func=_run_census)

    d = dsub.add_parser("detection", help="3-class detector set (BCCD + TXL-PBC + ALL-IDB1), one pixel size",
                        description="The detector's training set: wbc / rbc / platelet boxes of BCCD and TXL-PBC "
                                    "and every nucleated cell of ALL-IDB1 (census; white cells only, listed as "
                                    "partial labels), each image resampled so that its red cells measure --rbc-px, "
                                    "ALL-IDB1 cut into tiles. Writes DIR/data.yaml and one data.yaml per source.")
    _common(d)
    _census_arg(d)
    d.add_argument("--sources", default="bccd,txl,allidb1", help="comma-separated: bccd, txl, allidb1")
    d.add_argument("--rbc-px", type=float, default=56.0, help="red-cell diameter to resample to (default 56)")
    d.add_argument("--tile", type=positive_int, default=640, help="ALL-IDB1 tile side in px (default 640)")
    d.add_argument("--seed", type=int, default=0, help="seed of the ALL-IDB1 by-image split (default 0)")
    d.set_defaults(func=_run_detection)

    k = dsub.add_parser("crops", help="blast / non-blast crops for the classifier, split by source image",
                        description="Blast / non-blast crops at one field of view (--field-um micrometres, via each "
                                    "image's red-cell ruler): ALL-IDB1 census cells (blasts, marked normals, "
                                    "unmarked non-blast cells of ALL smears), BCCD and TXL-PBC white cells, PBC "
                                    "cells of every type. Split by source image.")
    _common(k)
    _census_arg(k)
    k.add_argument("--sources", default="allidb1,bccd,txl,pbc", help="comma-separated: allidb1, bccd, txl, pbc")
    k.add_argument("--size", type=positive_int, default=160, help="crop side written, px (default 160)")
    k.add_argument("--field-um", type=float, default=22.0, help="field of view of a crop, micrometres (default 22)")
    k.add_argument("--margin", type=float, default=0.15,
                   help="a cell larger than the field gets its box plus this fraction of its side (default 0.15)")
    k.add_argument("--seed", type=int, default=0, help="seed of the ALL-IDB1 by-image split (default 0)")
    k.set_defaults(func=_run_crops)
