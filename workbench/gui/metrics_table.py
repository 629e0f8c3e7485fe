"""The measured metrics of a weights entry (weights/manifest.yaml `metrics:`) as a table a person can read: one row
per split (and per data source, where the entry has them), one column per metric, with the note of how they were
measured above it. The manifest nests them freely (`test: {pooled: {...}, bccd: {...}}`, `val: {...}`), so the
table is made from any nesting: a mapping of numbers is a row, named by the keys leading to it."""

from __future__ import annotations

from typing import Any, Mapping

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, \
    QWidget

from workbench.gui.metric_text import format_value, metric_name, metric_tip

# the columns shown, in this order, when a row has them (the rest: in the row's tooltip)
PREFERRED = ("precision", "recall", "ap50", "ap50_95", "false_wbc_per_image", "accuracy", "balanced_accuracy",
             "specificity", "f1", "roc_auc", "threshold", "images", "instances", "n", "n_blast", "n_normal")
MAX_ROWS_SHOWN = 8
UNDEFINED_WITHOUT_POSITIVES = ("precision", "recall", "f1", "roc_auc")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_rows(metrics: Mapping[str, Any] | None) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """(notes: the text entries such as `computed_by`, rows: (name, {metric: number})) of a manifest entry's
    metrics, in the manifest's order; the test split's rows come first (what the weights are judged by)."""
    notes: list[str] = []
    rows: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        numbers = {k: v for k, v in node.items() if _number(v)}
        if numbers.get("n_blast") == 0:
            # a group without blasts (healthy donors, another lab's normal cells): blast precision, recall and F1
            # are undefined there, not 0 ("–"); what counts is its specificity
            numbers = {k: v for k, v in numbers.items() if k not in UNDEFINED_WITHOUT_POSITIVES}
        if numbers:
            rows.append((" · ".join(path) or "all", numbers))
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, (*path, str(key)))
            elif isinstance(value, str) and value.strip():
                notes.append(f"{' · '.join((*path, str(key))).replace('_', ' ')}: {value}")

    walk(metrics or {}, ())
    rows.sort(key=lambda row: 0 if row[0].startswith("test") else 1)
    return notes, rows


class MetricsTable(QWidget):
    """How the metrics were measured (a wrapped note) and the table of their values."""

    def __init__(self, parent: QWidget | None = None, columns: tuple[str, ...] = PREFERRED) -> None:
        super().__init__(parent)
        self.columns = columns
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.setStyleSheet("color: palette(dark);")
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setTextElideMode(Qt.TextElideMode.ElideNone)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table)
        self.set_metrics(None)

    def set_metrics(self, metrics: Mapping[str, Any] | None) -> None:
        notes, rows = metric_rows(metrics)
        self.note.setText("\n".join(notes) if notes else ("" if rows else "No measured metrics in the manifest."))
        self.note.setVisible(bool(self.note.text()))
        keys = [k for k in self.columns if any(k in values for _name, values in rows)]
        self.table.clear()
        self.table.setRowCount(len(rows))
        self.table.setColumnCount(len(keys))
        for column, key in enumerate(keys):
            item = QTableWidgetItem(metric_name(key))
            item.setToolTip(metric_tip(key))
            self.table.setHorizontalHeaderItem(column, item)
        for row, (name, values) in enumerate(rows):
            head = QTableWidgetItem(name)
            hidden = {k: v for k, v in values.items() if k not in keys}
            head.setToolTip(name + ("\n" + ", ".join(f"{k} {format_value(v)}" for k, v in hidden.items())
                                    if hidden else ""))
            self.table.setVerticalHeaderItem(row, head)
            for column, key in enumerate(keys):
                item = QTableWidgetItem(format_value(values.get(key)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.setVisible(bool(rows))
        self.table.resizeColumnsToContents()
        shown = min(len(rows), MAX_ROWS_SHOWN)
        height = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(shown))
        height += self.table.horizontalScrollBar().sizeHint().height()
        self.table.setFixedHeight(height)

    def cell_text(self, row_name: str, key: str) -> str | None:
        """The shown value of metric `key` in the row `row_name` (None: no such row or column)."""
        rows = [self.table.verticalHeaderItem(r).text() for r in range(self.table.rowCount())]
        columns = [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())]
        if row_name not in rows or metric_name(key) not in columns:
            return None
        return self.table.item(rows.index(row_name), columns.index(metric_name(key))).text()
