"""`workbench eval ...`: detection, classifier and pipeline evaluation runs, and the list of past runs.

Each run writes a folder (DIR with --out, else runs/eval/<YYYYmmdd-HHMMSS>-<kind>) with metrics.json, CSV tables and
PNG plots; see README "Evaluation". User errors raise WorkbenchError subclasses: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from workbench.core.text import printable
from workbench.cli.args import (EXIT_OK, EXIT_PARTIAL, add_backend_arg, add_config_arg, command_settings,
                                configured_paths, fraction, positive_int)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `eval` command (with detection / classifier / pipeline / list) to the workbench parser."""
    p = sub.add_parser(
        "eval", help="measure detector, classifier and end-to-end accuracy; list past eval runs",
        description="Evaluate against labelled data. Every run is saved as a folder with metrics.json, CSV tables "
                    "and PNG plots (DIR with --out, else runs/eval/<date-time>-<kind>); 'workbench eval list' "
                    "shows past runs.",
    )
    p.set_defaults(func=lambda args: _print_help(p))
    ev = p.add_subparsers(dest="eval_command", metavar="KIND")
    _add_detection(ev)
    _add_classifier(ev)
    _add_pipeline(ev)
    _add_list(ev)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_OK


def _common_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="run folder to write (created if needed; default runs/eval/<YYYYmmdd-HHMMSS>-<kind>, or "
                        "under $SMEAR_EVAL_RUNS)")
    p.add_argument("--device", metavar="DEV", help="cpu (default), cuda, cuda:0 ...")
    add_backend_arg(p)
    add_config_arg(p)
    p.add_argument("--trust-weights", action="store_true",
                   help="load a detector file even if its pickle names code outside the model classes")


def _add_detection(ev: argparse._SubParsersAction) -> None:
    p = ev.add_parser(
        "detection", help="detector: precision/recall, AP50, AP50-95 (pycocotools) overall and per class",
        description="Run the detector (tiled as in 'analyze') on a labelled split and report, overall and per "
                    "class: precision and recall at --conf and at the best-F1 confidence, AP50 and AP50-95 "
                    "(pycocotools COCOeval: 101 recall points, IoU .50:.05:.95, maxDets 300), images and instances. "
                    "Predictions are collected at conf 0.001 for AP. Writes metrics.json, metrics.csv, "
                    "per_image.csv, predictions.json (COCO results), gt_coco.json, pr_curve.png and "
                    "confusion_matrix.png.",
    )
    p.add_argument("--data", required=True, type=Path, metavar="DATA",
                   help="an ultralytics data yaml (YOLO labels) or a Pascal VOC folder (Annotations/, JPEGImages/, "
                        "ImageSets/Main/<split>.txt), e.g. BCCD as published")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--weights", metavar="W", help="detector weights: a .pt file or a weights/manifest.yaml name "
                                                  "(default: the manifest's default detector)")
    p.add_argument("--conf", type=float, metavar="C", help="operating confidence threshold for precision/recall "
                                                           "(default: detector.conf of the settings, 0.25)")
    p.add_argument("--iou", type=float, metavar="T", help="detector NMS / tile-merge IoU (default 0.5)")
    p.add_argument("--imgsz", type=int, metavar="PX", help="detector input size, also the tile size (default 640)")
    p.add_argument("--tile", choices=["auto", "on", "off"], help="tiling of large images as in analyze "
                                                                  "(default auto)")
    _common_out(p)
    p.set_defaults(func=_run_detection)


def _add_classifier(ev: argparse._SubParsersAction) -> None:
    p = ev.add_parser(
        "classifier", help="classifier on labelled crops: accuracy, precision, recall, specificity, F1, ROC-AUC",
        description="Classify labelled cell crops and report accuracy, precision, recall (sensitivity), "
                    "specificity, F1 and ROC-AUC (blast = positive) with bootstrap 95% confidence intervals "
                    "(1000 resamples, seed 0), the confusion matrix and the best-F1 threshold. Writes metrics.json, "
                    "metrics.csv, predictions.csv, roc.png and confusion_matrix.png.",
    )
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="crops in one folder per class (DIR/blast, DIR/normal), or per split (DIR/<split>/blast ...), "
                        "or a split.csv (columns file,label,split) given directly or inside DIR")
    p.add_argument("--split", help="split folder or split.csv split to use (default: the class folders of DIR, "
                                   "else its test split)")
    p.add_argument("--weights", metavar="W", help="classifier weights: a .pt file or a manifest name (default: the "
                                                  "manifest's default classifier)")
    p.add_argument("--compare", metavar="W2", help="a second classifier run on the same crops; adds its metrics and "
                                                   "McNemar's test (exact binomial below 25 discordant crops)")
    p.add_argument("--threshold", type=fraction, default=None, metavar="P",
                   help="call a crop blast when p_blast >= P (default: the operating threshold stored with the "
                        "weights, chosen on validation; 0.5 for weights without one)")
    p.add_argument("--no-extra-normal", action="store_true",
                   help="leave out split.csv rows flagged extra_normal (BCCD normal cells added by the crop builder)")
    p.add_argument("--batch", type=positive_int, metavar="N", help="crops per forward pass (default 32)")
    _common_out(p)
    p.set_defaults(func=_run_classifier)


def _add_pipeline(ev: argparse._SubParsersAction) -> None:
    p = ev.add_parser(
        "pipeline", help="end to end on smears: WBC P/R, blast P/R/F1, blast-count error, image-level calls",
        description="Analyse smear images as 'analyze' does and compare with the truth: WBC detection precision / "
                    "recall, cell-level blast precision / recall / F1 (a true blast must be detected AND labelled "
                    "blast; IoU >= 0.5, greedy by confidence), per-image blast-count error (MAE), and the "
                    "image-level call 'contains blasts' (sensitivity / specificity). Writes metrics.json, "
                    "metrics.csv, per_image.csv, results.json, blast_counts.png and cell_confusion.png.",
    )
    p.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of smear images")
    p.add_argument("--labels", required=True, type=Path, metavar="DIR",
                   help="per image <stem>.txt in YOLO format (class cx cy w h, normalised) with a names file "
                        "(classes.txt: one class per line, blast / normal), or with --points <stem>.xyc files")
    p.add_argument("--names", type=Path, metavar="FILE",
                   help="class names of the label files: .txt (one per line, id = line) or .yaml (names:); "
                        "default LABELS/classes.txt")
    p.add_argument("--points", action="store_true",
                   help="labels are expert blast points, 'x y' per line (ALL-IDB .xyc): a predicted blast box "
                        "containing a point is a hit; WBC P/R are not reported")
    p.add_argument("--detector", metavar="W", help="detector weights (default: the manifest's default)")
    p.add_argument("--classifier", metavar="W", help="classifier weights (default: the manifest's default)")
    p.add_argument("--conf", type=float, metavar="C", help="detector confidence threshold (default 0.25)")
    p.add_argument("--tile", choices=["auto", "on", "off"], help="tiling of large images (default auto)")
    _common_out(p)
    p.set_defaults(func=_run_pipeline)


def _add_list(ev: argparse._SubParsersAction) -> None:
    p = ev.add_parser("list", help="list past eval runs, newest first",
                      description="List the saved eval runs (runs/eval, or $SMEAR_EVAL_RUNS, plus runs written "
                                  "elsewhere with --out), newest first, with their headline numbers.")
    p.add_argument("--root", type=Path, metavar="DIR", help="runs folder to list (default runs/eval)")
    p.add_argument("--kind", choices=["detection", "classifier", "pipeline", "comparison"],
                   help="only runs of this kind")
    add_config_arg(p)
    p.set_defaults(func=_run_list)


# --------------------------------------------------------------------------------------------------------------------


class _Bar:
    """A tqdm bar on stderr, opened at the first progress report (so an early error prints alone on its line)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int, *_: Any) -> None:
        if self.bar is None:
            if total <= 1:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="item", desc=self.desc, file=sys.stderr, leave=False)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _run_detection(args: argparse.Namespace) -> int:
    from workbench.app.evaluation import run_detection_eval

    config = command_settings(args, {"weights": args.weights, "conf": args.conf, "iou": args.iou,
                                     "imgsz": args.imgsz, "device": args.device})
    bar = _Bar("eval detection")
    try:
        outcome = run_detection_eval(args.data, args.split, config, args.out, bar)
    finally:
        bar.close()
    s, t = outcome.metrics["summary"], outcome.metrics["thresholds"]
    print(f"detection on {args.data} [{args.split}]: {s['images']} images, {s['instances']} instances; "
          f"P {_f(s['precision'])} R {_f(s['recall'])} at conf {t['conf']:g}; best F1 {_f(s['best_f1'])} at conf "
          f"{_f(s['best_f1_conf'])}; AP50 {_f(s['ap50'])} AP50-95 {_f(s['ap50_95'])}; false white cells per image "
          f"{_f(s.get('false_wbc_per_image'), 2)} -> {outcome.run_dir}")
    for name, m in (outcome.metrics.get("per_source") or {}).items():
        print(f"  {name}: {m['images']} images, {m['instances']} instances; P {_f(m['precision'])} R "
              f"{_f(m['recall'])}; AP50 {_f(m['ap50'])} AP50-95 {_f(m['ap50_95'])}; false white cells per image "
              f"{_f(m['false_wbc_per_image'], 2)}")
    return EXIT_OK


def _run_classifier(args: argparse.Namespace) -> int:
    from workbench.app.evaluation import run_classifier_eval

    config = command_settings(args, classifier={"weights": args.weights, "device": args.device, "batch": args.batch})
    bar = _Bar("eval classifier")
    try:
        outcome = run_classifier_eval(args.data, config, args.split, args.compare, args.threshold, args.out,
                                      bar, include_extra_normal=not args.no_extra_normal)
    finally:
        bar.close()
    m = outcome.metrics
    s, ci = m["summary"], m["ci95"]
    parts = [f"{key} {_f(s[key])} [{_f(ci[key][0])}, {_f(ci[key][1])}]"
             for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")]
    print(f"classifier on {s['n']} crops ({s['n_blast']} blast, {s['n_normal']} normal) at p_blast >= "
          f"{m['thresholds']['blast']:g}, 95% CI: " + "; ".join(parts) + f"; ECE {_f(s.get('ece'))} -> {outcome.run_dir}")
    for group, g in (m.get("per_group") or {}).items():
        print(f"  {group}: n {g['n']} ({g['n_blast']} blast), correct {_f(g['correct'])}, precision "
              f"{_f(g['precision'])}, recall {_f(g['recall'])}, specificity {_f(g['specificity'])}")
    if "compare" in m:
        c, test = m["compare"]["summary"], m["compare"]["mcnemar"]
        print(f"compared with {m['compare']['weights']['name']}: accuracy {_f(c['accuracy'])}, F1 {_f(c['f1'])}; "
              f"McNemar ({test['method']}) p = {test['p_value']:.4g}")
    return EXIT_OK


def _run_pipeline(args: argparse.Namespace) -> int:
    from workbench.app.evaluation import run_pipeline_eval

    config = command_settings(args, {"weights": args.detector, "conf": args.conf, "device": args.device},
                              {"weights": args.classifier, "device": args.device})
    bar = _Bar("eval pipeline")
    try:
        outcome = run_pipeline_eval(args.images, args.labels, config, args.points, args.names, args.out, bar)
    finally:
        bar.close()
    for line in outcome.failed:
        print(f"error: {printable(line)}", file=sys.stderr)
    s = outcome.metrics["summary"]
    print(f"pipeline on {s['images']} images: WBC P {_f(s['wbc_precision'])} R {_f(s['wbc_recall'])}; blasts P "
          f"{_f(s['blast_precision'])} R {_f(s['blast_recall'])} F1 {_f(s['blast_f1'])}; count MAE "
          f"{_f(s['count_mae'], 2)}; images with blasts: sensitivity {_f(s['image_sensitivity'])} specificity "
          f"{_f(s['image_specificity'])}; false blasts per image without blasts "
          f"{_f(s['false_blasts_per_image_without_blasts'], 2)} -> {outcome.run_dir}")
    for group, g in (outcome.metrics.get("per_group") or {}).items():
        b = g["blast"]
        print(f"  {group}: {g['images']} images, blasts P {_f(b['precision'])} R {_f(b['recall'])} F1 {_f(b['f1'])}, "
              f"false blasts per image {_f(g['false_blasts_per_image'], 2)}, count MAE {_f(g['blast_mae'], 2)}")
    return EXIT_PARTIAL if outcome.failed else EXIT_OK


HEADLINES = {
    "detection": (("P", "precision"), ("R", "recall"), ("AP50", "ap50"), ("AP50-95", "ap50_95")),
    "classifier": (("acc", "accuracy"), ("P", "precision"), ("R", "recall"), ("spec", "specificity"),
                   ("F1", "f1"), ("AUC", "roc_auc")),
    "pipeline": (("WBC P", "wbc_precision"), ("WBC R", "wbc_recall"), ("blast P", "blast_precision"),
                 ("blast R", "blast_recall"), ("blast F1", "blast_f1"), ("MAE", "count_mae"),
                 ("img sens", "image_sensitivity"), ("img spec", "image_specificity")),
    "comparison": (("runs", "runs"), ("reference", "reference"), ("best F1", "best_f1_run"), ("F1", "best_f1")),
}


def _run_list(args: argparse.Namespace) -> int:
    from workbench.app import eval_store

    root = args.root if args.root is not None else eval_store.eval_runs_root(configured_paths(args).eval_runs)
    runs = [r for r in eval_store.list_eval_runs(root) if args.kind is None or r.kind == args.kind]
    if not runs:
        print(f"no eval runs in {root}")
        return EXIT_OK
    for run in runs:
        summary = run.summary
        numbers = "  ".join(f"{label} {_summary_value(summary.get(key))}" for label, key in HEADLINES[run.kind])
        weights = (run.metrics.get("weights") or {}).get("name", "?")
        print(f"{run.created}  {run.kind:<10}  {weights}  {numbers}  {run.path}")
    return EXIT_OK


def _summary_value(value: Any) -> str:
    return _f(value) if isinstance(value, (int, float)) or value is None else str(value)
