"""Exports in the background, one at a time: the session's (or the current image's) results in the CLI layout
(results.json, cells.csv, annotated PNGs), and any other export task handed to `run` (the annotation project's
training set). `finished` carries the written files, or the error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtWidgets import QFileDialog, QStatusBar, QWidget

from workbench.app.session import SessionModel
from workbench.core.errors import WorkbenchError
from workbench.gui.settings_dialog import GuiSettings
from workbench.gui.workers import Worker, describe_error


FAILED = {"export": "Export failed", "import": "Cannot import labels"}   # a job kind -> the title of its failure


class ExportController(QObject):
    finished = Signal(object)          # list of written files, or an error message (str)

    def __init__(self, model: SessionModel, settings: Callable[[], GuiSettings], pool: QThreadPool,
                 status: QStatusBar, show_error: Callable[..., None], last_folder: Callable[[], str],
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.model, self.settings, self.pool, self.status = model, settings, pool, status
        self.show_error, self.last_folder, self.dialog_parent = show_error, last_folder, parent
        self._worker: Worker | None = None
        self._kind = "export"           # what the running job is, for the busy message

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def run(self, fn: Callable[[Callable[[], bool]], Any], message: str, done: Callable[[Any], None],
            kind: str = "export") -> bool:
        """Run `fn(cancel)` in the background, one job at a time; `done(result)` then, in the UI thread, and a failure
        is shown under its kind's title (FAILED). An export (`kind` "export") returns the written files and is
        announced by `finished`; a label import (`kind` "import") returns what it read and is not. False (and a
        status message) while another job runs."""
        if self.busy:
            self.status.showMessage(f"Wait for the {self._kind} that is running.", 5000)
            return False
        worker = Worker(lambda: fn(lambda: worker.abort_requested))
        worker.returned.connect(lambda result: self._done(result, done, kind))
        worker.errored.connect(lambda exc: self._failed(exc, kind))
        self._kind = kind
        self._worker = worker
        self.status.showMessage(message)
        worker.start(self.pool)
        return True

    def _done(self, result: Any, done: Callable[[Any], None], kind: str = "export") -> None:
        self._worker = None
        done(result)
        if kind == "export":
            self.finished.emit(result)

    def _failed(self, exc: BaseException, kind: str = "export") -> None:
        self._worker = None
        message = describe_error(exc)
        self.show_error(FAILED[kind], message)
        if kind == "export":
            self.finished.emit(message)

    def export(self, current_only: bool = False, out: Path | None = None, png: bool = True) -> bool:
        """Export the analysed images as the technician sees them (display threshold, metadata, review); asks for
        the folder when `out` is None."""
        model = self.model
        records = ([model.current] if model.current else []) if current_only else model.records
        records = [r for r in records if r.result is not None]
        if not records:
            self.show_error("Nothing to export", "Analyse the image(s) first.", dialog=False)
            return False
        if self.busy:
            self.status.showMessage(f"Wait for the {self._kind} that is running.", 5000)
            return False
        if out is None:
            folder = QFileDialog.getExistingDirectory(self.dialog_parent, "Export results into folder",
                                                      self.last_folder())
            if not folder:
                return False
            out = Path(folder)
        from workbench.app.outputs import export_batch

        settings = self.settings()
        try:
            font_scale = settings.to_config().output.font_scale
        except WorkbenchError as exc:
            self.show_error("Invalid settings", str(exc))
            return False
        batch = model.to_batch(records)

        def written(files: list[Path]) -> None:
            folder = files[0].parent if files else ""
            self.status.showMessage(f"Exported {len(files)} file(s) to {folder}", 10000)

        return self.run(lambda cancel: export_batch(batch, out, png, font_scale, settings.max_pixels, None, cancel),
                        f"Exporting {len(records)} image(s) to {out}…", written)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.quit()
