"""The label list (as labelImg / X-AnyLabeling show it): every class with its key and colour, the current class
marked (the selected cell's, else the class new boxes are drawn with). Clicking a class reclassifies the selected
cells, or picks the class to draw with when none is selected."""

from __future__ import annotations

from typing import Callable, Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from workbench.gui.style import label_colour, label_name


def swatch(colour: QColor, side: int = 12) -> QIcon:
    pixmap = QPixmap(side, side)
    pixmap.fill(colour)
    return QIcon(pixmap)


class LabelList(QWidget):
    labelChosen = Signal(str)

    def __init__(self, labels: Callable[[], Sequence[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels
        self.list = QListWidget()
        self.list.setIconSize(QSize(12, 12))
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)        # keys stay with the viewer / gallery
        self.current_label = QLabel("")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.list)
        layout.addWidget(self.current_label)
        self.current: str | None = None
        self.list.itemClicked.connect(lambda item: self.labelChosen.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.rebuild()

    def rebuild(self) -> None:
        self.list.clear()
        for n, label in enumerate(self.labels()):
            key = f"{n + 1}   " if n < 9 else "    "
            item = QListWidgetItem(swatch(label_colour(label)), f"{key}{label_name(label)}")
            item.setData(Qt.ItemDataRole.UserRole, label)
            item.setToolTip(f"Key {n + 1}: reclassify the selected cells as {label_name(label)}" if n < 9 else "")
            self.list.addItem(item)
        rows = self.list.count()
        self.list.setFixedHeight(max(1, rows) * (self.list.sizeHintForRow(0) if rows else 18) + 6)
        self.set_current(self.current)

    def set_current(self, label: str | None, why: str = "") -> None:
        """Mark `label` as the current class (`why`: 'selected cell' or 'new boxes')."""
        self.current = label
        for row in range(self.list.count()):
            item = self.list.item(row)
            font = QFont(item.font())
            font.setBold(item.data(Qt.ItemDataRole.UserRole) == label)
            item.setFont(font)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) == label)
        self.current_label.setText(f"Current class: <b>{label_name(label)}</b>{f' ({why})' if why else ''}"
                                   if label else "Current class: –")

    def texts(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]
