"""The window's case (workbench.app.case): which case the session is, opening one (File → Open case…, Open recent,
or a folder that has one), starting one, saving it under a name, and closing without losing anything.

There is no Save: a `CaseRecorder` writes every change of the session model into the case file as it happens. The
view state (image shown, threshold) changes often and is written a moment after it settles and on close. Closing
asks only when something could not be written (read-only folder, full disk), and offers to write the case elsewhere.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow, QMessageBox

from workbench.app.annotation.case_store import CaseStore
from workbench.app.annotation.store import PROJECT_FILE
from workbench.app.case import CaseRecorder, auto_case_file, case_file_of, find_case, image_folder, restore
from workbench.app.paths import cases_dir
from workbench.core.errors import WorkbenchError
from workbench.core.inputs import DEFAULT_EXTENSIONS
from workbench.gui.style import CLASS_MAP

MAX_RECENT_CASES = 10
VIEW_SAVE_DELAY_MS = 400
CASE_FILTER = f"Cases ({PROJECT_FILE});;All files (*)"


class CaseController(QObject):
    """Uses of the window: model, store (QSettings), status bar, show_error, annotation.operator."""

    caseChanged = Signal(str)          # the case file now recorded into ("" none yet)

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.model = window.model
        self.store: CaseStore | None = None
        self.recorder: CaseRecorder | None = None
        self.location: Path | None = None     # where the case file is (or will be made at the first change)
        self._switching = False
        self._error_shown = False
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(VIEW_SAVE_DELAY_MS)
        self._view_timer.timeout.connect(self.flush_view)
        self.model.subscribe(self._on_model)
        self._record_into(None)

    # -- state ----------------------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return cases_dir()

    @property
    def name(self) -> str:
        if self.store is not None:
            return self.store.name
        return self.location.parent.name if self.location is not None else ""

    def _operator(self) -> str:
        return self.window.annotation.operator

    def _on_model(self, event: str, payload: Any) -> None:
        if event == "records_removed" and not self._switching:
            self.close_case()
            self._record_into(None)
        elif event in ("current_changed", "threshold_changed") and self.store is not None:
            self._view_timer.start()

    def _record_into(self, store: CaseStore | None, location: Path | None = None) -> None:
        """Record the session into `store`, or into a case made at the first change (at `location`, else the case
        of the first image's folder)."""
        if self.recorder is not None:
            self.recorder.detach()
        self.store, self.location = store, (store.path if store is not None else location)
        self.recorder = CaseRecorder(self.model, store=store, create=self._create, on_error=self._save_failed)
        self.caseChanged.emit(str(store.path) if store is not None else "")

    def _create(self) -> CaseStore:
        folder = image_folder(self.model.records[0].path) if self.model.records else self.root / "untitled"
        if self.location is None:
            self.location = auto_case_file(folder, self.root)
        store = CaseStore(self.location, operator=self._operator(), labels=list(CLASS_MAP), name=folder.name)
        self.store = store
        self._add_recent(store.path)
        self.caseChanged.emit(str(store.path))
        self.window.statusBar().showMessage(f"Case '{store.name}' is saved as you work: {store.path}", 8000)
        return store

    def ensure(self) -> CaseStore | None:
        """The case file, made now if it is not yet (the box editor writes into it)."""
        if self.store is None and self.model.records and self.recorder is not None:
            self.recorder.ensure_store()
        return self.store

    def _save_failed(self, message: str) -> None:
        self.window.show_error("Not saved", f"{message}\n\nThe change is kept in this window; it is saved with the "
                               "next change if the case can be written again, or save the case elsewhere "
                               "(File → Save case as…).", dialog=not self._error_shown)
        self._error_shown = True

    def flush_view(self) -> None:
        if self.recorder is not None:
            self.recorder.flush_view()

    # -- opening ------------------------------------------------------------------------------------------------------
    def before_open(self, paths: Iterable[Path | str]) -> list[Path]:
        """Called before images are added: open the case these paths name (a case file, or a folder holding one),
        or the case kept for their folder when the session is empty. Returns the paths whose images are still to
        add (a case's folder adds its images that the case does not have yet)."""
        paths = [Path(p) for p in paths]
        named = [(p, case_file_of(p)) for p in paths]
        explicit = [case for _p, case in named if case is not None]
        if explicit:
            if not self.open_case(explicit[0]):
                return [p for p, case in named if case is None]
            return [p for p, case in named if case is None or (p.is_dir() and _holds_images(p))]
        if self.store is None and not self.model.records:
            existing, location = find_case([p for p in paths if p.suffix.lower() != ".json"] or paths, self.root)
            if existing is not None:
                self.open_case(existing)
            else:
                self.location = location
        return paths

    def open_case(self, path: Path | str) -> bool:
        """Open a saved case (its file or folder) in place of the session; True when it opened."""
        path = Path(path)
        file = case_file_of(path) or path
        try:
            store = CaseStore(file, operator=self._operator(), labels=list(CLASS_MAP))
        except WorkbenchError as exc:
            self.window.show_error("Cannot open case", str(exc))
            return False
        self.close_case()
        try:
            with self._replacing_session():
                records, ids = restore(self.model, store)
        except WorkbenchError as exc:
            store.close()
            self.window.show_error("Cannot open case", str(exc))
            return False
        self._record_into(store)
        self.recorder.adopt(records, ids)
        self._error_shown = False
        self._add_recent(store.path)
        analysed = sum(r.analysed for r in records)
        reviewed = sum(r.reviewed_at is not None for r in records)
        self.window.statusBar().showMessage(f"Opened case '{store.name}': {len(records)} image(s), {analysed} "
                                            f"analysed, {reviewed} reviewed", 8000)
        return True

    @contextmanager
    def _replacing_session(self):
        """The session is emptied to open another case: not a reason to close (and forget) that case."""
        self._switching = True
        try:
            yield
        finally:
            self._switching = False

    def close_case(self) -> None:
        """Stop recording into the case (everything is on disk already) and close its file."""
        self._view_timer.stop()
        if self.recorder is not None:
            self.recorder.flush_view()
            self.recorder.detach()
            self.recorder = None
        if self.store is not None:
            self.store.close()
        self.store, self.location = None, None
        self.caseChanged.emit("")

    def new_case(self, name: str, folder: Path | None = None) -> CaseStore | None:
        """An empty case named `name` (in `folder`, else in the cases folder); the session is emptied first."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:40] or "case"
        location = (Path(folder) if folder else self.root / f"{slug}-{datetime.now():%Y%m%d-%H%M%S}") / PROJECT_FILE
        try:
            store = CaseStore(location, operator=self._operator(), labels=list(CLASS_MAP), name=name)
        except WorkbenchError as exc:
            self.window.show_error("Cannot make the case", str(exc))
            return None
        self.close_case()
        with self._replacing_session():
            self.model.clear()
        self._record_into(store)
        self._add_recent(store.path)
        return store

    def save_as(self, folder: Path | str) -> Path | None:
        """Write the case into `folder` (made if needed) under the folder's name, and go on working there."""
        folder = Path(folder)
        if not self.model.records:
            self.window.show_error("Nothing to save", "Open images first.", dialog=False)
            return None
        try:
            if self.recorder.unsaved_records() or self.ensure() is None:
                target = self._rescue(folder)          # what could not be written: from this window's memory
            else:
                self.recorder.flush_view()
                target = self.store.copy_to(folder, name=folder.name)
        except WorkbenchError as exc:
            self.window.show_error("Cannot save the case", str(exc))
            return None
        self.open_case(target)
        return target

    def _rescue(self, folder: Path) -> Path:
        store = CaseStore(folder / PROJECT_FILE, operator=self._operator(), labels=list(CLASS_MAP), name=folder.name)
        recorder = CaseRecorder(self.model, store=store)
        try:
            recorder.ensure_store()
            recorder._add(self.model.records)
            recorder._view_dirty = True
            recorder.flush_view()
            if recorder.unsaved_records():
                raise WorkbenchError(f"{store.path}: the case could not be written there either")
        finally:
            recorder.detach()
            store.close()
        return folder / PROJECT_FILE

    # -- closing --------------------------------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """True when the window may close: everything is saved, or the user chose to leave what could not be."""
        if self.recorder is None or not self.recorder.unsaved_records() or self.recorder.retry() == 0:
            return True
        count = len(self.recorder.unsaved_records())
        box = QMessageBox(QMessageBox.Icon.Warning, "Changes not saved",
                          f"{count} image(s) have changes that could not be written to {self.location}.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard |
                          QMessageBox.StandardButton.Cancel, self.window)
        box.setInformativeText("Save the case in another folder, close without them, or go back.")
        box.button(QMessageBox.StandardButton.Save).setText("Save case as…")
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Save:
            return self.save_as_dialog() is not None
        return answer == QMessageBox.StandardButton.Discard

    # -- dialogs and the recent list ------------------------------------------------------------------------------
    def open_case_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open case", str(self.root), CASE_FILTER)
        if path:
            self.open_case(path)

    def new_case_dialog(self) -> None:
        name, ok = QInputDialog.getText(self.window, "New case", "Name of the case (e.g. the sample ID):")
        if ok and name.strip():
            self.new_case(name.strip())

    def save_as_dialog(self) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save case as (a new folder)",
                                              str(self.root / (self.name or "case")), "Case folder (*)")
        return self.save_as(path) if path else None

    def recent_cases(self) -> list[str]:
        value = self.window.store.value("recent/cases") or []
        return [str(v) for v in ([value] if isinstance(value, str) else value)]

    def _add_recent(self, path: Path) -> None:
        text = str(Path(path).resolve())
        recent = [p for p in self.recent_cases() if p != text]
        self.window.store.setValue("recent/cases", [text, *recent][:MAX_RECENT_CASES])

    def clear_recent(self) -> None:
        self.window.store.setValue("recent/cases", [])


def case_label(path: Path | str) -> str:
    """'name — N images' of a saved case, read without opening it for writing (the path when unreadable)."""
    path = Path(path)
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)) as db:
            name = db.execute("SELECT value FROM meta WHERE key='case_name'").fetchone()
            count = db.execute("SELECT COUNT(*) FROM case_images").fetchone()[0]
        return f"{name[0] if name else path.parent.name} — {count} image(s)"
    except sqlite3.Error:
        return str(path)


def _holds_images(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in DEFAULT_EXTENSIONS for p in folder.iterdir())
    except OSError:
        return False
