"""The annotation side of the window: the project store (labels, reviews, audit trail), the operator name, edit
mode with its box editor, label import, the training-set export and the retraining dialog.

The project is the case's file (workbench.gui.cases): edit mode edits the session's record through the model
(`BoxEditor` -> `SessionModel.replace_cells`); the project gets the same change first, audited. The first edit of an
image starts from the model's boxes shown at the display threshold (model-assisted labelling); the model's own boxes
stay as the record's model layer. Reviews go through the model too, and the case recorder writes them (and the
approved boxes) into the project. Entering edit mode or moving between images in it changes nothing. Which importer
reads a label file is decided by `workbench.app.annotation.label_files` (Qt-free).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow

from workbench.core.errors import WorkbenchError
from workbench.app.session import REVIEWED, ImageRecord, _user_name
from workbench.gui.editing import BoxEditor
from workbench.gui.style import CLASS_MAP

EDIT_HELP = "Edit mode: drag to draw or move boxes, corners resize, Del deletes, 1/2 relabel, Ctrl+Z undoes"


class AnnotationController(QObject):
    """Uses of the window: its model, view, settings store, status bar, `show_error`, `current_image`, the
    opener's last folder (dialogs) and the export controller (training set)."""

    editModeChanged = Signal(bool)
    labelsImported = Signal(object)      # {image name: boxes imported} of a label-folder import

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.model = window.model
        self.training_dialog = None
        self.last_training_data: Path | None = None
        self.editor = BoxEditor(window.view, self.model, labels=list(CLASS_MAP), parent=self)
        self.editor.storeFailed.connect(window.show_error)
        self._edited_result = None          # the result the editor's history belongs to
        self.model.subscribe(self._on_model)
        self.model.operator = self.operator

    @property
    def project(self):
        """The case's project store (None until the session has a case file)."""
        cases = getattr(self.window, "cases", None)
        return cases.store if cases is not None else None

    def case_changed(self) -> None:
        """The session records into another case file: the editor writes there from now on."""
        self.editor.store = self.project
        if self.project is not None:
            self.editor.labels = self.project.labels
        if self.editor.enabled and self.project is not None:
            self.attach(self.model.current)
        else:
            self.editor.set_image(None)

    @property
    def enabled(self) -> bool:
        return self.editor.enabled

    def _status(self, text: str, ms: int = 8000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def _on_model(self, event: str, payload: Any) -> None:
        if not self.editor.enabled:
            return
        if event == "current_changed":
            self.attach(payload)
        elif event == "record_changed" and payload is self.model.current and payload is self.editor.record \
                and payload.result is not self._edited_result:
            self._edited_result = payload.result     # a new analysis of the edited image: its history is gone
            self.editor.set_image(self.editor.image_id, payload)

    # -- operator and project -------------------------------------------------------------------------------------
    @property
    def operator(self) -> str:
        """Who is annotating: the `annotation/operator` setting, else the login name."""
        name = self.window.store.value("annotation/operator")
        return str(name) if name else _user_name()

    def set_operator(self, name: str) -> None:
        self.window.store.setValue("annotation/operator", name.strip())
        self.model.operator = self.operator
        if self.project is not None:
            self.project.operator = self.operator

    def operator_dialog(self) -> None:
        name, ok = QInputDialog.getText(self.window, "Operator", "Name recorded with every edit and review:",
                                        text=self.operator)
        if ok:
            self.set_operator(name)

    def open_project(self, folder: Path | str):
        """Use `folder/project.sqlite` as the session's case: open it when it exists, else save the session there."""
        from workbench.app.case import case_file_of

        cases = self.window.cases
        if case_file_of(folder) is not None:
            cases.open_case(folder)
        else:
            cases.save_as(Path(folder))
        return self.project

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Annotation project folder",
                                                  self.window.opener.last_folder())
        if folder:
            self.open_project(folder)

    def project_entry(self, record: ImageRecord):
        """The record's image in the case's project (the case file is made now if it is not yet)."""
        project = self.window.cases.ensure()
        if project is None:
            raise WorkbenchError("no case to keep the labels in (open images first)")
        entry = project.find_image(record.path)
        if entry is None:
            project.add_images([record.path])
            entry = project.image(record.path)
        width, height = self.record_size(record)
        if width and height and not (entry.width and entry.height):
            entry = project.add_image(record.path, width, height)
        return entry

    def record_size(self, record: ImageRecord) -> tuple[int, int]:
        if record.result is not None and record.result.width:
            return record.result.width, record.result.height
        image = self.window.current_image
        if image is not None and record is self.model.current:
            return image.width(), image.height()
        return 0, 0

    # -- edit mode -------------------------------------------------------------------------------------------------
    def attach(self, record: ImageRecord | None) -> None:
        """Point the editor at `record` (nothing changes until the first edit: an image shown in edit mode stays as
        it was, analysed or not)."""
        if record is None:
            self.editor.set_image(None)
            return
        try:
            entry = self.project_entry(record)
        except WorkbenchError as exc:
            self.window.show_error("Cannot edit this image", str(exc))
            self.editor.set_image(None)
            return
        self.editor.store = self.project
        self._edited_result = record.result
        self.editor.set_image(entry.id, record)

    def set_edit_mode(self, enabled: bool) -> None:
        enabled = bool(enabled) and self.model.current is not None
        if enabled:
            self.attach(self.model.current)
        self.editor.set_enabled(enabled)
        self.editModeChanged.emit(enabled)
        self.window.view.setFocus()
        self._status(EDIT_HELP if enabled else "Edit mode off")

    def toggle_reviewed(self) -> None:
        """Mark the current image reviewed by the operator (or not); the case saves it into the project."""
        record = self.model.current
        if record is not None and record.analysed:
            self.model.mark_reviewed(record, record.status != REVIEWED, user=self.operator)

    # -- label import ------------------------------------------------------------------------------------------------
    def import_labels(self, path: Path | str) -> bool:
        """Replace the current image's boxes by a label file (undoable, audited)."""
        from workbench.app.annotation.label_files import import_label_file

        record = self.model.current
        if record is None:
            return False
        path = Path(path)
        if not self.editor.enabled:
            self.set_edit_mode(True)
        width, height = self.record_size(record)
        try:
            cells, missed = import_label_file(path, record.path, width, height, self.project.labels)
        except (OSError, ValueError, KeyError, WorkbenchError) as exc:
            self.window.show_error("Cannot import labels", str(exc))
            return False
        if missed:
            self._status(f"{missed} point(s) gave no white-cell box")
        for label in dict.fromkeys(c.label for c in cells):
            if label not in self.project.labels:
                self.project.add_label(label)
        self.editor.labels = self.project.labels
        self.editor.replace_all(cells, f"Import {path.name}")
        return True

    def import_labels_dialog(self) -> None:
        from workbench.app.annotation.label_files import LABEL_FILTER

        path, _ = QFileDialog.getOpenFileName(self.window, "Import labels", self.window.opener.last_folder(),
                                              LABEL_FILTER)
        if path:
            self.import_labels(path)

    def import_label_folder(self, folder: Path | str) -> bool:
        """Import the label files of a folder for every session image into the project (audited; not undoable).
        The files are read in the background (images opened, points grown into boxes); the boxes then enter the
        project and the session in the UI thread, and `labelsImported` carries {image name: boxes}. False when
        nothing was started (no images, no case, another background job running)."""
        from workbench.app.annotation.importers import read_label_folder

        if not self.model.records or self.window.cases.ensure() is None:
            return False
        images, folder, project = [r.path for r in self.model.records], Path(folder), self.project
        project_labels = list(project.labels)          # YOLO class ids without a names file: the project's order

        def run(cancel) -> list:
            return read_label_folder(images, folder, project_labels=project_labels)

        return self.window.exports.run(run, f"Reading the label files in {folder}…",
                                       lambda found: self._store_label_files(found, project), kind="import")

    def _store_label_files(self, found: list, project) -> None:
        from workbench.app.annotation.importers import store_label_files

        if self.project is not project:           # the boxes belong to the case they were read for, no other
            self.window.show_error("Cannot import labels",
                                   "The case changed while its label files were read: import them again.")
            return
        try:
            counts = store_label_files(self.project, found)
        except (OSError, ValueError, KeyError, WorkbenchError) as exc:
            self.window.show_error("Cannot import labels", str(exc))
            return
        self.editor.labels = self.project.labels
        imported = set(counts)
        for record in self.model.records:          # the session shows the imported boxes: the images are edited
            if record.name in imported:
                entry = self.project.image(record.path)
                self.model.replace_cells(record, self.project.cells(entry.id), size=(entry.width, entry.height))
        if self.editor.enabled:
            self.attach(self.model.current)
        self._status(f"Imported labels of {len(counts)} image(s) ({sum(counts.values())} boxes)")
        self.labelsImported.emit(dict(counts))

    def import_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Folder of label files",
                                                  self.window.opener.last_folder())
        if folder:
            self.import_label_folder(folder)

    # -- training set and retraining -----------------------------------------------------------------------------------
    def export_training_set(self, out: Path | str) -> bool:
        """Export the project's reviewed images in the background: detector/ (YOLO, one class wbc),
        classifier/ (crops per class), coco.json and voc/, all with the same split by image."""
        if self.project is None:
            self.window.show_error("Nothing to export", "Review some images first (edit mode, Ctrl+M).", dialog=False)
            return False
        out, db_path = Path(out), self.project.path

        def run(cancel) -> list[Path]:
            from workbench.app.annotation import exporters
            from workbench.app.annotation.store import ProjectStore

            with ProjectStore(db_path) as store:         # sqlite connections stay in their thread
                data = exporters.export_yolo(store, out / "detector", single_class="wbc")
                exporters.export_crops(store, out / "classifier")
                exporters.export_coco(store, out / "coco.json")
                exporters.export_voc(store, out / "voc")
            return [data]

        def done(written: list[Path]) -> None:
            self.last_training_data = written[0]
            self._status(f"Training set exported: {written[0]}", 10000)

        return self.window.exports.run(run, f"Exporting the training set to {out}…", done)

    def export_training_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export the training set into folder",
                                                  self.window.opener.last_folder())
        if folder:
            self.export_training_set(folder)

    def open_training_dialog(self, data_yaml: Path | str | None = None):
        from workbench.gui.training import TrainingDialog

        data_yaml = data_yaml or self.last_training_data
        if self.training_dialog is None:
            settings = self.window.settings          # fine-tune the weights the analysis uses, by default
            self.training_dialog = TrainingDialog(data_yaml, parent=self.window,
                                                  chosen={"detect": settings.detector,
                                                          "classify": settings.classifier})
        if data_yaml:
            self.training_dialog.set_export(data_yaml)
        self.training_dialog.show()
        return self.training_dialog

    def close(self) -> None:
        """The window closes (the case controller closes the project file)."""
        if self.training_dialog is not None:
            self.training_dialog.stop()
