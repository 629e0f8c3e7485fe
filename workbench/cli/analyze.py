"""`workbench analyze PATH... --out DIR`: detect and classify the white cells of smear images, writing each image's
outputs as it finishes (workbench.app.outputs.RunWriter)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.args import EXIT_OK, EXIT_PARTIAL, add_backend_arg, add_config_arg, command_settings
from workbench.core.errors import WorkbenchError
from workbench.core.text import printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="detect and classify the white cells of smear images",
        description="Detect every white blood cell (YOLOv8), classify each as blast or normal (EfficientNet-B3) and "
                    "write DIR/results.json, DIR/cells.csv and one annotated PNG per image (DIR/<name>.annotated.png).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images (not recursive)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--detector", metavar="W", help="detector weights: a .pt file or a name from weights/manifest.yaml "
                                                   "(default: the manifest's default detector)")
    p.add_argument("--classifier", metavar="W", help="classifier weights: a .pt file or a manifest name "
                                                     "(default: the manifest's default classifier)")
    p.add_argument("--conf", type=float, metavar="C", help="detector confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, metavar="T", help="detector NMS / tile-merge IoU threshold (default 0.5)")
    p.add_argument("--imgsz", type=int, metavar="PX", help="detector input size, also the tile size (default 640)")
    p.add_argument("--tile", choices=["auto", "on", "off"],
                   help="analyse large images in overlapping native-resolution tiles: auto (default) tiles images "
                        "with a side over 1.5 x imgsz")
    p.add_argument("--device", metavar="DEV", help="cpu (default), cuda, cuda:0 ...")
    add_backend_arg(p)
    p.add_argument("--trust-weights", action="store_true",
                   help="load a detector file even if its pickle names code outside the model classes (only for "
                        "files you made yourself)")
    p.add_argument("--sample-id", metavar="ID", help="sample / patient ID stored with every image's results")
    p.add_argument("--max-pixels", type=int, metavar="N", help="refuse images with more pixels (default 100000000)")
    p.add_argument("--no-png", action="store_true", help="do not write annotated PNGs")
    add_config_arg(p)
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from workbench.app.outputs import RunWriter
    from workbench.app.pipeline import SmearAnalyzer
    from workbench.core.images import collect_inputs

    config = command_settings(
        args, {"weights": args.detector, "conf": args.conf, "iou": args.iou, "imgsz": args.imgsz, "device": args.device},
        {"weights": args.classifier, "device": args.device}, images={"max_pixels": args.max_pixels},
        output={"png": False if args.no_png else None})
    inputs = collect_inputs(args.paths, config.images.extensions)
    analyzer = SmearAnalyzer.from_config(config)  # weights errors stop here, before any output is written
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    writer = RunWriter(out, [i.path for i in inputs], png=config.output.png,
                       font_scale=config.output.font_scale)
    bar = None
    if len(inputs) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="image", desc="analyse", file=sys.stderr)
    try:
        # each image's outputs are written as it finishes: an interrupted run keeps what it did
        for result, image in analyzer.iter_analyze(inputs, sample_id=args.sample_id):
            writer.add(result, image)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"blasts {result.counts.blast}/{result.counts.wbc}" if result.ok else "failed")
    finally:
        if bar is not None:
            bar.close()
    batch = writer.batch
    for failed in batch.failed:
        print(f"error: {printable(failed.error)}", file=sys.stderr)
    for problem in writer.png_errors:
        print(f"error: {printable(problem)}", file=sys.stderr)
    t = batch.totals
    ok_images = len(batch.images) - len(batch.failed)
    print(f"{ok_images} of {len(batch.images)} images analysed: {t.wbc} WBCs, {t.blast} blasts, {t.normal} normal "
          f"({t.blast_pct:.1f}% blasts) -> {out} [detector on {analyzer.detector_info.backend}, classifier on "
          f"{analyzer.classifier_info.backend}]")
    return EXIT_PARTIAL if batch.failed or writer.png_errors else EXIT_OK
