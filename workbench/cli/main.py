"""`workbench` command line. Every user-caused error is printed as one line (`error: ...`) with a non-zero exit.

Exit codes: 0 all images analysed; 1 some inputs could not be analysed (outputs for the rest are written and the
failures are listed in results.json); 2 usage, config or weights error (nothing analysed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from workbench import __version__
from workbench.core.errors import WorkbenchError
from workbench.core.text import printable

log = logging.getLogger("workbench")

from workbench.cli.args import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL  # noqa: F401  (re-exported: the documented codes)
from workbench.cli.args import WorkbenchParser


_Parser = WorkbenchParser     # one `error:` line and exit 2 for a usage error (workbench.cli.args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench",
        description="Smear Workbench: find white blood cells in peripheral blood smears and classify them as ALL "
                    "blasts or normal cells. Research use only, not for diagnosis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # the commands' modules are imported here, not at the top: the launcher's window path (`workbench gui`) builds only
    # its own options and starts without them
    from workbench.cli.analyze import register as register_analyze
    from workbench.cli.compare import register as register_compare
    from workbench.cli.dataset import register as register_dataset
    from workbench.cli.eval import register as register_eval
    from workbench.cli.export import register as register_export
    from workbench.cli.bench import register as register_bench
    from workbench.cli.gui import register as register_gui
    from workbench.cli.report import register as register_report
    from workbench.cli.train import register as register_train
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_analyze(sub)
    register_gui(sub)
    register_dataset(sub)
    register_train(sub)
    register_eval(sub)
    register_report(sub)
    register_compare(sub)
    register_export(sub)
    register_bench(sub)
    return parser


GuiRunner = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None, gui: GuiRunner | None = None) -> int:
    """Run one command. `gui` opens the desktop workbench for the `gui` command (and for no command at all): the
    launcher (workbench.launch, the `workbench` program) passes it, so this floor never imports Qt."""
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
        if args.command == "gui":
            if gui is None:
                raise WorkbenchError("the desktop workbench is opened by the `workbench` program "
                                     "(workbench.launch), not by this command-line module")
            return gui(args)
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. output folder not writable, disk full
        print(printable(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": ")),
              file=sys.stderr)
        return EXIT_ERROR
