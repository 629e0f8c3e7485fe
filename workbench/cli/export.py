"""`workbench export --format openvino|onnx [--detector W] [--classifier W]`: exported models for the faster CPU
runtimes, written beside the weights and listed in the weights manifest (workbench.app.exporting)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.args import EXIT_OK, add_config_arg

FORMATS = ("openvino", "onnx")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export weights for OpenVINO / ONNX Runtime (used by --backend auto)",
        description="Export detector and/or classifier weights (default: both of the manifest's defaults) for "
                    "OpenVINO or ONNX Runtime: fused, fp32, dynamic batch, written beside the weights and listed in "
                    "the weights manifest with their parent's sha256, the sha256 of every file, and the largest "
                    "deviation from PyTorch and the time of both, measured on real images. `--backend auto` then "
                    "runs the fastest export of the chosen weights.",
    )
    p.add_argument("--format", required=True, nargs="+", choices=FORMATS, metavar="FORMAT",
                   help="openvino and/or onnx")
    p.add_argument("--detector", metavar="W", help="detector weights to export: a manifest name or a .pt file")
    p.add_argument("--classifier", metavar="W", help="classifier weights to export: a manifest name or a .pt file")
    p.add_argument("--images", nargs="+", type=Path, metavar="PATH",
                   help="real images (files or folders) to measure the export against PyTorch on (default: the "
                        "bundled sample and one ALL-IDB1 smear from the datasets folder, where they exist)")
    p.add_argument("--trust-weights", action="store_true",
                   help="export a detector file even if its pickle names code outside the model classes")
    add_config_arg(p)
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from workbench.app.config import load_config
    from workbench.app.exporting import default_check_images, export_weights
    from workbench.app.weights import Manifest

    detector: dict = {"trust_weights": True} if args.trust_weights else {}
    if args.detector is not None:   # it also finds the cells a classifier export is measured on
        detector["weights"] = str(args.detector)
    config = load_config(args.config, {"detector": detector} if detector else None)
    manifest = Manifest.in_folder(config.paths.weights)
    images = list(args.images) if args.images else default_check_images(config)
    jobs = [("detect", args.detector), ("classify", args.classifier)]
    if args.detector is not None or args.classifier is not None:
        jobs = [(task, weights) for task, weights in jobs if weights is not None]
    for task, weights in jobs:
        for fmt in dict.fromkeys(args.format):
            outcome = export_weights(task, weights, fmt, config, manifest, images,
                                     progress=lambda line: print(line, file=sys.stderr))
            e, d = outcome.entry, outcome.deviation
            t = e.timing_ms
            backend = "openvino" if fmt == "openvino" else "onnxruntime"
            cells = (f"{d.n_reference} cells (counts equal: {d.counts_equal}), min IoU {d.min_iou:.5f}, "
                     f"max |det_conf diff| {d.max_det_conf:.2e}" if task == "detect"
                     else f"{d.n_reference} crops, max |p_blast diff| {d.max_p_blast:.2e}")
            print(f"{e.name}: {e.path} ({e.format}, input {e.input_size} px, dynamic batch) from {e.parent} "
                  f"(sha256 {e.parent_sha256[:12]}...); against PyTorch on {e.max_deviation['images']} images: {cells}; "
                  f"{t.get('torch')} ms with PyTorch, {t.get(backend)} ms with {backend} -> {manifest.path}")
    return EXIT_OK
