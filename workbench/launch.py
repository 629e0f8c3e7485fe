"""The `workbench` program: the command line, and the desktop workbench for `workbench gui` (or no command).

The top floor: it alone imports both the command line (workbench.cli) and the GUI (workbench.gui), and it imports
the GUI only when the window is asked for, so every other command starts without Qt (and without torch: the
parsers import no model code).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from workbench.cli.gui import has_display
from workbench.cli.main import main as cli_main
from workbench.core.errors import WorkbenchError


def run_gui(args: argparse.Namespace) -> int:
    if not has_display():
        raise WorkbenchError("no display to open the window on (DISPLAY is not set); use `workbench analyze` "
                             "on a headless machine, or `workbench --help`")
    from workbench.gui.app import run_gui as open_window   # missing / bad paths are reported in the window

    return open_window(list(getattr(args, "paths", None) or []), detector=getattr(args, "detector", None),
                       classifier=getattr(args, "classifier", None),
                       exit_after_shown=getattr(args, "exit_after_shown", False))


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, gui=run_gui)


if __name__ == "__main__":
    sys.exit(main())
