"""The background analysis job: one at a time, results streamed into the session as each image finishes.

`analysis_steps` is the work (a generator run by a `Worker` in the analysis pool): it loads the models in the
worker thread the first time (torch / ultralytics are imported only then; the analyzer is kept for the next job with
the same settings) and then streams `SmearAnalyzer.iter_analyze`, one `AnalysisStep` per finished image.
`AnalysisController` starts it, puts each result into the `SessionModel` as it comes (the widgets follow the model),
shows the progress, cancels (the stream stops after the image in progress: the worker closes the generator and
`iter_analyze`'s cancel check says so too) and ends with one message about this job only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox, QProgressBar, QPushButton, QStatusBar, QWidget

from workbench.app.config import Settings
from workbench.app.results import SmearResult
from workbench.app.session import QUEUED, ImageRecord, SessionModel
from workbench.core.errors import WorkbenchError
from workbench.gui.image_io import numpy_to_qimage
from workbench.gui.workers import Worker, describe_error

SETTINGS_HINT = "Check the weights and thresholds in Analyse → Analysis settings (Ctrl+,)."

_analyzer_lock = threading.Lock()
_analyzer_cache: dict[str, Any] = {}   # settings key -> SmearAnalyzer (only the latest settings are kept)


def _settings_key(config: Settings) -> str:
    key = json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str))
    for section in ("detector", "classifier"):   # a weight file replaced on disk must be loaded again
        weights = key.get(section, {}).get("weights")
        if weights and Path(str(weights)).is_file():
            key[section]["weights_mtime"] = Path(str(weights)).stat().st_mtime_ns
    return json.dumps(key, sort_keys=True)


def get_analyzer(config: Settings):
    """The SmearAnalyzer for these settings, loaded once (in the calling worker thread) and then reused."""
    key = _settings_key(config)
    with _analyzer_lock:
        analyzer = _analyzer_cache.get(key)
        if analyzer is None:
            from workbench.app.pipeline import SmearAnalyzer   # torch / ultralytics are imported here, off the UI thread

            analyzer = SmearAnalyzer.from_config(config)   # frozen settings: nothing can change them under it
            _analyzer_cache.clear()
            _analyzer_cache[key] = analyzer
        return analyzer


@dataclass
class AnalysisStep:
    done: int                          # images finished so far (0: the models are loaded, nothing analysed yet)
    total: int
    result: SmearResult | None = None  # the image just finished
    image: QImage | None = None        # its decoded pixels (None when it could not be decoded)


def analysis_steps(paths: Sequence[str], config: Settings,
                   cancel: Callable[[], bool] | None = None) -> Iterator[AnalysisStep]:
    """Runs in the worker thread. The sample IDs are the session's: `SessionModel.set_result` puts them in."""
    analyzer = get_analyzer(config)
    yield AnalysisStep(0, len(paths))
    stream = analyzer.iter_analyze(paths, cancel=cancel)
    try:
        for done, (result, image) in enumerate(stream, 1):
            yield AnalysisStep(done, len(paths), result, numpy_to_qimage(image) if image is not None else None)
    finally:
        stream.close()


@dataclass
class JobSummary:
    """What one analysis job did: its images analysed, failed, and not run (cancelled)."""

    total: int
    ok: int = 0
    failed: int = 0
    cancelled: bool = False
    error: str | None = None           # the job itself could not run (weights, settings)

    @property
    def not_run(self) -> int:
        return self.total - self.ok - self.failed

    def message(self) -> str:
        text = f"Analysed {self.ok} of {self.total} image(s)"
        if self.failed:
            text += f" · {self.failed} failed"
        if self.cancelled and self.not_run:
            text += f" · {self.not_run} cancelled"
        return text


class AnalysisController(QObject):
    """Owns the analysis job, its progress bar and its Cancel button (the window puts them in its status bar)."""

    finished = Signal(bool)            # the job ended; cancelled?
    runningChanged = Signal(bool)

    def __init__(self, model: SessionModel, pool: QThreadPool, config: Callable[[], Settings],
                 status: QStatusBar, show_error: Callable[..., None],
                 cache_image: Callable[[str, QImage], None] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model, self.pool, self.config, self.status = model, pool, config, status
        self.show_error, self.cache_image = show_error, cache_image
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m images")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.summary: JobSummary | None = None     # the current (or last) job
        self._worker: Worker | None = None
        self._records: list[ImageRecord] = []
        self._previous: list[str] = []
        self._keep: set[int] = set()

    @property
    def running(self) -> bool:
        return self._worker is not None

    def analyse(self, records: Sequence[ImageRecord], keep_edits: Sequence[ImageRecord] = ()) -> bool:
        """Start a background analysis of `records`; False when nothing was started (busy, no images, bad
        settings: the reason is shown). The images in `keep_edits` keep their shown boxes and review: their new
        analysis becomes their model layer (`SessionModel.set_result(keep_edits=True)`)."""
        records = list(dict.fromkeys(records))
        if not records:
            return False
        if self.running:
            self.status.showMessage("An analysis is already running: cancel it or wait for it to finish.", 5000)
            return False
        try:
            config = self.config()
        except WorkbenchError as exc:
            self.show_error("Invalid analysis settings", str(exc))
            return False
        self._records, self._previous = records, [r.status for r in records]
        self._keep = {id(r) for r in keep_edits}
        self.summary = JobSummary(total=len(records))
        for record in records:
            self.model.set_status(record, QUEUED)
        worker = Worker(analysis_steps, [str(r.path) for r in records], config,
                        cancel=lambda: worker.abort_requested)
        worker.started.connect(lambda: self.status.showMessage("Loading models…"))
        worker.yielded.connect(self._on_step)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.progress.setRange(0, len(records))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.runningChanged.emit(True)
        worker.start(self.pool)
        return True

    def cancel(self) -> None:
        """Stop after the image in progress (its result is kept)."""
        if self._worker is not None:
            self._worker.quit()
            self.cancel_button.setEnabled(False)
            self.status.showMessage("Cancelling after the current image…")

    def _on_step(self, step: AnalysisStep) -> None:
        if step.result is not None and 0 < step.done <= len(self._records):
            record = self._records[step.done - 1]
            if step.image is not None and self.cache_image is not None:
                self.cache_image(str(record.path), step.image)
            self.model.set_result(record, step.result, keep_edits=id(record) in self._keep)
            self.progress.setValue(step.done)
            if step.result.ok:
                self.summary.ok += 1
            else:
                self.summary.failed += 1
                self.status.showMessage(f"{record.name}: {step.result.error}", 8000)
                return
        if step.done < len(self._records) and not self._worker.abort_requested:
            self.status.showMessage(f"Analysing {self._records[step.done].name} ({step.done + 1}/{step.total})…")

    def _on_error(self, exc: BaseException) -> None:
        self.summary.error = describe_error(exc)
        self.show_error("Analysis failed", f"{self.summary.error}\n\n{SETTINGS_HINT}")

    def _on_finished(self) -> None:
        cancelled = self._worker.abort_requested
        self.summary.cancelled = cancelled
        for record, previous in zip(self._records, self._previous):
            if record.status == QUEUED:        # not reached: back to what it was
                self.model.set_status(record, previous)
        self._worker, self._records, self._previous = None, [], []
        self.progress.hide()
        self.cancel_button.hide()
        if self.summary.error is None:        # a failed job keeps its error in the status bar
            self.status.showMessage(self.summary.message(), 10000)
        self.runningChanged.emit(False)
        self.finished.emit(cancelled)

    def close(self) -> None:
        """The window closes: stop the job (the window waits for the pool)."""
        self.cancel()


KEEP, DISCARD, SKIP = "keep", "discard", "skip"


def ask_reanalyse(parent: QWidget, records: Sequence[ImageRecord]) -> str | None:
    """Ask what a new analysis does to images with a person's edits or review: KEEP them (the new analysis goes
    beside them as the model layer), DISCARD them (the new analysis replaces the boxes, the review is cleared), SKIP
    these images; None: cancel the analysis."""
    names = ", ".join(r.name for r in records[:3]) + (f" and {len(records) - 3} more" if len(records) > 3 else "")
    box = QMessageBox(QMessageBox.Icon.Question, "Re-analyse edited or reviewed images?",
                      f"{len(records)} image(s) have boxes edited by hand or a review: {names}.", parent=parent)
    box.setInformativeText("Keep: the boxes you see and the review stay; the new analysis is kept beside them as "
                           "the model's layer.\nReplace: the new analysis replaces the boxes and clears the review "
                           "(the project's audit trail keeps the old boxes).")
    keep = box.addButton("Keep my edits", QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Replace them", QMessageBox.ButtonRole.DestructiveRole)
    skip = box.addButton("Skip these images", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(keep)
    box.exec()
    clicked = box.clickedButton()
    return next((choice for button, choice in ((keep, KEEP), (discard, DISCARD), (skip, SKIP)) if clicked == button),
                None)
