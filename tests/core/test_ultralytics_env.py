"""Ultralytics imported through workbench.core.ultralytics_env: offline, no telemetry, and its log lines go to the
streams of the moment they are written."""

import io
import logging
import sys


def test_log_lines_reach_the_current_stdout_after_the_import_time_stream_closed(capfd):
    """Ultralytics binds its handler to sys.stdout at import; when that stream was a capture that is closed since
    (a test, a redirect), every training line became '--- Logging error ---' on stderr."""
    from workbench.core.ultralytics_env import import_ultralytics

    real = sys.stdout
    swapped = io.StringIO()
    sys.stdout = swapped
    try:
        import_ultralytics()
        logger = logging.getLogger("ultralytics")
        logger.handlers[0].stream.write("")          # bound to the swapped stream now
    finally:
        sys.stdout = real
    swapped.close()
    logger.error("epoch 1/1 done")   # (YOLO_VERBOSE=False: only errors pass its level)
    out, err = capfd.readouterr()
    assert "Logging error" not in err and "epoch 1/1 done" in out
    assert [h for h in logger.handlers if type(h) is logging.StreamHandler] == []   # none bound to a fixed stream
