"""One generic background worker for the GUI (napari / superqt `create_worker` style): a function runs in a
QThreadPool thread and reports by generic signals, so the UI thread never waits on a model, a large image or a file.

    worker = Worker(fn, *args, **kwargs)          # fn may be a generator function
    worker.yielded.connect(...)                   # each value a generator yields, as it comes
    worker.returned.connect(...)                  # fn's return value (a generator's `return` value)
    worker.errored.connect(...)                   # the exception fn raised (already logged with its traceback)
    worker.finished.connect(...)                  # always last: after returned, errored or an abort
    worker.start(pool)
    worker.quit()                                 # a generator is closed at its next yield; no `returned` then

A function that is not a generator can still stop early by polling `worker.abort_requested` (bind it late:
``worker = Worker(lambda: export(..., cancel=lambda: worker.abort_requested))``).

Unexpected exceptions are logged with `log.exception` (traceback) in the worker thread and handed to `errored`;
expected ones (`WorkbenchError`: a missing weights file, an unreadable image) are logged as one warning line. The
receiver shows them to the user (`describe_error` turns one into a message); nothing is swallowed.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable, ClassVar, Generator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from workbench.core.errors import WorkbenchError

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message of an expected error, the type and message of an unexpected one."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return f"unexpected {type(exc).__name__}: {exc}"


class WorkerSignals(QObject):
    """Made in the UI thread, so the connected callables run there (queued) whatever thread emits."""

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    finished = Signal()


class Worker(QRunnable):
    """Runs `fn(*args, **kwargs)` once in a thread pool; see the module docstring for the signals."""

    running: ClassVar[set["Worker"]] = set()    # started and not finished (their signal objects must outlive the run)

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.signals = WorkerSignals()
        self.pool: QThreadPool | None = None
        self._abort = threading.Event()
        self.signals.finished.connect(self._forget)

    # the signals, reachable as worker.yielded etc. (as superqt's workers)
    started, yielded, returned, errored, finished = (
        property(lambda self, name=name: getattr(self.signals, name))
        for name in ("started", "yielded", "returned", "errored", "finished"))

    def start(self, pool: QThreadPool | None = None) -> "Worker":
        self.pool = pool or QThreadPool.globalInstance()
        Worker.running.add(self)
        self.pool.start(self)
        return self

    def quit(self) -> None:
        """Ask the work to stop: a generator is closed before its next value; `abort_requested` becomes True."""
        self._abort.set()

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    def _forget(self) -> None:
        Worker.running.discard(self)

    def run(self) -> None:
        self.signals.started.emit()
        try:
            value = self.fn(*self.args, **self.kwargs)
            if inspect.isgenerator(value):
                value = self._drain(value)
            if not self.abort_requested:
                self.signals.returned.emit(value)
        except Exception as exc:  # never let an error reach Qt: log it, hand it to the UI thread
            if isinstance(exc, WorkbenchError):
                log.warning("%s: %s", self.name, exc)
            else:
                log.exception("background task %s failed", self.name)
            self.signals.errored.emit(exc)
        finally:
            self.signals.finished.emit()

    def _drain(self, generator: Generator) -> Any:
        try:
            while not self.abort_requested:
                try:
                    value = next(generator)
                except StopIteration as stop:
                    return stop.value
                self.signals.yielded.emit(value)
            return None
        finally:
            generator.close()
