"""The one generic worker (workbench.gui.workers.Worker): a generator streams its values, `quit()` closes it between
values, a return value arrives by `returned`, and an unexpected exception is logged with its traceback and reaches
the user in the window, never swallowed."""

from __future__ import annotations

import logging
import threading
import time

import pytest

pytest.importorskip("pytestqt")


def test_a_generator_streams_its_values_then_returns(qtbot):
    from workbench.gui.workers import Worker

    def count(n):
        for i in range(n):
            yield i
        return "done"

    worker = Worker(count, 3)
    threads = set()
    worker.yielded.connect(lambda _value: threads.add(threading.get_ident()))
    seen = {"started": 0, "yielded": [], "returned": [], "errored": []}
    worker.started.connect(lambda: seen.__setitem__("started", seen["started"] + 1))
    worker.yielded.connect(seen["yielded"].append)
    worker.returned.connect(seen["returned"].append)
    worker.errored.connect(seen["errored"].append)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
    assert seen == {"started": 1, "yielded": [0, 1, 2], "returned": ["done"], "errored": []}
    assert threads == {threading.get_ident()}, "the connected callables run in the UI thread"
    qtbot.waitUntil(lambda: worker not in Worker.running, timeout=2000)


def test_quit_closes_the_generator_between_values(qtbot):
    from workbench.gui.workers import Worker

    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.005)
        finally:
            closed.append(True)

    worker = Worker(endless)
    values, returned = [], []
    worker.yielded.connect(lambda v: (values.append(v), worker.quit() if v == 2 else None))
    worker.returned.connect(returned.append)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start()
    assert values[:3] == [0, 1, 2] and worker.abort_requested
    assert closed == [True] and returned == []      # an aborted worker returns nothing


def test_an_unexpected_error_is_logged_with_its_traceback_and_handed_over(qtbot, caplog):
    from workbench.gui.workers import Worker, describe_error

    def broken():
        raise RuntimeError("kaput")

    worker = Worker(broken)
    errors = []
    worker.errored.connect(errors.append)
    with caplog.at_level(logging.WARNING, logger="workbench.gui.workers"):
        with qtbot.waitSignal(worker.finished, timeout=10_000):
            worker.start()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert describe_error(errors[0]) == "unexpected RuntimeError: kaput"
    [record] = [r for r in caplog.records if r.name == "workbench.gui.workers"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in caplog.text and "kaput" in caplog.text


def test_an_expected_error_is_one_warning_line(qtbot, caplog):
    from workbench.core.errors import ImageLoadError
    from workbench.gui.workers import Worker

    def bad_image():
        raise ImageLoadError("x.jpg: cannot decode image")

    worker = Worker(bad_image)
    with caplog.at_level(logging.WARNING, logger="workbench.gui.workers"):
        with qtbot.waitSignal(worker.errored, timeout=10_000) as blocker:
            worker.start()
    assert str(blocker.args[0]) == "x.jpg: cannot decode image"
    [record] = [r for r in caplog.records if r.name == "workbench.gui.workers"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    qtbot.waitUntil(lambda: worker not in Worker.running, timeout=2000)


def test_a_failing_export_reaches_the_user_and_the_log(qtbot, plain_window, tmp_path, caplog):
    """A real unexpected error in a worker (the export folder is a file): logged with its traceback, shown in a
    dialog and the status bar, and reported by exportFinished."""
    from workbench.app.results import BatchResult, SmearResult

    win = plain_window
    results = tmp_path / "results.json"
    results.write_text(BatchResult(images=[SmearResult(image_path="im.png", width=40, height=30)]).to_json())
    win.open_paths([results])
    # the results name an image that is not there: its load fails in a worker and says so in the status bar; wait for
    # that first, or it may land after the export's message and replace it
    qtbot.waitUntil(lambda: win.statusBar().currentMessage().startswith("Cannot open image"), timeout=10_000)
    blocker_file = tmp_path / "not_a_folder"
    blocker_file.write_text("a file where the export folder should go")
    with caplog.at_level(logging.WARNING):
        with qtbot.waitSignal(win.exportFinished, timeout=30_000) as done:
            assert win.export(out=blocker_file, png=False)
    message = done.args[0]
    assert isinstance(message, str) and "not_a_folder" in message
    assert win.error_box is not None and win.error_box.windowTitle() == "Export failed"
    assert message in win.error_box.text() and win.statusBar().currentMessage().startswith("Export failed")
    errors = [r for r in caplog.records if r.name == "workbench.gui.workers" and r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert not win.exports.busy
    win.error_box.close()
