"""`workbench gui [PATHS] [--detector W] [--classifier W]`: opens the desktop workbench.

Qt is imported only when the GUI starts (by module name, at run time), so `workbench analyze` and the rest of the
command line never load it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gui", help="open the desktop workbench (the default when no command is given)",
        description="Open the Smear Workbench window: review smear images with their white cells, blast / normal "
                    "labels and counts, run analyses in the background, export results, browse evaluation runs.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image files, folders of images, or results.json files to open")
    p.add_argument("--detector", metavar="W", help="detector weights for this session: a .pt file or a manifest "
                                                   "name (default: the saved setting / the manifest's default)")
    p.add_argument("--classifier", metavar="W", help="classifier weights for this session: a .pt file or a "
                                                     "manifest name")
    p.add_argument("--exit-after-shown", action="store_true",
                   help="quit once the first image is shown, printing what was shown and with which weights "
                        "(exit 0 shown, 1 not); a start-up check, used by the tests of scripts/run.sh")
    p.set_defaults(func=run)


def _has_display() -> bool:
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def run(args: argparse.Namespace) -> int:
    from workbench.errors import WorkbenchError

    if not _has_display():
        raise WorkbenchError("no display to open the window on (DISPLAY is not set); use `workbench analyze` "
                             "on a headless machine, or `workbench --help`")
    app = importlib.import_module("workbench.gui.app")   # missing / bad paths are reported in the window
    return app.run_gui(list(getattr(args, "paths", None) or []), detector=getattr(args, "detector", None),
                       classifier=getattr(args, "classifier", None),
                       exit_after_shown=getattr(args, "exit_after_shown", False))
