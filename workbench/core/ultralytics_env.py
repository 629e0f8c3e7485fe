"""Import ultralytics the way this project needs it: offline and without telemetry.

Nothing may reach the network at run time (no weight downloads, no analytics), so every module that touches
ultralytics gets it from here.
"""

from __future__ import annotations

import os


def import_ultralytics():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import ultralytics
    from ultralytics import settings

    if settings.get("sync", False):
        settings.update({"sync": False})
    return ultralytics
