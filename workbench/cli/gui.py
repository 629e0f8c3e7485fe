"""`workbench gui [PATHS] [--detector W] [--classifier W]`: the options of the desktop workbench.

The command line only defines the options; the `workbench` program (workbench.launch) opens the window, so that
nothing on this floor imports Qt and `workbench analyze` and the other commands never load it.
"""

from __future__ import annotations

import argparse
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


def has_display() -> bool:
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))
