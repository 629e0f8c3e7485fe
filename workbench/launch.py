"""The `workbench` program: the command line, and the desktop workbench for `workbench gui` (or no command).

The top floor: it alone imports both the command line (workbench.cli) and the GUI (workbench.gui), and it imports
the GUI only when the window is asked for, so every other command starts without Qt (and without torch: the
parsers import no model code). The window's path (`workbench`, `workbench gui ...`) parses only the window's options
(workbench.cli.gui), so the window is up before the other commands' modules would even have loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from workbench.cli.gui import has_display
from workbench.core.errors import WorkbenchError


def run_gui(args: argparse.Namespace) -> int:
    if not has_display():
        raise WorkbenchError("no display to open the window on (DISPLAY is not set); use `workbench analyze` "
                             "on a headless machine, or `workbench --help`")
    from workbench.gui.app import run_gui as open_window   # missing / bad paths are reported in the window

    return open_window(list(getattr(args, "paths", None) or []), detector=getattr(args, "detector", None),
                       classifier=getattr(args, "classifier", None),
                       exit_after_shown=getattr(args, "exit_after_shown", False))


def window_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """The window's options when `argv` asks for the window (nothing, or `gui ...`), else None (another command)."""
    if argv and argv[0] != "gui":
        return None
    from workbench.cli.args import WorkbenchParser
    from workbench.cli.gui import register

    parser = WorkbenchParser(prog="workbench")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser.parse_args(["gui", *argv[1:]])


def cli_main(argv: Sequence[str] | None = None, gui=None) -> int:
    """Every other command: the full command line (workbench.cli.main)."""
    from workbench.cli.main import main

    return main(argv, gui=gui)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = window_args(arguments)
    except SystemExit as exc:          # `workbench gui --help` (0) or a usage error printed as one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args is None:
        return cli_main(argv, gui=run_gui)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_gui(args)
    except WorkbenchError as exc:
        from workbench.core.text import printable

        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
