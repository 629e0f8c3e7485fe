"""`workbench` command line. Every user-caused error is printed as one line (`error: ...`) with a non-zero exit.

Exit codes: 0 all images analysed; 1 some inputs could not be analysed (outputs for the rest are written and the
failures are listed in results.json); 2 usage, config or weights error (nothing analysed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from workbench import __version__
from workbench.cli_dataset import register as register_dataset
from workbench.cli_eval import register as register_eval
from workbench.cli_gui import register as register_gui
from workbench.cli_train import register as register_train
from workbench.errors import WorkbenchError

log = logging.getLogger("workbench")

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def _add_analyze(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--sample-id", metavar="ID", help="sample / patient ID stored with every image's results")
    p.add_argument("--max-pixels", type=int, metavar="N", help="refuse images with more pixels (default 100000000)")
    p.add_argument("--no-png", action="store_true", help="do not write annotated PNGs")
    p.add_argument("--config", type=Path, metavar="YAML", help="settings file overriding workbench/cfg/default.yaml")
    p.set_defaults(func=_run_analyze)


def _analyze_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {"detector": {}, "classifier": {}, "tiling": {}, "images": {}, "output": {}}
    for key, value in (("weights", args.detector), ("conf", args.conf), ("iou", args.iou), ("imgsz", args.imgsz),
                       ("device", args.device)):
        if value is not None:
            overrides["detector"][key] = value
    if args.classifier is not None:
        overrides["classifier"]["weights"] = args.classifier
    if args.device is not None:
        overrides["classifier"]["device"] = args.device
    if args.tile is not None:
        overrides["tiling"]["mode"] = args.tile
    if args.max_pixels is not None:
        overrides["images"]["max_pixels"] = args.max_pixels
    if args.no_png:
        overrides["output"]["png"] = False
    return {k: v for k, v in overrides.items() if v}


def _png_names(paths: list[Path]) -> dict[Path, str]:
    """One PNG name per input; inputs with the same file name in different folders get a numeric suffix."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        base, n = f"{path.stem}.annotated", 1
        name = f"{base}.png"
        while name in used:
            n += 1
            name = f"{base}-{n}.png"
        used.add(name)
        names[path] = name
    return names


def _run_analyze(args: argparse.Namespace) -> int:
    from workbench.config import load_config
    from workbench.images import collect_inputs
    from workbench.pipeline import SmearAnalyzer
    from workbench.render import render_result, write_png
    from workbench.results import write_atomic

    config = load_config(args.config, _analyze_overrides(args))
    inputs = collect_inputs(args.paths, config["images"]["extensions"])
    analyzer = SmearAnalyzer.from_config(config)  # weights errors stop here, before any output is written
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    png_names = _png_names([i.path for i in inputs])

    def draw(result, image) -> None:
        if config["output"]["png"]:
            write_png(out / png_names[Path(result.image_path)],
                      render_result(image, result, config["output"]["font_scale"]))

    bar = None
    if len(inputs) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="image", desc="analyse", file=sys.stderr)

    def progress(done: int, total: int, result) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"blasts {result.counts.blast}/{result.counts.wbc}" if result.ok else "failed")

    try:
        batch = analyzer.analyze(inputs, sample_id=args.sample_id, progress=progress, image_sink=draw)
    finally:
        if bar is not None:
            bar.close()
    write_atomic(out / "results.json", batch.to_json())
    write_atomic(out / "cells.csv", batch.to_csv())
    for failed in batch.failed:
        print(f"error: {failed.error}", file=sys.stderr)
    t = batch.totals
    ok_images = len(batch.images) - len(batch.failed)
    print(f"{ok_images} of {len(batch.images)} images analysed: {t.wbc} WBCs, {t.blast} blasts, {t.normal} normal "
          f"({t.blast_pct:.1f}% blasts) -> {out}")
    return EXIT_PARTIAL if batch.failed else EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (with where to get help) and exit code 2, like every other
    user error; sub-command parsers inherit it."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench",
        description="Smear Workbench: find white blood cells in peripheral blood smears and classify them as ALL "
                    "blasts or normal cells. Research use only, not for diagnosis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_analyze(sub)
    register_gui(sub)
    register_dataset(sub)
    register_train(sub)
    register_eval(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help / --version (0) or a usage error already printed as one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:  # `workbench` alone opens the desktop workbench (`workbench --help` for the commands)
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "gui"])
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. output folder not writable, disk full
        print(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
