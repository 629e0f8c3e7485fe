"""`workbench compare --config zoo.yaml`: train and evaluate a set of classifiers (and detectors) on the same split
with the same seed, and write one comparison table (workbench.app.compare)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="train and compare classifiers (architecture x preprocessing x LR schedule) and detectors",
        description="Train every run of a comparison file on the same split and seed, evaluate each on the same "
                    "test crops and write comparison.md / comparison.csv (accuracy, precision, recall, specificity, "
                    "F1, ROC-AUC with 95%% intervals, parameters, ms per crop), McNemar's test of each run against "
                    "the reference (mcnemar.csv), and for detectors P, R, AP50, AP50-95 (detectors.md). The file's "
                    "format: README 'Comparing models'.")
    p.add_argument("--config", type=Path, required=True, metavar="ZOO.yaml", help="the comparison file")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default runs/compare/<config file name>)")
    p.add_argument("--device", default="cpu", metavar="DEV",
                   help="cpu (default), or a GPU: 0 (cuda:0 for the classifiers, 0 for ultralytics), cuda:1 ...")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished runs in --out whose settings are unchanged, train the rest")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only this run (repeatable; the reference run is always included)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from workbench.app.compare import run_comparison
    from workbench.app.compare_config import load_compare_config

    config = load_compare_config(args.config)
    out = args.out or Path("runs") / "compare" / Path(args.config).stem
    logging.getLogger("workbench.app.compare").setLevel(logging.INFO)
    result = run_comparison(config, out, device=args.device, resume=args.resume, only=args.only,
                            progress=lambda text: print(f"compare: {text}", flush=True))
    print((out / "comparison.md").read_text(encoding="utf-8"))
    if result.detectors:
        print((out / "detectors.md").read_text(encoding="utf-8"))
    print(f"comparison written to {out}")
    return 0
