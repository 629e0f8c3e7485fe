"""`workbench report RUN_OR_PROJECT --out report.pdf`: the sample report of an analysed (and reviewed) run, as a PDF
a lab can file (workbench.app.report). `--sign NAME` signs it; a signed report is read-only and never edited: a
later report of the same sample is a new version (report.v2.pdf, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.args import EXIT_OK, add_config_arg, positive_int
from workbench.core.text import printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write the sample report (PDF) of an analysed run or annotation project",
        description="Write a PDF sample report: sample ID, operator, software and model versions with their sha256 "
                    "and measured test numbers, the counts as analysed and after review, each image with its "
                    "boxes, the blast cells with Grad-CAM, the reviewer's sign-off and the sha256 of the results. "
                    "An existing report is never overwritten: the next version (NAME.v2.pdf, ...) is written.",
    )
    p.add_argument("source", metavar="RUN_OR_PROJECT",
                   help="a run folder or results.json (workbench analyze, GUI export) and/or an annotation project "
                        "folder (project.sqlite: its reviewed cells replace the run's)")
    p.add_argument("--out", required=True, type=Path, metavar="PDF", help="report file to write")
    p.add_argument("--operator", metavar="NAME", help="operator named in the report (default: the login name)")
    p.add_argument("--sign", metavar="NAME",
                   help="sign the report as reviewer NAME (refused while unidentified cells wait for review); "
                        "a signed report is made read-only")
    p.add_argument("--sample-id", metavar="ID", help="report only the images of this sample / patient ID")
    p.add_argument("--no-gradcam", action="store_true", help="leave Grad-CAM out of the blast gallery")
    p.add_argument("--max-gallery", type=positive_int, default=48, metavar="N",
                   help="blast cells shown in the gallery, most certain first (default 48)")
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.app.annotation.store import default_operator
    from workbench.app.config import load_config
    from workbench.app.report import ReportOptions, write_report
    from workbench.app.report_inputs import load_source
    from workbench.app.weights import Manifest

    config = load_config(args.config)
    source = load_source(Path(args.source))
    options = ReportOptions(operator=args.operator or default_operator(), signed_by=args.sign,
                            sample_id=args.sample_id, gradcam=not args.no_gradcam, max_gallery=args.max_gallery)
    written = write_report(source, args.out, options, Manifest.in_folder(config.paths.weights))
    c, a = written.counts, written.counts_as_analysed
    print(printable(f"wrote {written.path}" + (f" (new version; {written.previous.name} is kept)"
                                               if written.previous else "")))
    print(f"counts after review: {c.wbc} white cells, {c.blast} blasts, {c.normal} non-blasts, {c.unidentified} "
          f"unidentified, {c.blast_pct:.1f} % blasts (as analysed: {a.blast} blasts, {a.unidentified} unidentified)")
    print(f"results sha256 {written.results_sha256}; report sha256 {written.sha256}")
    print(f"signed by {written.signed_by} at {written.signed_at}" if written.signed_by else "unsigned draft")
    for note in written.notes:
        print(printable(note))
    return EXIT_OK
