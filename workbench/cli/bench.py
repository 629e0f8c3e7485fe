"""`workbench bench [PATH...] [--backends ...]`: per stage and per backend timings of the real analysis pipeline,
in one run on the same images, with the speed-up against PyTorch (workbench.app.bench)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.args import EXIT_OK, add_config_arg, command_settings, positive_int

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")


def _backends(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(BACKENDS)}, not {text!r}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="time the analysis per stage and per backend, with the speed-up against PyTorch",
        description="Time `analyze` as it runs (decode, red-cell ruler, detection with tiling, crops, "
                    "classification; the same loop as analyze and the GUI) on each backend, in one run on the same "
                    "inputs, and print the speed-up against PyTorch. An image is timed --repeat times after a "
                    "warm-up, the backends taking turns (median per stage and of the wall time); a folder is run "
                    "once per backend after a warm-up image (images per second, wall clock).",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="images and/or folders (default: the bundled sample and one ALL-IDB1 smear, where they "
                        "exist)")
    p.add_argument("--backends", type=_backends, default=["torch", "auto"], metavar="LIST",
                   help="comma-separated backends to time (default torch,auto; torch, the reference, is always "
                        "timed)")
    p.add_argument("--repeat", type=positive_int, default=3, metavar="N", help="timed runs per image (default 3)")
    p.add_argument("--detector", metavar="W", help="detector weights (default: the manifest's default)")
    p.add_argument("--classifier", metavar="W", help="classifier weights (default: the manifest's default)")
    add_config_arg(p)
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from workbench.app.bench import REFERENCE, STAGES, run_bench, speedup
    from workbench.app.exporting import default_check_images

    config = command_settings(args, {"weights": args.detector}, {"weights": args.classifier})
    paths = list(args.paths) or default_check_images(config)
    if not paths:
        from workbench.core.errors import WorkbenchError

        raise WorkbenchError("no images to time: pass image files or folders")
    report = run_bench(paths, args.backends, config, args.repeat, progress=lambda line: print(line, file=sys.stderr))
    print(f"workbench bench: torch threads {report.threads}; backends (detector/classifier): "
          + ", ".join(f"{b} = {ran} (models loaded in {report.load_s[b]:.1f} s)" for b, ran in report.backends.items()))
    for backend, why in report.skipped.items():
        print(f"{backend}: not timed: {why}")
    if report.images:
        print(f"{'image':<24}{'size':>10}{'tiles':>6}{'cells':>6}  {'backend':<12}"
              + "".join(f"{s:>10}" for s in STAGES) + f"{'wall':>10}{'speed-up':>10}")
        reference = {r.image: r for r in report.images if r.backend == REFERENCE}
        for r in report.images:
            ref = reference[r.image]
            print(f"{r.image[:23]:<24}{r.size:>10}{r.n_tiles:>6}{r.cells:>6}  {r.backend:<12}"
                  + "".join(f"{r.stages_ms[s]:>8.0f}ms" for s in STAGES) + f"{r.wall_ms:>8.0f}ms"
                  + f"{speedup(ref.wall_ms, r.wall_ms):>9.2f}x")
    for f in report.folders:
        ref = next(x for x in report.folders if x.folder == f.folder and x.backend == REFERENCE)
        print(f"folder {f.folder}: {f.images} images ({f.failed} failed) with {f.backend}: {f.seconds:.1f} s, "
              f"{f.images_per_s:.2f} images/s ({speedup(ref.seconds, f.seconds):.2f}x "
              f"the images/s of torch)")
    return EXIT_OK
