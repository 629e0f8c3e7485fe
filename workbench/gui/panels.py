"""Side panels. Each observes the SessionModel (plain Python) and calls its methods; none holds analysis state.

- ImageListPanel: the session's images with thumbnail, status, counts and sample ID (the per-image summary table);
- MetadataPanel: sample / patient ID, note and review of the current image (or its whole folder);
- CountsPanel: WBC / blast / normal / blast % of the current image and of the session, at the display threshold;
- CellDetailsPanel: the crop, probabilities and detector confidence of the hovered or clicked cell;
- GalleryPanel: crops of the current image's cells, sorted as a review queue (least certain first) or by label.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QListView, QListWidget, QListWidgetItem, QPlainTextEdit,
                               QPushButton, QSizePolicy, QTableWidget, QTableWidgetItem, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from workbench.app.session import (ANALYSED, EDITED, FAILED, NEW, QUEUED, REVIEWED, STATUS_TEXT, ImageRecord,
                                   SessionModel)
from workbench.gui.style import cell_colour, label_colour, label_name
from workbench.app.results import CellCounts, CellDetection

STATUS_COLOURS = {NEW: QColor(120, 120, 120), QUEUED: QColor(170, 120, 0), ANALYSED: QColor(20, 100, 180),
                  EDITED: QColor(130, 60, 170), REVIEWED: QColor(30, 140, 60), FAILED: QColor(200, 40, 40)}


def crop_cell(image: QImage | None, cell: CellDetection, size: int, margin: float = 0.15) -> QPixmap:
    """The cell with a margin around its box, scaled to fit `size` x `size`, framed in its label colour."""
    canvas = QPixmap(size, size)
    canvas.fill(QColor(40, 40, 44))
    painter = QPainter(canvas)
    if image is not None and not image.isNull():
        x1, y1, x2, y2 = (float(v) for v in cell.xyxy)
        pad_x, pad_y = (x2 - x1) * margin, (y2 - y1) * margin
        rect = QRectF(QPointF(x1 - pad_x, y1 - pad_y), QPointF(x2 + pad_x, y2 + pad_y))
        rect = rect.intersected(QRectF(QPointF(0.0, 0.0), QPointF(float(image.width()), float(image.height()))))
        if not rect.isEmpty():
            crop = image.copy(rect.toAlignedRect()).scaled(size - 6, size - 6, Qt.AspectRatioMode.KeepAspectRatio,
                                                           Qt.TransformationMode.SmoothTransformation)
            painter.drawImage(QPointF((size - crop.width()) / 2.0, (size - crop.height()) / 2.0), crop)
    pen = QPen(cell_colour(cell), 3.0)
    painter.setPen(pen)
    painter.drawRect(QRectF(1.5, 1.5, size - 3.0, size - 3.0))
    painter.end()
    return canvas


def titled(title: str, widget: QWidget) -> QWidget:
    """`widget` under a bold heading: one section of a dock's splitter."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(2, 2, 2, 2)
    layout.setSpacing(0)
    heading = QLabel(f"<b>{title}</b>")
    heading.setContentsMargins(4, 2, 4, 0)
    layout.addWidget(heading)
    layout.addWidget(widget, 1)
    return box


def _fmt_pct(value: float) -> str:
    return f"{value:.1f} %"


def fmt_threshold(value: float) -> str:
    """0.25 -> '0.25'; small test / screening thresholds keep their digits (0.0005 -> '0.0005')."""
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.4g}"


# ---------------------------------------------------------------------------------------------------------------
class ImageListPanel(QWidget):
    """The session's images: thumbnail + name, status, WBC count and blasts (count and %). Multi-selection picks the
    images for 'Analyse selection'; the current row is the image shown."""

    COLUMNS = ["Image", "Status", "WBC", "Blasts"]

    def __init__(self, model: SessionModel, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(self.COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setIconSize(QSize(36, 27))
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)   # keep the distinguishing end of file names
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(self.COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.summary = QLabel("No images open. Open images or a folder (Ctrl+O / Ctrl+Shift+O) or drop them here.")
        self.summary.setWordWrap(True)
        self.status_filter = QComboBox()
        self.status_filter.addItem("All images", None)
        for status in (NEW, ANALYSED, EDITED, REVIEWED, FAILED):
            self.status_filter.addItem(STATUS_TEXT[status].capitalize(), status)
        self.status_filter.setToolTip("Show only the images with this status")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status_filter)
        layout.addWidget(self.tree)
        layout.addWidget(self.summary)
        self.status_filter.currentIndexChanged.connect(lambda _i: self._apply_filter())
        self._items: dict[int, QTreeWidgetItem] = {}   # id(record) -> row
        self._syncing = False
        self.tree.currentItemChanged.connect(self._on_current_item)
        model.subscribe(self._on_model)

    def item_of(self, record: ImageRecord) -> QTreeWidgetItem | None:
        return self._items.get(id(record))

    def set_status_filter(self, status: str | None) -> None:
        """Show only the images with `status` (None: all)."""
        self.status_filter.setCurrentIndex(max(0, self.status_filter.findData(status)))

    def shown_records(self) -> list[ImageRecord]:
        return [r for r in self.model.records if (item := self.item_of(r)) is not None and not item.isHidden()]

    def _apply_filter(self, records=None) -> None:
        wanted = self.status_filter.currentData()
        for record in self.model.records if records is None else records:
            item = self.item_of(record)
            if item is not None:
                item.setHidden(wanted is not None and record.status != wanted)

    def selected_records(self) -> list[ImageRecord]:
        rows = sorted(self.tree.indexOfTopLevelItem(item) for item in self.tree.selectedItems())
        return [self.model.records[i] for i in rows if 0 <= i < len(self.model.records)]

    def set_thumbnail(self, record: ImageRecord, image: QImage) -> None:
        item = self.item_of(record)
        if item is not None:
            item.setIcon(0, QIcon(QPixmap.fromImage(image)))

    def _on_model(self, event: str, payload: Any) -> None:
        if event == "records_added":
            for record in payload:
                item = QTreeWidgetItem()
                self.tree.addTopLevelItem(item)
                self._items[id(record)] = item
                self._update_row(record)
        elif event == "records_removed":
            self.tree.clear()
            self._items.clear()
        elif event in ("record_changed", "cells_changed"):
            self._update_row(payload)
        elif event == "threshold_changed":
            for record in self.model.records:
                self._update_row(record)
        elif event == "current_changed":
            item = self.item_of(payload) if payload is not None else None
            if item is not None and self.tree.currentItem() is not item:
                self._syncing = True
                self.tree.setCurrentItem(item)
                self._syncing = False
                self.tree.scrollToItem(item)
        if event in ("records_added", "records_removed", "record_changed", "cells_changed", "threshold_changed"):
            self._update_summary()

    def _update_row(self, record: ImageRecord) -> None:
        item = self.item_of(record)
        if item is None:
            return
        counts = record.counts(self.model.threshold)
        item.setText(0, record.name)
        item.setText(1, record.status_text)
        item.setForeground(1, STATUS_COLOURS.get(record.status, QColor(0, 0, 0)))
        tip = record.error or (f"reviewed by {record.reviewed_by} at {record.reviewed_at}" if record.reviewed_at
                               else record.status_text)
        item.setToolTip(1, tip)
        item.setText(2, str(counts.wbc) if counts else "")
        item.setText(3, f"{counts.blast} ({counts.blast_pct:.0f} %)" if counts else "")
        item.setToolTip(0, f"{record.path}\nsample: {record.sample_id or '–'}")
        for column in (2, 3):
            item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if counts and counts.blast:
            item.setForeground(3, label_colour("blast"))
        else:
            item.setForeground(3, self.palette().text().color())
        self._apply_filter([record])

    def _update_summary(self) -> None:
        n = len(self.model.records)
        if not n:
            return
        done = self.model.n_analysed
        reviewed = sum(r.status == REVIEWED for r in self.model.records)
        failed = sum(r.status == FAILED for r in self.model.records)
        text = f"{n} images · {done} analysed · {reviewed} reviewed"
        self.summary.setText(text + (f" · {failed} failed" if failed else ""))

    def _on_current_item(self, current: QTreeWidgetItem | None, _previous) -> None:
        if self._syncing or current is None:
            return
        index = self.tree.indexOfTopLevelItem(current)
        if index >= 0:
            self.model.set_current(index)


# ---------------------------------------------------------------------------------------------------------------
class MetadataPanel(QWidget):
    """Sample / patient ID and a free-text note for the current image (saved with its results), copied to the
    image's whole folder on request, and the review mark."""

    def __init__(self, model: SessionModel, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.record: ImageRecord | None = None
        self.sample_edit = QLineEdit()
        self.sample_edit.setPlaceholderText("e.g. P-2024-0153")
        self.sample_edit.setClearButtonEnabled(True)
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("Note (saved with the results)")
        self.note_edit.setMinimumHeight(48)
        self.note_edit.setMaximumHeight(90)
        self.folder_button = QPushButton("Apply to folder")
        self.folder_button.setToolTip("Give every image of this image's folder the same sample ID and note")
        self.review_box = QCheckBox("Reviewed")
        self.review_box.setToolTip("Mark the current image as reviewed (Ctrl+M)")
        self.review_label = QLabel("")
        self.review_label.setWordWrap(True)
        self.review_label.setStyleSheet("color: palette(mid);")
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Sample / patient ID", self.sample_edit)
        form.addRow("Note", self.note_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.review_box)
        buttons.addStretch(1)
        buttons.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.review_label)
        self._updating = False
        self.sample_edit.editingFinished.connect(self._commit_sample)
        self.sample_edit.textEdited.connect(lambda _text: self._commit_sample())   # saved as it is typed
        self.note_edit.textChanged.connect(self._commit_note)
        self.folder_button.clicked.connect(self._apply_folder)
        self.review_box.toggled.connect(self._toggle_review)
        model.subscribe(self._on_model)
        self._show(None)

    def _on_model(self, event: str, payload: Any) -> None:
        if event == "current_changed":
            self._show(payload)
        elif event in ("record_changed", "cells_changed") and payload is self.record:
            self._show(payload)

    def _show(self, record: ImageRecord | None) -> None:
        if record is not self.record and self.record is not None:
            self._commit_sample()
        # still typing into this record's field: keep the text as typed (another record's ID always replaces it)
        typing = self.sample_edit.hasFocus() and record is self.record
        self.record = record
        self._updating = True
        try:
            enabled = record is not None
            for widget in (self.sample_edit, self.note_edit, self.folder_button):
                widget.setEnabled(enabled)
            sample = (record.sample_id or "") if record else ""
            if self.sample_edit.text().strip() != sample and not typing:
                self.sample_edit.setText(sample)
            note = record.note if record else ""
            if self.note_edit.toPlainText() != note:
                self.note_edit.setPlainText(note)
            self.review_box.setEnabled(bool(record and record.analysed))
            self.review_box.setChecked(bool(record and record.status == REVIEWED))
            if record and record.reviewed_at:
                self.review_label.setText(f"Reviewed by {record.reviewed_by} at {record.reviewed_at}")
            elif record and not record.analysed:
                self.review_label.setText("Analyse the image before marking it reviewed.")
            else:
                self.review_label.setText("")
        finally:
            self._updating = False

    def commit(self) -> None:
        """Put what is typed into the model now (the window closes, another image is shown)."""
        self._commit_sample()
        self._commit_note()

    def _commit_sample(self) -> None:
        if self._updating or self.record is None:
            return
        text = self.sample_edit.text().strip()
        if text != (self.record.sample_id or ""):
            self.model.set_metadata(self.record, sample_id=text)

    def _commit_note(self) -> None:
        if self._updating or self.record is None:
            return
        text = self.note_edit.toPlainText()
        if text != self.record.note:
            self.model.set_metadata(self.record, note=text)

    def _apply_folder(self) -> None:
        if self.record is not None:
            self._commit_sample()
            self.model.apply_metadata_to_folder(self.record)

    def _toggle_review(self, checked: bool) -> None:
        if self._updating or self.record is None:
            return
        self.model.mark_reviewed(self.record, checked)


# ---------------------------------------------------------------------------------------------------------------
class CountsPanel(QWidget):
    """White cells / blasts / non-blasts / unidentified (waiting for review) / blast % of the current image and of
    the session at the display threshold, after review (the first two columns) and as analysed (the last two)."""

    ROWS = ["WBC", "Blasts", "Normal", "Unidentified", "Blast %"]
    ROW_TITLES = ["White cells", "Blasts", "Non-blasts", "Unidentified", "Blast %"]
    COLUMNS = ["Image", "Session", "Image", "Session"]
    GROUPS = ("after review", "as analysed")        # a first row spans each pair of columns

    def __init__(self, model: SessionModel, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.table = QTableWidget(1 + len(self.ROWS), len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setVerticalHeaderLabels([""] + self.ROW_TITLES)
        tips = ("After review: each cell by its label now; unidentified cells wait until a person reviews them",
                "As the pipeline said (boxes drawn by hand left out)")
        for n, (group, tip) in enumerate(zip(self.GROUPS, tips)):
            self.table.setSpan(0, 2 * n, 1, 2)
            item = QTableWidgetItem(group)
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            item.setToolTip(tip)
            font = item.font()
            font.setItalic(True)
            item.setFont(font)
            self.table.setItem(0, 2 * n, item)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setWordWrap(False)                    # four narrow columns: one line per number, never two
        font = self.table.font()
        font.setPixelSize(11)
        self.table.setFont(font)
        for row in range(len(self.ROWS)):
            for column in range(len(self.COLUMNS)):
                item = QTableWidgetItem("–")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(1 + row, column, item)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.caption)
        self._fit_table_height()
        self.image_counts: CellCounts | None = None
        self.session_counts = CellCounts()
        self.image_as_analysed: CellCounts | None = None
        self.session_as_analysed = CellCounts()
        model.subscribe(lambda event, payload: self.refresh())
        self.refresh()

    def _fit_table_height(self) -> None:
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._fit_table_height)   # the two-line headers have their real height once shown

    def value(self, row: str, column: int) -> str:
        """The text of a row (a ROWS key) in column 0 image / 1 session (after review), 2 / 3 (as analysed)."""
        return self.table.item(1 + self.ROWS.index(row), column).text()

    def refresh(self) -> None:
        threshold = self.model.threshold
        record = self.model.current
        shown = record.cells(threshold) if record is not None and record.analysed else None
        session = [c for r in self.model.records for c in r.cells(threshold)]
        self.image_counts = record.counts(threshold) if record else None
        self.session_counts = self.model.session_counts(threshold)
        self.image_as_analysed = CellCounts.as_analysed(shown) if shown is not None else None
        self.session_as_analysed = CellCounts.as_analysed(session)
        any_analysed = bool(self.model.n_analysed)
        for column, counts in ((0, self.image_counts), (1, self.session_counts if any_analysed else None),
                               (2, self.image_as_analysed), (3, self.session_as_analysed if any_analysed else None)):
            values = (["–"] * len(self.ROWS) if counts is None else
                      [str(counts.wbc), str(counts.blast), str(counts.normal), str(counts.unidentified),
                       _fmt_pct(counts.blast_pct)])
            for row, text in enumerate(values, start=1):
                self.table.item(row, column).setText(text)
            for row, key, colour in ((2, "blast", label_colour("blast")), (4, "unidentified", QColor(200, 110, 0))):
                wanted = colour if counts and getattr(counts, key) else self.palette().text().color()
                self.table.item(row, column).setForeground(wanted)
        analysed = self.model.n_analysed
        waiting = self.session_counts.unidentified
        reviewed = sum(c.reviewed for c in session)
        self.caption.setText(f"Cells with detector confidence ≥ {fmt_threshold(threshold)} · session: {analysed} of "
                             f"{len(self.model.records)} images analysed · {reviewed} of {len(session)} cells "
                             f"reviewed" + (f" · <b>{waiting} unidentified wait for review</b>" if waiting else ""))


# ---------------------------------------------------------------------------------------------------------------
class CellDetailsPanel(QWidget):
    """The crop and numbers of one cell (hovered or clicked in the view, or picked in the gallery)."""

    CROP = 132

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.crop_label = QLabel()
        self.crop_label.setFixedSize(self.CROP, self.CROP)
        self.crop_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.crop_label.setStyleSheet("background: #28282c; border-radius: 3px;")
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(2)
        for key in ("Cell", "Label", "p(blast)", "p(normal)", "Detector", "Box"):
            value = QLabel("–")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            form.addRow(f"{key}:", value)
        self.hint = QLabel("Hover or click a box to see the cell.")
        self.hint.setWordWrap(True)
        text = QVBoxLayout()
        text.addLayout(form)
        text.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.crop_label)
        row.addLayout(text, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        self.cell: CellDetection | None = None

    def show_cell(self, cell: CellDetection | None, image: QImage | None = None) -> None:
        self.cell = cell
        if cell is None:
            self.crop_label.clear()
            for value in self.fields.values():
                value.setText("–")
            self.hint.setVisible(True)
            return
        self.hint.setVisible(False)
        self.crop_label.setPixmap(crop_cell(image, cell, self.CROP))
        x1, y1, x2, y2 = cell.xyxy
        colour = label_colour(cell.label).name()
        self.fields["Cell"].setText(f"#{cell.cell_id}")
        self.fields["Label"].setText(f"<b style='color:{colour}'>{label_name(cell.label)}</b> "
                                     f"({cell.label_conf:.3f})")
        self.fields["p(blast)"].setText(f"{cell.p_blast:.3f}")
        self.fields["p(normal)"].setText(f"{1.0 - cell.p_blast:.3f}")
        self.fields["Detector"].setText(f"{cell.det_conf:.3f}")
        self.fields["Box"].setText(f"{x1:.0f}, {y1:.0f} – {x2:.0f}, {y2:.0f}<br>{x2 - x1:.0f} × {y2 - y1:.0f} px")


# ---------------------------------------------------------------------------------------------------------------
SORTS = {
    "review": ("Review queue: least certain first", lambda c: (abs(c.p_blast - 0.5), c.cell_id)),
    "blast": ("Blasts first, most confident first", lambda c: (c.label != "blast", -c.label_conf, c.cell_id)),
    "normal": ("Normal first, most confident first", lambda c: (c.label != "normal", -c.label_conf, c.cell_id)),
    "detector": ("Detector confidence, highest first", lambda c: (-c.det_conf, c.cell_id)),
}


class GalleryPanel(QWidget):
    """Crops of the current image's shown cells. Sorting by |p(blast) - 0.5| puts the cells the classifier is
    least sure of first: the review queue. Clicking a crop selects the cell and centres the view on it."""

    cellActivated = Signal(int)
    ICON = 76

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.sort_combo = QComboBox()
        for key, (text, _) in SORTS.items():
            self.sort_combo.addItem(text, key)
        self.count_label = QLabel("")
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(self.ICON, self.ICON))
        self.list.setGridSize(QSize(self.ICON + 14, self.ICON + 34))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(True)
        self.list.setSpacing(2)
        self.list.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        top = QHBoxLayout()
        top.addWidget(self.sort_combo, 1)
        top.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.list)
        self.cells: list[CellDetection] = []
        self.image: QImage | None = None
        self.threshold = 0.0
        self.selected_id = -1
        self._icons: dict[tuple, QIcon] = {}      # (cell id, box, frame colour) -> its crop of self.image
        self._rebuild_timer = QTimer(self)
        self._rebuild_timer.setSingleShot(True)
        self._rebuild_timer.setInterval(0)
        self._rebuild_timer.timeout.connect(self.rebuild)
        self.sort_combo.currentIndexChanged.connect(lambda _: self.rebuild())
        self.list.itemClicked.connect(self._on_click)
        self.list.itemActivated.connect(self._on_click)

    @property
    def sort_key(self) -> str:
        return self.sort_combo.currentData()

    def set_sort(self, key: str) -> None:
        self.sort_combo.setCurrentIndex(list(SORTS).index(key))

    def set_cells(self, cells: list[CellDetection], image: QImage | None) -> None:
        """A new image / result, or cells edited: a crop is made once per image and box look (place, label) and
        reused for every threshold or sort change and every cell a change left as it was."""
        self.selected_id = -1
        self.cells = list(cells)
        if image is not self.image:
            self._icons = {}
        self.image = image
        self.rebuild()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self._rebuild_timer.start()   # coalesce a slider drag into one rebuild per event-loop turn

    def shown_ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def rebuild(self) -> None:
        shown = sorted((c for c in self.cells if c.det_conf >= self.threshold), key=SORTS[self.sort_key][1])
        self.list.setUpdatesEnabled(False)
        self.list.clear()
        for cell in shown:
            key = (cell.cell_id, tuple(cell.xyxy), cell_colour(cell).rgb())   # what crop_cell draws
            icon = self._icons.get(key)
            if icon is None:
                icon = self._icons[key] = QIcon(crop_cell(self.image, cell, self.ICON))
            item = QListWidgetItem(icon, f"{label_name(cell.label)} {cell.label_conf:.2f}")
            item.setData(Qt.ItemDataRole.UserRole, cell.cell_id)
            item.setToolTip(f"Cell #{cell.cell_id}: {cell.label} {cell.label_conf:.3f}, p(blast) {cell.p_blast:.3f}, "
                            f"detector {cell.det_conf:.3f}")
            item.setForeground(label_colour(cell.label))
            self.list.addItem(item)
        self.list.setUpdatesEnabled(True)
        self.count_label.setText(f"{len(shown)} cells")
        if self.selected_id >= 0:
            self.select(self.selected_id)

    def select(self, cell_id: int) -> None:
        self.selected_id = cell_id
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == cell_id:
                self.list.setCurrentRow(i)
                self.list.scrollToItem(self.list.item(i))
                return
        self.list.clearSelection()

    def _on_click(self, item: QListWidgetItem) -> None:
        self.cellActivated.emit(int(item.data(Qt.ItemDataRole.UserRole)))
