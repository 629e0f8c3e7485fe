"""The session gallery: every cell of the session (or of one sample, or one image) as a crop, in three groups as a
lab analyser shows them (blasts, unidentified, non-blasts), sorted by p(blast) or detector confidence.

Virtualised: each group is a QListView on a QAbstractListModel with one delegate painting every visible crop, never
a widget per cell; crops are cut off the UI thread (a Worker decodes each image once and cuts all its cells) into a
bounded cache, and a crop not cut yet is painted as a placeholder until it is. Changes of the session (a
reclassified cell, a new analysis) move only the rows that changed (remove / insert), so the scroll position and
the selection stay. Clicking a crop shows the cell in its smear; keys 1..9 / Space reclassify the selection
(workbench.gui.reclassify); dragging crops onto another group gives them that group's class.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Callable

from PySide6.QtCore import (QAbstractListModel, QByteArray, QMimeData, QModelIndex, QObject, QRect, QSize, Qt,
                            QThreadPool, QTimer, Signal)
from PySide6.QtGui import QColor, QFont, QImage, QImageIOHandler, QImageReader, QPainter, QPen
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QListView, QSizePolicy,
                               QSplitter, QStyledItemDelegate, QStyle, QVBoxLayout, QWidget)

from workbench.app.cell_review import (GROUP_LABEL, GROUP_TITLES, GROUPS, SORTS, CellEntry, collect, grouped)
from workbench.app.session import ImageRecord, SessionModel
from workbench.gui.style import cell_colour
from workbench.gui.workers import Worker

MIME = "application/x-smear-workbench-cells"
_SELECTED = QStyle.StateFlag.State_Selected          # (enum look-ups cost in a paint run per crop and frame)
_CENTRE = Qt.AlignmentFlag.AlignCenter
_PLACEHOLDER = QColor(60, 60, 66)
EntryRole = Qt.ItemDataRole.UserRole + 1
CROP_PX = 64                  # crops are cut at this size (RGB888, ~12 kB each)
CACHE_CROPS = 8000            # at most this many crops are kept (about 100 MB)


# -- crops ----------------------------------------------------------------------------------------------------------
def crop_key(path: str, xyxy) -> tuple:
    return (path, tuple(round(float(v), 1) for v in xyxy))


def decode_for_crops(path: str, boxes: list[tuple], size: int, max_pixels: int | None) -> tuple[QImage, float]:
    """(the image, its scale against the original pixels): decoded at reduced size when every box still gets at
    least `size` pixels (JPEG decodes scaled, several times faster), upright as the pipeline reads it; the
    pipeline's own loader when Qt cannot read the file."""
    from workbench.gui.image_io import load_qimage

    reader = QImageReader(path)
    reader.setAutoTransform(True)                 # EXIF orientation, as workbench.core.images.load_image
    full = reader.size()
    sides = sorted(min(b[2] - b[0], b[3] - b[1]) for b in boxes) or [size]
    scale = min(1.0, max(0.125, 1.25 * size / max(sides[0], 1.0)))
    if full.isValid() and full.width() > 0 and (max_pixels is None or full.width() * full.height() <= max_pixels):
        if scale < 1.0:
            reader.setScaledSize(QSize(max(1, round(full.width() * scale)), max(1, round(full.height() * scale))))
        image = reader.read()
        if not image.isNull():
            if reader.transformation() & QImageIOHandler.Transformation.TransformationRotate90:
                scale = image.height() / full.width() if scale < 1.0 else 1.0
            else:
                scale = image.width() / full.width() if scale < 1.0 else 1.0
            return image, scale
    return load_qimage(path, max_pixels), 1.0


def cut_crops(path: str, boxes: list[tuple], size: int, max_pixels: int | None, image: QImage | None = None
              ) -> tuple[str, dict[tuple, QImage]]:
    """(path, {crop key: crop}) for the boxes of one image; decodes the image unless it is given (worker thread)."""
    scale = 1.0
    if image is None or image.isNull():
        image, scale = decode_for_crops(path, boxes, size, max_pixels)
    crops = {}
    bounds = QRect(0, 0, image.width(), image.height())
    for box in boxes:
        x1, y1, x2, y2 = (v * scale for v in box)
        pad_x, pad_y = 0.12 * (x2 - x1), 0.12 * (y2 - y1)
        rect = QRect(int(x1 - pad_x), int(y1 - pad_y), int(x2 - x1 + 2 * pad_x), int(y2 - y1 + 2 * pad_y))
        rect = rect.intersected(bounds)
        if rect.isEmpty():
            continue
        crop = image.copy(rect).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation)
        crops[crop_key(path, box)] = crop.convertToFormat(QImage.Format.Format_RGB888)
    return path, crops


class CropCache(QObject):
    """Crops by (image path, box), cut in the background one image at a time, newest request first."""

    ready = Signal(str)           # an image's crops are in the cache

    def __init__(self, pool: QThreadPool, max_pixels: Callable[[], int | None] = lambda: None,
                 decoded: Callable[[str], QImage | None] = lambda path: None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool, self.max_pixels, self.decoded = pool, max_pixels, decoded
        self.crops: OrderedDict[tuple, QImage] = OrderedDict()
        self.pending: OrderedDict[str, list[tuple]] = OrderedDict()   # path -> boxes, newest last
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.max_running = 1
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._start)

    def get(self, key: tuple) -> QImage | None:
        crop = self.crops.get(key)
        if crop is not None:
            self.crops.move_to_end(key)
        return crop

    def request(self, record: ImageRecord) -> None:
        path = str(record.path)
        if path in self.pending:                 # asked again (painted again): only newer now
            self.pending.move_to_end(path)
            return
        if path in self.running or path in self.failed or record.result is None:
            return
        self.pending[path] = [tuple(c.xyxy) for c in record.result.cells]
        if not self._timer.isActive():
            self._timer.start()

    def _start(self) -> None:
        while self.pending and len(self.running) < self.max_running:
            path, boxes = self.pending.popitem(last=True)
            self.running.add(path)
            worker = Worker(cut_crops, path, boxes, CROP_PX, self.max_pixels(), self.decoded(path))
            worker.returned.connect(self._done)
            worker.errored.connect(lambda _exc, p=path: self.failed.add(p))
            worker.finished.connect(lambda p=path: (self.running.discard(p), self._timer.start()))
            worker.start(self.pool)

    def _done(self, value) -> None:
        path, crops = value
        self.crops.update(crops)
        while len(self.crops) > CACHE_CROPS:
            self.crops.popitem(last=False)
        self.ready.emit(path)

    def fill(self, value) -> None:
        """Crops cut elsewhere (a bench, a test): put them in at once."""
        self._done(value)


# -- one group ------------------------------------------------------------------------------------------------------
class GroupModel(QAbstractListModel):
    """The cells of one group, in the gallery's order."""

    def __init__(self, group: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.group = group
        self.entries: list[CellEntry] = []

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.entries)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.entries):
            return None
        entry = self.entries[index.row()]
        if role == EntryRole:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole:
            c = entry.cell
            state = "reviewed" if c.reviewed else "waiting (unidentified)" if c.waiting else "not reviewed"
            analysed = f" (analysed: {c.analysed_label})" if c.analysed_label not in (None, c.label) else ""
            return (f"{entry.record.name} · cell #{c.cell_id}: {c.label}{analysed} · p(blast) {c.p_blast:.3f} · "
                    f"detector {c.det_conf:.3f} · {state}")
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{entry.cell.p_blast:.2f}"
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes) -> QMimeData:
        data = QMimeData()
        keys = [list(self.entries[i.row()].key) for i in indexes if i.isValid()]
        data.setData(MIME, QByteArray(json.dumps({"group": self.group, "keys": keys}).encode()))
        return data

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def set_entries(self, new: list[CellEntry]) -> None:
        """Show `new`: rows that left are removed and rows that came are inserted, so the view keeps its scroll
        position and selection; a change of order (a new sort) resets the model."""
        old_keys = [e.key for e in self.entries]
        new_keys = [e.key for e in new]
        if old_keys == new_keys:
            self.entries = new
            if new:
                self.dataChanged.emit(self.index(0), self.index(len(new) - 1))
            return
        wanted = set(new_keys)
        kept = [k for k in old_keys if k in wanted]
        kept_set = set(kept)
        if kept != [k for k in new_keys if k in kept_set] or len(self.entries) < 2 or not kept:
            self.beginResetModel()
            self.entries = new
            self.endResetModel()
            return
        for row in range(len(self.entries) - 1, -1, -1):          # removals, bottom up
            if self.entries[row].key not in wanted:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self.entries[row]
                self.endRemoveRows()
        for row, entry in enumerate(new):                         # insertions, top down
            if row >= len(self.entries) or self.entries[row].key != entry.key:
                self.beginInsertRows(QModelIndex(), row, row)
                self.entries.insert(row, entry)
                self.endInsertRows()
        self.entries = new                                        # fresh cells (labels, review) for every row
        if new:
            self.dataChanged.emit(self.index(0), self.index(len(new) - 1))


class CellDelegate(QStyledItemDelegate):
    """Paints one cell: its crop (or a placeholder until it is cut), a frame in the cell's colour, p(blast), a tick
    when reviewed and a '?' while it waits as unidentified."""

    def __init__(self, cache: CropCache, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.font = QFont()
        self.font.setPixelSize(10)
        self._pens: dict[tuple, QPen] = {}

    def sizeHint(self, option, index) -> QSize:
        return QSize(CROP_PX + 8, CROP_PX + 20)

    def _pen(self, cell) -> QPen:
        """The frame pen of a cell's state (made once per colour: paint runs for every visible crop per frame)."""
        key = (cell.label, cell.waiting)
        pen = self._pens.get(key)
        if pen is None:
            pen = self._pens[key] = QPen(cell_colour(cell), 2.0)
        return pen

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        entry: CellEntry = index.data(EntryRole)
        if entry is None:
            return
        rect = option.rect
        x, y = rect.x(), rect.y()
        selected = bool(option.state & _SELECTED)
        if selected:
            painter.fillRect(rect, option.palette.highlight())
        cell = entry.cell
        frame = QRect(x + 3, y + 3, CROP_PX + 2, CROP_PX + 2)
        crop = self.cache.get(entry.crop_key)
        if crop is None:
            painter.fillRect(frame, _PLACEHOLDER)
            self.cache.request(entry.record)
        else:
            painter.drawImage(x + 4 + (CROP_PX - crop.width()) // 2, y + 4 + (CROP_PX - crop.height()) // 2, crop)
        painter.setPen(self._pen(cell))
        painter.drawRect(frame)
        painter.setFont(self.font)
        painter.setPen(option.palette.highlightedText().color() if selected else option.palette.text().color())
        mark = " ✓" if cell.reviewed else " ?" if cell.waiting else ""
        painter.drawText(QRect(x, y + CROP_PX + 6, rect.width(), 14), _CENTRE, f"{cell.p_blast:.2f}{mark}")


class GroupView(QListView):
    """One group's crops; drops of crops from another group give them this group's class."""

    dropped = Signal(list, str)            # (entry keys, this group)

    def __init__(self, group: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.group = group
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setSpacing(1)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        # (after the mode, which turns drops on everywhere): Qt delivers a drag to the viewport under the cursor
        self.setAcceptDrops(group in GROUP_LABEL)
        self.viewport().setAcceptDrops(group in GROUP_LABEL)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

    def _payload(self, event) -> dict | None:
        mime = event.mimeData()
        if self.group not in GROUP_LABEL or not mime.hasFormat(MIME):
            return None
        payload = json.loads(bytes(mime.data(MIME)).decode())
        return payload if payload.get("group") != self.group else None

    def dragEnterEvent(self, event) -> None:
        if self._payload(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        payload = self._payload(event)
        if payload is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.dropped.emit([tuple(k) for k in payload["keys"]], self.group)


# -- the gallery ----------------------------------------------------------------------------------------------------
class SessionGallery(QWidget):
    """The groups side by side, with sort, sample and image filters and the counts of what waits."""

    cellActivated = Signal(object, int)        # (record, cell id): show this cell in its smear
    reclassifyRequested = Signal(list, str)    # ([(record, cell id)], label): cells dropped onto a group

    def __init__(self, model: SessionModel, pool: QThreadPool, max_pixels: Callable[[], int | None] = lambda: None,
                 decoded: Callable[[str], QImage | None] = lambda path: None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.cache = CropCache(pool, max_pixels, decoded, self)
        self.sort_combo = QComboBox()
        for key, (text, _) in SORTS.items():
            self.sort_combo.addItem(text, key)
        self.sample_combo = QComboBox()
        self.image_combo = QComboBox()
        # The bar must not set the dock's minimum width: a wide gallery squeezes the side docks' names to "Bl...pg".
        for combo, letters in ((self.sort_combo, 12), (self.sample_combo, 7), (self.image_combo, 8)):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(letters)
            combo.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.summary = QLabel("")
        self.summary.setMinimumWidth(40)      # shown whole when there is room, cut (tooltip whole) when not
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for label, widget in (("Sort", self.sort_combo), ("Sample", self.sample_combo), ("Image", self.image_combo)):
            bar.addWidget(QLabel(label))
            bar.addWidget(widget)
        bar.addSpacing(8)
        bar.addWidget(self.summary, 1)
        self.models: dict[str, GroupModel] = {}
        self.views: dict[str, GroupView] = {}
        self.titles: dict[str, QLabel] = {}
        self.delegate = CellDelegate(self.cache, self)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for group in GROUPS:
            box = QWidget()
            column = QVBoxLayout(box)
            column.setContentsMargins(2, 0, 2, 0)
            self.titles[group] = QLabel()
            group_model = self.models[group] = GroupModel(group, self)
            view = self.views[group] = GroupView(group)
            view.setModel(group_model)
            view.setItemDelegate(self.delegate)
            view.dropped.connect(self._on_drop)
            view.clicked.connect(self._on_clicked)
            view.selectionModel().selectionChanged.connect(lambda *_a, g=group: self._selection_changed(g))
            column.addWidget(self.titles[group])
            column.addWidget(view, 1)
            splitter.addWidget(box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        self._entries: dict[tuple, CellEntry] = {}
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self._clearing = False
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.sample_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.image_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.cache.ready.connect(self._crops_ready)
        model.subscribe(self._on_model)
        self._fill_filters()
        self.refresh()

    # -- filters ---------------------------------------------------------------------------------------------------
    def _fill_filters(self) -> None:
        samples = sorted({r.sample_id for r in self.model.records if r.sample_id})
        images = [r for r in self.model.records if r.analysed]
        for combo, items, everything in ((self.sample_combo, [(s, s) for s in samples], "All samples"),
                                         (self.image_combo, [(r.name, r) for r in images], "All images")):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(everything, None)
            for text, data in items:
                combo.addItem(text, data)
            index = next((i for i in range(combo.count()) if combo.itemData(i) is current
                          or (isinstance(current, str) and combo.itemData(i) == current)), 0)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)

    def set_sort(self, key: str) -> None:
        self.sort_combo.setCurrentIndex(list(SORTS).index(key))

    def set_image_filter(self, record: ImageRecord | None) -> None:
        self.image_combo.setCurrentIndex(max(0, next((i for i in range(self.image_combo.count())
                                                      if self.image_combo.itemData(i) is record), 0)))

    # -- the session -> the groups -----------------------------------------------------------------------------------
    def _on_model(self, event: str, payload: Any) -> None:
        if event in ("records_added", "records_removed", "record_changed"):
            self._fill_filters()
        if event != "current_changed":
            self._refresh_timer.start()       # one refresh per event-loop turn, however many events came

    def refresh(self) -> None:
        """Collect the session's shown cells again and move only what changed in each group."""
        self._refresh_timer.stop()
        entries = collect(self.model.records, self.model.threshold, self.image_combo.currentData(),
                          self.sample_combo.currentData())
        self._entries = {e.key: e for e in entries}
        groups = grouped(entries, self.sort_combo.currentData())
        for group, items in groups.items():
            self.models[group].set_entries(items)
            self.titles[group].setText(f"<b>{GROUP_TITLES[group]}</b> ({len(items)})")
        reviewed = sum(e.cell.reviewed for e in entries)
        waiting = len(groups["unidentified"])
        # Short: the group titles already count each group (Unidentified (n) is what waits for a human).
        self.summary.setText(f"{reviewed} of {len(entries)} cells reviewed")
        self.summary.setToolTip(f"{len(entries)} cells shown · {reviewed} reviewed · "
                                f"{waiting} unidentified waiting for a human")

    def _crops_ready(self, path: str) -> None:
        for view in self.views.values():
            view.viewport().update()

    # -- selection and activation ----------------------------------------------------------------------------------
    def _selection_changed(self, group: str) -> None:
        """One selection for the gallery: selecting in a group clears the others."""
        if self._clearing or not self.views[group].selectionModel().hasSelection():
            return
        self._clearing = True
        for other, view in self.views.items():
            if other != group:
                view.clearSelection()
        self._clearing = False

    def selected(self) -> list[tuple[ImageRecord, int]]:
        out = []
        for group, view in self.views.items():
            for index in sorted(view.selectionModel().selectedIndexes(), key=lambda i: i.row()):
                entry = self.models[group].entries[index.row()]
                out.append((entry.record, entry.cell.cell_id))
        return out

    def _on_clicked(self, index: QModelIndex) -> None:
        entry = index.data(EntryRole)
        if entry is not None:
            self.cellActivated.emit(entry.record, entry.cell.cell_id)

    def select(self, record: ImageRecord, cell_id: int) -> bool:
        """Select (and scroll to) a cell; False when the gallery does not show it."""
        key = (id(record), cell_id)
        for group, model in self.models.items():
            for row, entry in enumerate(model.entries):
                if entry.key == key:
                    view = self.views[group]
                    view.setCurrentIndex(model.index(row))
                    view.scrollTo(model.index(row))
                    return True
        return False

    def _on_drop(self, keys: list[tuple], group: str) -> None:
        targets = [(self._entries[k].record, self._entries[k].cell.cell_id) for k in keys if k in self._entries]
        if targets:
            self.reclassifyRequested.emit(targets, GROUP_LABEL[group])

    def entries(self, group: str) -> list[CellEntry]:
        return list(self.models[group].entries)
