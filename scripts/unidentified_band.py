"""Choose the unidentified band of classifier weights that have none, on their own validation split, and print
the `unidentified_band:` entry for weights/manifest.yaml (rule: classification/band.py; crops cut as an analysis
cuts them: workbench/app/band.py).

    .venv/bin/python scripts/unidentified_band.py --weights weights/b3-allidb-160-v2.pt \
        --split-csv weights/splits/b3-allidb-160-v2.split.csv [--datasets ../shared/datasets] [--target 0.95]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--split-csv", required=True, type=Path)
    parser.add_argument("--datasets", type=Path, default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--target", type=float, default=None)
    args = parser.parse_args(argv)
    from classification.predictor import BlastClassifier
    from workbench.app.band import band_from_split
    from workbench.app.paths import datasets_dir

    classifier = BlastClassifier(args.weights)
    band = band_from_split(classifier, args.split_csv, args.datasets or datasets_dir(), args.split, args.target)
    print(yaml.safe_dump({"unidentified_band": band}, sort_keys=False, width=110))
    return 0


if __name__ == "__main__":
    sys.exit(main())
