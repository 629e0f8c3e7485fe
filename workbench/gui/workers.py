"""Background work for the GUI: analysis, image decoding, thumbnails and exports run in QThreadPool threads and
report by signals, so the UI thread never waits on a model or a large image.

The models are loaded here, in the worker thread, the first time an analysis runs (`workbench.pipeline` and with
it torch/ultralytics are imported only then) and kept for the next analysis with the same settings.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QObject, QRunnable, QSize, Signal
from PySide6.QtGui import QImage, QImageReader

from workbench.errors import WorkbenchError

log = logging.getLogger(__name__)

_analyzer_lock = threading.Lock()
_analyzer_cache: dict[str, Any] = {}   # settings key -> SmearAnalyzer (only the latest settings are kept)


def _settings_key(config: dict[str, Any]) -> str:
    key = json.loads(json.dumps(config, sort_keys=True, default=str))
    for section in ("detector", "classifier"):   # a weight file replaced on disk must be loaded again
        weights = key.get(section, {}).get("weights")
        if weights and Path(str(weights)).is_file():
            key[section]["weights_mtime"] = Path(str(weights)).stat().st_mtime_ns
    return json.dumps(key, sort_keys=True)


def get_analyzer(config: dict[str, Any]):
    """The SmearAnalyzer for these settings, loaded once (in the calling worker thread) and then reused."""
    key = _settings_key(config)
    with _analyzer_lock:
        analyzer = _analyzer_cache.get(key)
        if analyzer is None:
            from workbench.pipeline import SmearAnalyzer   # torch / ultralytics are imported here, off the UI thread

            analyzer = SmearAnalyzer.from_config(copy.deepcopy(config))
            _analyzer_cache.clear()
            _analyzer_cache[key] = analyzer
        return analyzer


def clear_analyzer_cache() -> None:
    with _analyzer_lock:
        _analyzer_cache.clear()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, WorkbenchError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return f"unexpected {type(exc).__name__}: {exc}"


class AnalysisSignals(QObject):
    status = Signal(str)                 # what the worker is doing ("loading models", ...)
    result = Signal(int, object)         # index in the job, SmearResult
    progress = Signal(int, int)          # done, total
    failed = Signal(str)                 # the job could not run (weights, settings); one line
    finished = Signal(bool)              # cancelled?


class AnalysisWorker(QRunnable):
    """Analyses `items` [(path, sample_id)] one image at a time; `cancel()` stops it between images."""

    def __init__(self, items: Sequence[tuple[str, str | None]], config: dict[str, Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.items = list(items)
        self.config = copy.deepcopy(config)
        self.signals = AnalysisSignals()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        total = len(self.items)
        try:
            self.signals.status.emit("Loading models…")
            analyzer = get_analyzer(self.config)
            for index, (path, sample_id) in enumerate(self.items):
                if self.cancelled:
                    break
                self.signals.status.emit(f"Analysing {Path(path).name} ({index + 1}/{total})…")
                batch = analyzer.analyze([path], sample_id=sample_id, cancel=lambda: self.cancelled)
                if not batch.images:
                    break
                self.signals.result.emit(index, batch.images[0])
                self.signals.progress.emit(index + 1, total)
        except Exception as exc:   # never let a model error reach Qt: it becomes one message for the user
            log.debug("analysis failed:\n%s", traceback.format_exc())
            self.signals.failed.emit(_describe(exc))
        finally:
            self.signals.finished.emit(self.cancelled)


def numpy_to_qimage(image) -> QImage:
    """RGB uint8 (H, W, 3) -> an independent QImage (safe to hand to the UI thread)."""
    height, width = image.shape[:2]
    qimage = QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return qimage.copy()


class ImageSignals(QObject):
    loaded = Signal(str, int, QImage)    # path, request id, image
    failed = Signal(str, int, str)       # path, request id, message


class ImageLoadWorker(QRunnable):
    """Decodes one image with the pipeline's loader (same conversions and pixel limit) into a QImage."""

    def __init__(self, path: Path | str, request_id: int, max_pixels: int | None) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.path, self.request_id, self.max_pixels = str(path), request_id, max_pixels
        self.signals = ImageSignals()

    def run(self) -> None:
        from workbench.images import load_image

        try:
            image = load_image(self.path, self.max_pixels)
            self.signals.loaded.emit(self.path, self.request_id, numpy_to_qimage(image))
        except Exception as exc:
            self.signals.failed.emit(self.path, self.request_id, _describe(exc))


class ThumbnailSignals(QObject):
    ready = Signal(str, QImage)          # path, thumbnail
    finished = Signal()


class ThumbnailWorker(QRunnable):
    """Small previews for the image list, decoded at reduced size (fast for JPEG); unreadable files are skipped."""

    def __init__(self, paths: Sequence[str], size: int = 56) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.paths, self.size = list(paths), size
        self.signals = ThumbnailSignals()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.signals.finished.emit()

    def _run(self) -> None:
        for path in self.paths:
            if self._cancel.is_set():
                return
            reader = QImageReader(path)
            reader.setAutoTransform(True)
            full = reader.size()
            if full.isValid() and full.width() > 0 and full.height() > 0:
                scale = self.size / max(full.width(), full.height())
                reader.setScaledSize(QSize(max(1, round(full.width() * scale)), max(1, round(full.height() * scale))))
            image = reader.read()
            if not image.isNull():
                self.signals.ready.emit(path, image)


class TaskSignals(QObject):
    progress = Signal(int, int)
    done = Signal(object)
    failed = Signal(str)


class TaskWorker(QRunnable):
    """Runs `fn(progress, cancel)` in the background (exports); `done` carries its return value."""

    def __init__(self, fn: Callable[[Callable[[int, int], None], Callable[[], bool]], Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.signals = TaskSignals()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            value = self.fn(lambda done, total: self.signals.progress.emit(done, total), self._cancel.is_set)
        except Exception as exc:
            log.debug("task failed:\n%s", traceback.format_exc())
            self.signals.failed.emit(_describe(exc))
        else:
            self.signals.done.emit(value)
