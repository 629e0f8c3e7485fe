"""Opening images, folders and saved results into the session (menus, dialogs, drag and drop) and the recent
files list kept in the settings store. Before images are added, `before_open` (the window's case controller) may
open the case those paths name or the case kept for their folder; the recent menu lists cases first."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMenu, QStatusBar, QWidget

from workbench.app.session import ImageRecord, SessionModel
from workbench.core.inputs import DEFAULT_EXTENSIONS

MAX_RECENT = 10
IMAGE_FILTER = "Images (" + " ".join(f"*{e}" for e in DEFAULT_EXTENSIONS) + ");;All files (*)"


class SessionOpener(QObject):
    def __init__(self, model: SessionModel, store: QSettings, extensions: Callable[[], list[str]],
                 status: QStatusBar, show_error: Callable[..., None], parent: QWidget) -> None:
        super().__init__(parent)
        self.model, self.store, self.extensions, self.status = model, store, extensions, status
        self.show_error, self.dialog_parent = show_error, parent
        self.before_open: Callable[[list[Path]], list[Path]] = lambda paths: paths
        self.recent_cases = None      # the case controller (recent_cases(), open_case(), clear_recent())

    def open_paths(self, paths: Iterable[Path | str]) -> list[ImageRecord]:
        """Add images / folders to the session (results.json files are opened as saved results)."""
        paths = [Path(p) for p in paths]
        given = paths
        paths = self.before_open(paths)
        results = [p for p in paths if p.suffix.lower() == ".json"]
        images = [p for p in paths if p.suffix.lower() != ".json"]
        added: list[ImageRecord] = []
        for path in results:
            added += self.open_results(path)
        if images:
            new, problems = self.model.add_paths(images, self.extensions())
            added += new
            if problems:
                self.show_error("Some inputs could not be opened", "\n".join(problems), dialog=not new)
            if new:
                self.status.showMessage(f"Opened {len(new)} image(s)", 5000)
        self.add_recent([p for p in given if p.exists()])
        return added

    def open_results(self, path: Path) -> list[ImageRecord]:
        from workbench.app.results import load_results

        try:
            batch = load_results(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.show_error("Cannot open results", f"{path}: {exc}")
            return []
        added = self.model.load_batch(batch, base=Path(path).parent)
        self.status.showMessage(f"Opened results of {len(batch.images)} image(s) from {path}", 5000)
        return added

    # -- dialogs, drag and drop ----------------------------------------------------------------------------------------
    def open_images_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self.dialog_parent, "Open smear images", self.last_folder(),
                                                IMAGE_FILTER)
        if files:
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.dialog_parent, "Open a folder of smear images",
                                                  self.last_folder())
        if folder:
            self.open_paths([folder])

    def open_results_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Open results", self.last_folder(),
                                              "Results (*.json)")
        if path:
            self.open_paths([path])

    @staticmethod
    def accepts(event: QDragEnterEvent) -> bool:
        return event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls())

    def drop(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # -- recent files ------------------------------------------------------------------------------------------------
    def last_folder(self) -> str:
        recent = self.recent_paths()
        if recent:
            first = Path(recent[0])
            return str(first if first.is_dir() else first.parent)
        return ""

    def recent_paths(self) -> list[str]:
        value = self.store.value("recent/paths") or []
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value]

    def add_recent(self, paths: Sequence[Path]) -> None:
        recent = self.recent_paths()
        for path in reversed(paths):
            text = str(Path(path).resolve())
            if text in recent:
                recent.remove(text)
            recent.insert(0, text)
        self.store.setValue("recent/paths", recent[:MAX_RECENT])

    def fill_recent_menu(self, menu: QMenu) -> None:
        """Recent cases (each opens as it was left), then recent image files and folders."""
        menu.clear()
        cases = self.recent_cases
        recent_cases = cases.recent_cases() if cases is not None else []
        if recent_cases:
            from workbench.gui.cases import case_label

            menu.addSection("Cases")
            for text in recent_cases:
                action = menu.addAction(case_label(text))
                action.setToolTip(text)
                action.setData(text)
                action.setEnabled(Path(text).exists())
                action.triggered.connect(lambda checked=False, p=text: cases.open_case(p))
        recent = self.recent_paths()
        if recent and recent_cases:
            menu.addSection("Images and folders")
        for text in recent:
            action = menu.addAction(text)
            action.setEnabled(Path(text).exists())
            action.triggered.connect(lambda checked=False, p=text: self.open_paths([p]))
        if recent or recent_cases:
            menu.addSeparator()
            menu.addAction("Clear list", self.clear_recent)
        else:
            menu.addAction("(none)").setEnabled(False)

    def clear_recent(self) -> None:
        self.store.setValue("recent/paths", [])
        if self.recent_cases is not None:
            self.recent_cases.clear_recent()
