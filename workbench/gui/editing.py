"""Box editing on the smear viewer: draw, move, resize, delete, relabel, multi-select, copy/paste, all undoable.

`BoxEditor` switches a SmearView into edit mode (no hand-drag panning; the mouse edits boxes instead) and turns every
edit into a QUndoCommand on its QUndoStack. A command stores the exact cells before and after (CellDetection, float
xyxy = the item's QRectF), so undo and redo restore exact coordinates. The session model is the truth: applying a
command writes the project file (when a ProjectStore is attached: one SQLite transaction with an audit row per
changed box, operator = the store's operator), then replaces the image's cells in the `SessionModel`
(`replace_cells`); the scene's boxes are redrawn when the model notifies ``cells_changed``, never read back. Only a
drag in progress moves a box item directly (a preview), and the command that ends the drag puts it where the model
says.

Every box stays inside its image, whatever the path (workbench.core.box_bounds): a drawn or resized box is cut at
the image border, a moved selection stops at the border, a pasted box is pushed inside, an imported or API-given box
is clipped (one entirely outside is refused). The first edit of an image the model analysed starts from the boxes
shown at the display threshold; the model's own boxes stay the record's model layer.

Mouse: drag on empty space draws a box (the current label); click a box to select it (Ctrl+click adds/removes);
drag a selected box to move the selection; drag a corner handle of the single selected box to resize it.
Keys: Delete/Backspace deletes the selection, 1..9 relabel the selection to the project's n-th label, Ctrl+A selects
all, Esc clears the selection, Ctrl+C / Ctrl+V copy and paste boxes (offset by 10 px), Ctrl+Z / Ctrl+Shift+Z (or
Ctrl+Y) undo / redo.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPen, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

from workbench.app.results import CellDetection
from workbench.app.session import ImageRecord, SessionModel
from workbench.core.box_bounds import clamp_shift, clip_box, fit_box
from workbench.core.errors import WorkbenchError
from workbench.gui.style import SELECTION_RGB
from workbench.gui.viewer import SmearView

Cells = Mapping[int, "CellDetection | None"]
HANDLE_PX = 8.0          # corner handles: size on screen, and how close a press must be to grab one
MIN_BOX_PX = 3.0         # a drawn box smaller than this (image pixels) is a click, not a box
PASTE_OFFSET = 10.0


def rect_xyxy(rect: QRectF) -> tuple[float, float, float, float]:
    rect = rect.normalized()
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


def edited_cell(cell: CellDetection, rect: QRectF | None = None, label: str | None = None) -> CellDetection:
    """`cell` moved/resized to `rect` and/or relabelled: an annotator's box is certain (det_conf 1; a relabel sets
    label_conf 1 and p_blast 1 or 0)."""
    out = replace(cell, det_conf=1.0)
    if rect is not None:
        out = replace(out, xyxy=rect_xyxy(rect))
    if label is not None:
        out = replace(out, label=label, label_conf=1.0, p_blast=1.0 if label == "blast" else 0.0)
    return out


def clip_cell(cell: CellDetection, bounds: tuple[float, float] | None) -> CellDetection | None:
    """`cell` cut to an image of `bounds` (width, height): None when nothing of it is inside; unchanged while the
    size is unknown (None)."""
    if bounds is None:
        return cell
    box = clip_box(cell.xyxy, *bounds)
    return None if box is None else replace(cell, xyxy=box)


def seed_project(store, image_id: int, shown: list[CellDetection]) -> None:
    """Before the first edit of an image: the project holds the boxes shown, unless a person's boxes are there
    already (another window edited it: the edit's own check then refuses a stale change)."""
    if store.cells(image_id) != shown and set(store.sources(image_id).values()) <= {"model"}:
        store.replace_cells(image_id, shown, "model predictions", "model")


class CellsCommand(QUndoCommand):
    """Replace some cells of the edited image: `after[id]` on redo, `before[id]` on undo (None = no such cell)."""

    action = "edit"
    source = "manual"           # the store's `source` of the boxes this command writes

    def __init__(self, editor: "BoxEditor", text: str, before: Cells, after: Cells) -> None:
        super().__init__(text)
        self.editor, self.before, self.after = editor, dict(before), dict(after)

    def redo(self) -> None:
        self.editor._apply(self.before, self.after, self.action, self.source)

    def undo(self) -> None:
        self.editor._apply(self.after, self.before, f"undo {self.action}", self.source)


class AddBoxes(CellsCommand):
    action = "add"


class MoveResizeBoxes(CellsCommand):
    action = "move/resize"


class DeleteBoxes(CellsCommand):
    action = "delete"


class Relabel(CellsCommand):
    action = "relabel"


class ReplaceAll(CellsCommand):
    """All boxes of the image replaced by those of a label file."""

    action = "import labels"
    source = "import"


class HandleItem(QGraphicsRectItem):
    """A corner handle of the selected box, constant size on screen."""

    def __init__(self) -> None:
        half = HANDLE_PX / 2.0
        super().__init__(QRectF(QPointF(-half, -half), QPointF(half, half)))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setBrush(QColor(*SELECTION_RGB))
        self.setPen(QPen(QColor(0, 0, 0), 0.0))
        self.setZValue(20.0)


class BoxEditor(QObject):
    """Edit mode for a SmearView showing a record of `model`: `set_image(image_id, record)` once the scene shows
    the record's result; `store` (the annotation ProjectStore) optional."""

    edited = Signal()               # the edited record's cells changed (after the model said so)
    selectionChanged = Signal(list)
    storeFailed = Signal(str, str)  # (title, message): an edit the project file refused; nothing of it was applied

    def __init__(self, view: SmearView, model: SessionModel, store=None, labels: Sequence[str] = ("blast", "normal"),
                 parent: QObject | None = None) -> None:
        super().__init__(parent or view)
        self.view = view
        self.model = model
        self.record: ImageRecord | None = None
        self.viewport = view.viewport()      # kept: the event filter must not call into a view being destroyed
        self.scene = view.smear_scene
        self.store = store
        self.image_id: int | None = None
        self.labels = list(labels)
        self.current_label = "normal" if "normal" in self.labels else self.labels[0]
        self.undo_stack = QUndoStack(self)
        # (selected ids, label) -> None: when set (workbench.gui.reclassify), 1..9 reclassify through it
        self.relabel_hook: Callable[[list[int], str], None] | None = None
        self.enabled = False
        self.selected: list[int] = []
        self._highlighted: set[int] = set()
        self.clipboard: list[CellDetection] = []
        self._mode: str | None = None          # "draw", "move" or "resize" while the left button is down
        self._start = QPointF()
        self._anchor = QPointF()
        self._orig: dict[int, QRectF] = {}
        self._rubber = QGraphicsRectItem()
        pen = QPen(QColor(*SELECTION_RGB), 2.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._rubber.setPen(pen)
        self._rubber.setZValue(15.0)
        self._rubber.setVisible(False)
        self._handles = [HandleItem() for _ in range(4)]
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        model.subscribe(self._on_model)

    # -- mode and image ---------------------------------------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        enabled = bool(enabled)
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            self._add_overlays()
            self.view.setDragMode(self.view.DragMode.NoDrag)
            self.viewport.installEventFilter(self)
            self.view.installEventFilter(self)
            self.viewport.setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.set_selection([])
            self._mode = None
            self._rubber.setVisible(False)
            self.viewport.removeEventFilter(self)
            self.view.removeEventFilter(self)
            self.view.setDragMode(self.view.DragMode.ScrollHandDrag)
            self.viewport.unsetCursor()

    def _add_overlays(self) -> None:
        for item in [self._rubber, *self._handles]:
            if item.scene() is not self.scene:
                self.scene.addItem(item)
                item.setVisible(False)

    def set_image(self, image_id: int | None, record: ImageRecord | None = None) -> None:
        """A new image (or a reloaded result) is shown: the history of the previous one is dropped. `image_id` is
        the image in the store, `record` the session's record whose cells are edited."""
        self.image_id = image_id
        self.record = record
        self.undo_stack.clear()
        self.selected = []
        self._add_overlays()
        self._update_selection()

    def cells(self) -> list[CellDetection]:
        """The edited image's cells in id order, as the model holds them (the scene only shows them). Before its
        first edit an analysed image's cells are those shown at the display threshold: an edit starts from what the
        annotator sees."""
        if self.record is None or self.record.result is None:
            return []
        cells = self.record.result.cells if self.record.edited else self.record.cells(self.model.threshold)
        return sorted(cells, key=lambda c: c.cell_id)

    # -- the image's bounds: every box stays inside -----------------------------------------------------------------
    def bounds(self) -> tuple[float, float] | None:
        """(width, height) of the edited image in pixels, or None while it is not known."""
        result = self.record.result if self.record is not None else None
        if result is not None and result.width and result.height:
            return float(result.width), float(result.height)
        rect = self.scene.image_rect
        return (rect.width(), rect.height()) if not rect.isEmpty() else None

    def clipped(self, cell: CellDetection) -> CellDetection | None:
        return clip_cell(cell, self.bounds())

    def cell(self, cell_id: int) -> CellDetection:
        return next(c for c in self.cells() if c.cell_id == cell_id)

    def _next_id(self) -> int:
        ids = [c.cell_id for c in self.cells()]
        if self.store is not None and self.image_id is not None:
            ids.append(self.store.next_cell_id(self.image_id) - 1)
        return max(ids, default=-1) + 1

    # -- applying (the only place that changes cells): the store, then the model; the scene follows the model -------
    def _apply(self, before: Cells, after: Cells, action: str, source: str = "manual") -> None:
        if self.record is None:
            return
        cells = {c.cell_id: c for c in self.cells()}
        if self.store is not None and self.image_id is not None and not self.record.edited:
            try:       # the first edit: the project starts from the boxes shown (model-assisted labelling)
                seed_project(self.store, self.image_id, [cells[i] for i in sorted(cells)])
            except WorkbenchError as exc:
                self._store_failed(exc)
                return
        for cell_id, cell in after.items():
            if cell is None:
                cells.pop(cell_id, None)
            else:
                cells[cell_id] = cell
        if self.store is not None and self.image_id is not None:
            try:
                self.store.apply(self.image_id, before, after, action, source)
            except WorkbenchError as exc:   # another window changed these boxes first, or the file cannot be written
                self._store_failed(exc)
                return
        bounds = self.bounds()
        self.model.replace_cells(self.record, [cells[i] for i in sorted(cells)],
                                 size=(round(bounds[0]), round(bounds[1])) if bounds else None)

    def _store_failed(self, exc: WorkbenchError) -> None:
        """Nothing was saved: show the project's boxes as they are and drop a history that no longer matches them."""
        try:
            self.model.replace_cells(self.record, self.store.cells(self.image_id))
        except WorkbenchError:
            pass                                            # unreadable too: the message below says why
        QTimer.singleShot(0, self.undo_stack.clear)         # not inside the command that is being pushed
        self.storeFailed.emit("The change was not saved", str(exc))

    def _on_model(self, event: str, record) -> None:
        """The model changed the edited record's cells: redraw the boxes that differ, keep the selection valid."""
        if event != "cells_changed" or record is None or record is not self.record:
            return
        if self.scene.result is record.result:
            self.scene.sync_cells(record.result.cells)     # (a no-op when the window's display already did it)
        self.selected = [i for i in self.selected if i in self.scene.cell_items]
        self._update_selection()
        self.edited.emit()

    def push(self, command: CellsCommand) -> None:
        self.undo_stack.push(command)

    # -- edit operations (also usable from menus and tests) ---------------------------------------------------------
    def add_box(self, rect: QRectF, label: str | None = None) -> int:
        """Add a box (cut to the image); returns its id, or -1 when it lies entirely outside the image."""
        cell_id = self._next_id()
        label = label or self.current_label
        cell = self.clipped(CellDetection(cell_id=cell_id, xyxy=rect_xyxy(rect), det_conf=1.0, label=label,
                                          label_conf=1.0, p_blast=1.0 if label == "blast" else 0.0))
        if cell is None:
            return -1
        self.push(AddBoxes(self, f"Add box {cell_id}", {cell_id: None}, {cell_id: cell}))
        self.set_selection([cell_id])
        return cell_id

    def set_rects(self, rects: Mapping[int, QRectF], text: str = "Move box") -> None:
        """Move / resize boxes (each cut to the image; a box that would end up entirely outside is left as it is)."""
        before = {i: self.cell(i) for i in rects}
        after = {i: self.clipped(edited_cell(before[i], rects[i])) for i in rects}
        after = {i: cell for i, cell in after.items() if cell is not None}
        before = {i: before[i] for i in after}
        if any(before[i].xyxy != after[i].xyxy for i in after):
            self.push(MoveResizeBoxes(self, text, before, after))

    def delete_selected(self) -> None:
        if self.selected:
            before = {i: self.cell(i) for i in self.selected}
            self.push(DeleteBoxes(self, f"Delete {len(before)} box(es)", before, {i: None for i in before}))

    def relabel_selected(self, label: str) -> None:
        if label not in self.labels:
            raise ValueError(f"{label!r} is not one of the project's labels {self.labels}")
        self.current_label = label
        if self.relabel_hook is not None:      # the window reclassifies (reviewed, audited) the same way everywhere
            self.relabel_hook(list(self.selected), label)
            return
        cells = [self.cell(i) for i in self.selected]
        before = {c.cell_id: c for c in cells if c.label != label}
        if before:
            self.push(Relabel(self, f"Relabel {len(before)} box(es) {label}", before,
                              {i: edited_cell(c, label=label) for i, c in before.items()}))

    def replace_all(self, cells: Sequence[CellDetection], text: str = "Import labels") -> None:
        """Replace every box of the image (an imported label file), undoably; boxes are cut to the image and those
        entirely outside it are dropped."""
        old = {c.cell_id: c for c in self.cells()}
        new = {c.cell_id: c for c in map(self.clipped, cells) if c is not None}
        self.set_selection([])
        self.push(ReplaceAll(self, text, {i: old.get(i) for i in old.keys() | new.keys()},
                             {i: new.get(i) for i in old.keys() | new.keys()}))

    def copy_selected(self) -> None:
        self.clipboard = [self.cell(i) for i in sorted(self.selected)]

    def paste(self) -> None:
        if not self.clipboard:
            return
        first = self._next_id()
        bounds = self.bounds()
        after = {}
        for n, cell in enumerate(self.clipboard):
            xyxy = tuple(v + PASTE_OFFSET for v in cell.xyxy)
            if bounds is not None:               # pushed back inside (pasting near an edge, or from a larger image)
                xyxy = fit_box(xyxy, *bounds)
            after[first + n] = replace(edited_cell(cell), cell_id=first + n, xyxy=xyxy)
        self.push(AddBoxes(self, f"Paste {len(after)} box(es)", {i: None for i in after}, after))
        self.set_selection(list(after))

    # -- selection ------------------------------------------------------------------------------------------------
    def set_selection(self, ids: Sequence[int]) -> None:
        """Select boxes by id (only boxes shown at the display threshold can be selected)."""
        items = self.scene.cell_items
        self.selected = [i for i in dict.fromkeys(ids) if i in items and items[i].isVisible()]
        self._update_selection()
        self.selectionChanged.emit(list(self.selected))

    def _update_selection(self) -> None:
        for cell_id in self._highlighted - set(self.selected):   # restore the label colour
            item = self.scene.cell_items.get(cell_id)
            if item is not None:
                item.update_cell(item.cell)
        pen = QPen(QColor(*SELECTION_RGB), 3.0)
        pen.setCosmetic(True)
        for cell_id in self.selected:
            self.scene.cell_items[cell_id].setPen(pen)
        self._highlighted = set(self.selected)
        single = self.scene.cell_items.get(self.selected[0]) if len(self.selected) == 1 else None
        for handle, corner in zip(self._handles, self._corners(single.rect()) if single else [None] * 4):
            handle.setVisible(corner is not None and self.enabled)
            if corner is not None:
                handle.setPos(corner)

    @staticmethod
    def _corners(rect: QRectF) -> list[QPointF]:
        return [rect.topLeft(), rect.topRight(), rect.bottomRight(), rect.bottomLeft()]

    # -- mouse and keys ---------------------------------------------------------------------------------------------
    def _scene_pos(self, event) -> QPointF:
        return self.view.mapToScene(event.position().toPoint())

    def _handle_at(self, event) -> int:
        if len(self.selected) != 1:
            return -1
        rect = self.scene.cell_items[self.selected[0]].rect()
        for index, corner in enumerate(self._corners(rect)):
            if (QPointF(self.view.mapFromScene(corner)) - event.position()).manhattanLength() <= HANDLE_PX:
                return index
        return -1

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if obj is self.viewport:
            if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
                self._press(event)
                return True
            if kind == QEvent.Type.MouseMove and self._mode is not None:
                self._move(event)
                return True
            if kind == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
                self._release(event)
                return True
            if kind == QEvent.Type.MouseButtonDblClick:
                return True
        elif obj is self.view and kind == QEvent.Type.ShortcutOverride:
            if self._key_action(event) is not None:   # edit keys win over window shortcuts ("1" = 100 %, Esc)
                event.accept()
                return True
        elif obj is self.view and kind == QEvent.Type.KeyPress:
            action = self._key_action(event)
            if action is not None:
                action()
                return True
        return False

    def _press(self, event) -> None:
        self.view.setFocus()
        pos = self._scene_pos(event)
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        self._start = pos
        handle = self._handle_at(event)
        if handle >= 0:
            rect = self.scene.cell_items[self.selected[0]].rect()
            self._mode = "resize"
            self._anchor = self._corners(rect)[(handle + 2) % 4]
            self._orig = {self.selected[0]: QRectF(rect)}
            return
        item = self.scene.cell_at(pos)
        if item is not None:
            if ctrl:
                ids = [i for i in self.selected if i != item.cell_id] if item.cell_id in self.selected \
                    else self.selected + [item.cell_id]
                self.set_selection(ids)
                self._mode = None
                return
            if item.cell_id not in self.selected:
                self.set_selection([item.cell_id])
            self._mode = "move"
            self._orig = {i: QRectF(self.scene.cell_items[i].rect()) for i in self.selected}
            return
        if not ctrl:
            self.set_selection([])
        self._mode = "draw"
        self._rubber.setRect(QRectF(pos, pos))
        self._rubber.setVisible(True)

    def _clamp(self, point: QPointF) -> QPointF:
        bounds = self.bounds()
        if bounds is None:
            return point
        return QPointF(min(max(point.x(), 0.0), bounds[0]), min(max(point.y(), 0.0), bounds[1]))

    def _preview(self, pos: QPointF, mode: str | None = None) -> dict[int, QRectF]:
        mode = mode or self._mode
        if mode == "move":
            delta = pos - self._start
            bounds = self.bounds()
            if bounds is not None:              # the selection stops at the image border, keeping its size
                dx, dy = clamp_shift([rect_xyxy(r) for r in self._orig.values()], delta.x(), delta.y(), *bounds)
                delta = QPointF(dx, dy)
            return {i: rect.translated(delta) for i, rect in self._orig.items()}
        if mode == "resize":
            return {i: QRectF(self._anchor, self._clamp(pos)).normalized() for i in self._orig}
        return {}

    def _move(self, event) -> None:
        pos = self._scene_pos(event)
        if self._mode == "draw":
            self._rubber.setRect(QRectF(self._clamp(self._start), self._clamp(pos)).normalized())
            return
        for cell_id, rect in self._preview(pos).items():
            self.scene.cell_items[cell_id].setRect(rect)
        self._update_handles_preview()

    def _update_handles_preview(self) -> None:
        if len(self.selected) == 1:
            for handle, corner in zip(self._handles, self._corners(self.scene.cell_items[self.selected[0]].rect())):
                handle.setPos(corner)

    def _release(self, event) -> None:
        mode, self._mode = self._mode, None
        pos = self._scene_pos(event)
        if mode == "draw":
            self._rubber.setVisible(False)
            rect = QRectF(self._clamp(self._start), self._clamp(pos)).normalized()
            if rect.width() >= MIN_BOX_PX and rect.height() >= MIN_BOX_PX:
                self.add_box(rect)
        elif mode in ("move", "resize"):
            rects = self._preview(pos, mode)
            for cell_id in rects:                              # the command sets the final geometry
                self.scene.cell_items[cell_id].update_cell(self.scene.cell_items[cell_id].cell)
            if pos != self._start:
                self.set_rects(rects, "Resize box" if mode == "resize" else f"Move {len(rects)} box(es)")
            self._update_selection()

    def _key_action(self, event) -> Callable[[], None] | None:
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        actions: dict[tuple[int, bool], Callable[[], None]] = {
            (Qt.Key.Key_Delete, False): self.delete_selected,
            (Qt.Key.Key_Backspace, False): self.delete_selected,
            (Qt.Key.Key_Escape, False): lambda: self.set_selection([]),
            (Qt.Key.Key_A, True): lambda: self.set_selection(list(self.scene.cell_items)),
            (Qt.Key.Key_C, True): self.copy_selected,
            (Qt.Key.Key_V, True): self.paste,
            (Qt.Key.Key_Z, True): self.undo_stack.redo if shift else self.undo_stack.undo,
            (Qt.Key.Key_Y, True): self.undo_stack.redo,
        }
        action = actions.get((key, ctrl))
        if action is None and not ctrl and Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            index = key - Qt.Key.Key_1
            if index < len(self.labels):
                action = lambda: self.relabel_selected(self.labels[index])  # noqa: E731
        return action
