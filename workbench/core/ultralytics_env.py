"""Import ultralytics the way this project needs it: offline and without telemetry.

Nothing may reach the network at run time (no weight downloads, no analytics), so every module that touches
ultralytics gets it from here.
"""

from __future__ import annotations

import logging
import os
import sys


class _StreamAtEmit(logging.StreamHandler):
    """Writes to sys.stdout / sys.stderr as they are when a record is logged. Ultralytics binds its handler to the
    stream of the moment it is imported; a stream swapped in then (a test's capture, a caller's redirect) may be
    closed when training logs its epochs, and every line became a '--- Logging error ---' on stderr."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.stream_name = name

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value) -> None:   # StreamHandler.__init__ sets it; the stream is looked up at each record
        pass


def _follow_the_current_streams(logger: logging.Logger) -> None:
    for index, handler in enumerate(logger.handlers):
        if type(handler) is not logging.StreamHandler:
            continue
        name = "stderr" if handler.stream in (sys.stderr, sys.__stderr__) else "stdout"
        follower = _StreamAtEmit(name)
        follower.setLevel(handler.level)
        follower.setFormatter(handler.formatter)
        for f in handler.filters:
            follower.addFilter(f)
        logger.handlers[index] = follower


def import_ultralytics():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import ultralytics
    from ultralytics import settings

    if settings.get("sync", False):
        settings.update({"sync": False})
    _follow_the_current_streams(logging.getLogger("ultralytics"))
    return ultralytics
