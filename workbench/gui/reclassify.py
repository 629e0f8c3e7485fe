"""Reclassifying cells from anywhere, in any mode: a key per class (1 = the first label, 2 = the second, ...),
Space to confirm a cell as it is, right-click menus on boxes, and "next unreviewed" (cell and image).

Every change is one QUndoCommand on the box editor's undo stack (so Ctrl+Z undoes it like a box edit) and is
written first to the case's project store (one audit row per changed cell: operator, time, box before and after),
then into the session model (`replace_cells`), whose observers (viewer, galleries, counts, the case recorder)
follow. A reclassified or confirmed cell is marked reviewed; its box, detector confidence and the classifier's
p_blast are kept (they are what the machine said). Unlike the editor, these commands carry their own image, so a
cell of any image of the session (the session gallery) can be reclassified without showing it first.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QUndoCommand
from PySide6.QtWidgets import QMenu, QWidget

from workbench.app.cell_review import next_unreviewed_cell, next_unreviewed_image, reviewed_cell
from workbench.app.results import CellDetection
from workbench.app.session import ImageRecord
from workbench.core.errors import WorkbenchError
from workbench.gui.style import CLASS_MAP, label_name

Cells = Mapping[int, "CellDetection | None"]
Target = tuple[ImageRecord, int]           # (image, cell id)


class CellsChange(QUndoCommand):
    """Some cells of one image: `after` on redo, `before` on undo (None = no such cell). The change is applied
    before the command is pushed (so a change the project refuses never enters the history): the first redo,
    which QUndoStack.push calls, does nothing."""

    def __init__(self, reviewer: "CellReviewer", record: ImageRecord, before: Cells, after: Cells, text: str,
                 action: str) -> None:
        super().__init__(text)
        self.reviewer, self.record, self.action = reviewer, record, action
        self.before, self.after = dict(before), dict(after)
        self._applied = True

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self.reviewer.apply(self.record, self.before, self.after, self.action)

    def undo(self) -> None:
        self.reviewer.apply(self.record, self.after, self.before, f"undo {self.action}")


class CellReviewer(QObject):
    """Uses of the window: model, annotation (project entry, operator), editor (undo stack, edit-mode selection),
    display (select / centre a cell), show_error and the status bar."""

    changed = Signal(object)                # the record whose cells a reclassification changed
    menuShown = Signal(object)              # the context menu just opened (tests, screenshots)

    def __init__(self, window, parent: QObject | None = None) -> None:
        super().__init__(parent or window)
        self.window = window
        self.model = window.model
        self.editor = window.editor
        self.undo_stack = self.editor.undo_stack
        self.selection_sources: list[Callable[[], list[Target]]] = []   # widgets that can hold a cell selection
        self.menu: QMenu | None = None
        self.cam_requested: Callable[[ImageRecord, int], None] | None = None
        # edit mode's 1..9 keys reclassify through here too (one behaviour in every mode)
        self.editor.relabel_hook = lambda ids, label: self.reclassify(
            [(self.editor.record, i) for i in ids], label) if self.editor.record is not None else None

    # -- what the keys act on -----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        project = getattr(self.window.annotation, "project", None)
        return list(project.labels) if project is not None else list(CLASS_MAP)

    def viewer_targets(self) -> list[Target]:
        record = self.model.current
        if record is None or not record.analysed:
            return []
        if self.editor.enabled and self.editor.record is record:
            return [(record, i) for i in self.editor.selected]
        selected = self.window.scene.selected_id
        return [(record, selected)] if selected >= 0 else []

    # -- the changes --------------------------------------------------------------------------------------------
    def reclassify(self, targets: Iterable[Target], label: str | None) -> bool:
        """Give the cells `label` (None: confirm each as it is) and mark them reviewed; undoable and audited.
        Returns True when something changed."""
        if label is not None and label not in self.labels:
            raise ValueError(f"{label!r} is not one of the labels {self.labels}")
        changes = []
        for record, ids in _by_record(targets).items():
            cells = self._cells(record)
            before = {i: cells[i] for i in ids if i in cells}
            after = {i: reviewed_cell(c, label) for i, c in before.items()}
            before = {i: c for i, c in before.items() if after[i] != c}
            if before:
                changes.append((record, before, {i: after[i] for i in before}))
        if label is not None and self.editor.enabled:
            self.editor.current_label = label
        n = sum(len(b) for _, b, _ in changes)
        what = f"Reclassify {n} cell(s) {label_name(label)}" if label else f"Confirm {n} cell(s)"
        return self._push(changes, what, "reclassify" if label else "confirm")

    def delete(self, targets: Iterable[Target]) -> bool:
        changes = []
        for record, ids in _by_record(targets).items():
            cells = self._cells(record)
            before = {i: cells[i] for i in ids if i in cells}
            if before:
                changes.append((record, before, {i: None for i in before}))
        return self._push(changes, f"Delete {sum(len(b) for _, b, _ in changes)} box(es)", "delete")

    def _push(self, changes, text: str, action: str) -> bool:
        done = []
        for record, before, after in changes:
            if not self.apply(record, before, after, action):
                break
            done.append((record, before, after))
        if not done:
            return False
        if len(done) > 1:
            self.undo_stack.beginMacro(text)
        for record, before, after in done:
            self.undo_stack.push(CellsChange(self, record, before, after, text, action))
        if len(done) > 1:
            self.undo_stack.endMacro()
        return True

    def _cells(self, record: ImageRecord) -> dict[int, CellDetection]:
        """The cells a change starts from: an image not edited yet starts from the cells shown at the display
        threshold (as the box editor does: a person's change is of what they see)."""
        if record.result is None or not record.result.ok:
            return {}
        cells = record.result.cells if record.edited else record.cells(self.model.threshold)
        return {c.cell_id: c for c in cells}

    def apply(self, record: ImageRecord, before: Cells, after: Cells, action: str) -> bool:
        """Write the change into the project (audited), then into the model. False (and a message) when the
        project refuses it or the image's cells are no longer what the change was made from."""
        cells = self._cells(record)
        if any(cells.get(i) != cell for i, cell in before.items()):
            self._failed(f"the cells of {record.name} changed since (a new analysis?): the change was not applied")
            return False
        try:
            store, image_id = self._project(record, list(cells.values()))
            if store is not None:
                store.apply(image_id, before, after, action, "manual")
        except WorkbenchError as exc:
            self._failed(str(exc))
            return False
        for cell_id, cell in after.items():
            if cell is None:
                cells.pop(cell_id, None)
            else:
                cells[cell_id] = cell
        self.model.replace_cells(record, [cells[i] for i in sorted(cells)])
        self.changed.emit(record)
        return True

    def _project(self, record: ImageRecord, shown: list[CellDetection]):
        """(the case's project store, the image's id in it), the project holding `shown` for the image first."""
        entry = self.window.annotation.project_entry(record)
        store = self.window.annotation.project
        if store is not None and not record.edited and store.cells(entry.id) != sorted(shown, key=lambda c: c.cell_id):
            # the first change of an image: the project starts from the cells shown (as the editor's first edit)
            store.replace_cells(entry.id, shown, "model predictions", "model")
        return store, entry.id

    def _failed(self, message: str) -> None:
        QTimer.singleShot(0, self.undo_stack.clear)      # (never inside a command that is being undone)
        self.window.show_error("The change was not saved", message)

    # -- next unreviewed ----------------------------------------------------------------------------------------
    def next_cell(self) -> tuple[ImageRecord, int] | None:
        """Show the next cell nobody has reviewed (after the selected one), in its smear."""
        current = self.model.current
        targets = self.viewer_targets()
        after = targets[0][1] if targets else -1
        found = next_unreviewed_cell(self.model.records, self.model.threshold, current, after)
        if found is None:
            self.window.statusBar().showMessage("Every shown cell has been reviewed.", 6000)
            return None
        record, cell = found
        self.show_cell(record, cell.cell_id)
        return record, cell.cell_id

    def next_image(self) -> ImageRecord | None:
        record = next_unreviewed_image(self.model.records, self.model.current)
        if record is None:
            self.window.statusBar().showMessage("Every analysed image is marked reviewed.", 6000)
            return None
        self.model.set_current(self.model.index_of(record))
        return record

    def show_cell(self, record: ImageRecord, cell_id: int, centre: bool = True) -> None:
        """Make `record` current and select (and centre) its cell; in edit mode the editor's selection too."""
        self.model.set_current(self.model.index_of(record))
        self.window.display.select_cell(cell_id)
        if centre:
            self.window.view.centre_on_cell(cell_id)
        if self.editor.enabled and self.editor.record is record:
            self.editor.set_selection([cell_id])

    # -- keys ---------------------------------------------------------------------------------------------------
    def key_target(self, key: int, modifiers) -> tuple[str | None, bool] | None:
        """(label, confirm) for a review key: 1..9 a label, Space confirms; None for any other key."""
        if modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return None
        if key == Qt.Key.Key_Space:
            return None, True
        if Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and key - Qt.Key.Key_1 < len(self.labels):
            return self.labels[key - Qt.Key.Key_1], False
        return None

    def install_keys(self, widget: QWidget, targets: Callable[[], list[Target]]) -> None:
        """Review keys on `widget` act on `targets()` (when it holds any; otherwise the keys do what they did)."""
        widget.installEventFilter(_ReviewKeys(self, targets, widget))

    # -- context menu on boxes ----------------------------------------------------------------------------------
    def install_box_menu(self) -> None:
        viewport = self.window.view.viewport()
        viewport.installEventFilter(_BoxMenu(self, viewport))

    def box_menu(self, record: ImageRecord, cell_id: int, at: QPoint | None = None) -> QMenu:
        """The menu of one box: relabel (one entry per label, with its key), mark reviewed, delete, Grad-CAM."""
        cell = self._cells(record).get(cell_id)
        menu = QMenu(self.window)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        target = [(record, cell_id)]
        for n, label in enumerate(self.labels):
            action = QAction(f"{label_name(label)}\t{n + 1}" if n < 9 else label_name(label), menu)
            action.setCheckable(True)
            action.setChecked(cell is not None and cell.label == label)
            action.triggered.connect(lambda _=False, lab=label: self.reclassify(target, lab))
            menu.addAction(action)
        menu.addSeparator()
        confirm = menu.addAction("Mark reviewed\tSpace", lambda: self.reclassify(target, None))
        confirm.setEnabled(cell is not None and not cell.reviewed)
        menu.addAction("Delete box", lambda: self.delete(target))
        if self.cam_requested is not None:
            menu.addSeparator()
            menu.addAction("Grad-CAM of this cell", lambda: self.cam_requested(record, cell_id))
        self.menu = menu
        if at is not None:
            menu.popup(at)
        self.menuShown.emit(menu)
        return menu


class _ReviewKeys(QObject):
    def __init__(self, reviewer: CellReviewer, targets: Callable[[], list[Target]], parent: QObject) -> None:
        super().__init__(parent)
        self.reviewer, self.targets = reviewer, targets

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        what = self.reviewer.key_target(event.key(), event.modifiers())
        if what is None:
            return False
        targets = self.targets()
        if not targets:
            return False              # nothing selected: "1" keeps its window meaning (100 %)
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()            # the key is ours, not a window shortcut's
            return True
        label, _confirm = what
        self.reviewer.reclassify(targets, label)
        return True


class _BoxMenu(QObject):
    """Right-click on a box of the viewer (either mode): select it and open its menu."""

    def __init__(self, reviewer: CellReviewer, parent: QObject) -> None:
        super().__init__(parent)
        self.reviewer = reviewer

    def eventFilter(self, obj, event) -> bool:
        if event.type() != QEvent.Type.ContextMenu:
            return False
        window = self.reviewer.window
        record = window.model.current
        item = window.scene.cell_at(window.view.mapToScene(event.pos()))
        if record is None or item is None:
            return False
        self.reviewer.show_cell(record, item.cell_id, centre=False)
        self.reviewer.box_menu(record, item.cell_id, event.globalPos())
        return True


def _by_record(targets: Iterable[Target]) -> dict[ImageRecord, list[int]]:
    out: dict[ImageRecord, list[int]] = {}
    for record, cell_id in targets:
        if record is not None and cell_id is not None and cell_id >= 0:
            out.setdefault(record, []).append(cell_id)
    return out
