"""The smear viewer: a QGraphicsScene holding the image and one rectangle item per cell, and a zoom/pan view.

Cell items are made once per result and then only shown, hidden or restyled (threshold, label toggle, selection),
never re-created per frame. Boxes use cosmetic pens and their labels ignore the view transform, so lines and text
keep their screen size at any zoom. All geometry is QPointF/QRectF (floats end to end). Each `CellItem` knows its
`CellDetection`; after a box edit the model's cells are the truth and `sync_cells` updates only the items that
differ (`update_cell`, `add_cell`, `remove_cell`).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QGraphicsItem, QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene, QGraphicsView,
                               QStyleOptionGraphicsItem, QWidget)

from workbench.gui.style import SELECTION_RGB, cell_colour
from workbench.app.results import CellDetection, SmearResult

MIN_SCALE, MAX_SCALE = 0.02, 40.0
WHEEL_STEP = 1.2


def cell_rect(cell: CellDetection) -> QRectF:
    x1, y1, x2, y2 = (float(v) for v in cell.xyxy)
    return QRectF(QPointF(x1, y1), QPointF(x2, y2)).normalized()


def cell_text(cell: CellDetection) -> str:
    """'blast 0.91'; '? blast 0.55' while unidentified (waiting for review); a reviewed cell gets a tick."""
    text = f"? {cell.label} {cell.label_conf:.2f}" if cell.waiting else f"{cell.label} {cell.label_conf:.2f}"
    return text + " ✓" if cell.reviewed else text


class LabelItem(QGraphicsItem):
    """Label + confidence on a box-coloured background, drawn above the box's top-left corner at a constant
    screen size (ItemIgnoresTransformations)."""

    _font: QFont | None = None

    @classmethod
    def label_font(cls) -> QFont:
        if cls._font is None:        # made on first use: a QFont needs the QApplication
            cls._font = QFont()
            cls._font.setPixelSize(11)
            cls._font.setBold(True)
        return cls._font

    def __init__(self, text: str, colour: QColor, parent: QGraphicsItem) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._rect = QRectF()
        self._text = ""
        self._colour = QColor(colour)
        self.set_text(text, colour)

    def set_text(self, text: str, colour: QColor) -> None:
        metrics = QFontMetricsF(self.label_font())
        self.prepareGeometryChange()
        self._text, self._colour = text, QColor(colour)
        width, height = metrics.horizontalAdvance(text) + 6.0, metrics.height() + 2.0
        self._rect = QRectF(QPointF(0.0, -height), QPointF(width, 0.0))
        self.update()

    @property
    def text(self) -> str:
        return self._text

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.fillRect(self._rect, self._colour)
        painter.setPen(QColor(255, 255, 255))
        painter.setFont(self.label_font())
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class CellItem(QGraphicsRectItem):
    """One detected cell: a box coloured by label with its label text; hovering it reports the cell."""

    def __init__(self, cell: CellDetection, show_label: bool = True) -> None:
        super().__init__(cell_rect(cell))
        self.setAcceptHoverEvents(True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)   # clicks are the view's (pan vs. click)
        self.label_item = LabelItem(cell_text(cell), cell_colour(cell), self)
        self.cell = cell
        self.update_cell(cell)
        self.label_item.setVisible(show_label)

    @property
    def cell_id(self) -> int:
        return self.cell.cell_id

    def update_cell(self, cell: CellDetection) -> None:
        self.cell = cell
        rect = cell_rect(cell)
        self.setRect(rect)
        colour = cell_colour(cell)
        pen = QPen(colour, 2.0)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.setZValue(1.0 + 1.0 / (1.0 + rect.width() * rect.height()))   # small boxes above large ones
        self.label_item.set_text(cell_text(cell), colour)
        self.label_item.setPos(rect.topLeft())
        self.setToolTip(f"Cell {cell.cell_id}: {cell.label} {cell.label_conf:.3f} · p(blast) {cell.p_blast:.3f} · "
                        f"detector {cell.det_conf:.3f}")

    def hoverEnterEvent(self, event) -> None:
        scene = self.scene()
        if isinstance(scene, SmearScene):
            scene.cellHovered.emit(self.cell_id)
        super().hoverEnterEvent(event)

    def hoverLeaveEvent(self, event) -> None:
        scene = self.scene()
        if isinstance(scene, SmearScene):
            scene.cellHovered.emit(-1)
        super().hoverLeaveEvent(event)


class SmearScene(QGraphicsScene):
    """The image plus its cell items. `set_threshold` and `set_labels_visible` only toggle visibility."""

    cellHovered = Signal(int)     # cell id, -1 when the pointer leaves a box

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)
        self.setBackgroundBrush(QColor(48, 48, 52))
        self.pixmap_item = QGraphicsPixmapItem()
        self.pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.pixmap_item.setZValue(-1.0)
        self.addItem(self.pixmap_item)
        self.selection_item = QGraphicsRectItem()
        pen = QPen(QColor(*SELECTION_RGB), 3.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.selection_item.setPen(pen)
        self.selection_item.setZValue(10.0)
        self.selection_item.setVisible(False)
        self.selection_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.addItem(self.selection_item)
        self.cell_items: dict[int, CellItem] = {}
        self.result: SmearResult | None = None
        self.threshold = 0.0
        self.labels_visible = True
        self.view_scale = 1.0
        self.selected_id = -1
        self.image_size: tuple[int, int] | None = None

    # -- image --------------------------------------------------------------------------------------------------
    def set_image(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.pixmap_item.setPixmap(QPixmap())
            self.image_size = None
        else:
            self.pixmap_item.setPixmap(QPixmap.fromImage(image))
            self.image_size = (image.width(), image.height())
        self._update_rect()

    def _update_rect(self) -> None:
        if self.image_size is not None:
            width, height = self.image_size
        elif self.result is not None and self.result.width:
            width, height = self.result.width, self.result.height
        else:
            width, height = 1.0, 1.0
        margin = 0.03 * max(width, height)
        self.setSceneRect(QRectF(QPointF(-margin, -margin), QPointF(width + margin, height + margin)))

    @property
    def image_rect(self) -> QRectF:
        if self.image_size is not None:
            return QRectF(QPointF(0.0, 0.0), QPointF(*map(float, self.image_size)))
        if self.result is not None and self.result.width:
            return QRectF(QPointF(0.0, 0.0), QPointF(float(self.result.width), float(self.result.height)))
        return QRectF()

    # -- cells --------------------------------------------------------------------------------------------------
    def set_result(self, result: SmearResult | None) -> None:
        """Replace every cell item (a new image or a new analysis)."""
        for item in self.cell_items.values():
            self.removeItem(item)
        self.cell_items = {}
        self.result = result
        self.select_cell(-1)
        if result is not None and result.ok:
            for cell in result.cells:
                self.add_cell(cell)
        self._update_rect()

    def add_cell(self, cell: CellDetection) -> CellItem:
        item = CellItem(cell, self.labels_visible)
        item.setVisible(cell.det_conf >= self.threshold)
        item.label_item.setVisible(self._label_shown(item))
        self.addItem(item)
        self.cell_items[cell.cell_id] = item
        return item

    def update_cell(self, cell: CellDetection) -> None:
        item = self.cell_items.get(cell.cell_id)
        if item is None:
            self.add_cell(cell)
            return
        item.update_cell(cell)
        item.setVisible(cell.det_conf >= self.threshold)
        item.label_item.setVisible(self._label_shown(item))
        if cell.cell_id == self.selected_id:
            self.select_cell(cell.cell_id)

    def sync_cells(self, cells) -> int:
        """Make the items match `cells` (the result's cells after an edit): changed cells are restyled, new ones
        added, gone ones removed; untouched items stay as they are. Returns how many items changed."""
        wanted = {cell.cell_id: cell for cell in cells}
        changed = 0
        for cell_id in [i for i in self.cell_items if i not in wanted]:
            self.remove_cell(cell_id)
            changed += 1
        for cell_id, cell in wanted.items():
            item = self.cell_items.get(cell_id)
            if item is None or item.cell != cell:
                self.update_cell(cell)
                changed += 1
        return changed

    def remove_cell(self, cell_id: int) -> None:
        item = self.cell_items.pop(cell_id, None)
        if item is not None:
            self.removeItem(item)
        if cell_id == self.selected_id:
            self.select_cell(-1)

    def set_threshold(self, threshold: float) -> int:
        """Show the cells whose detector confidence reaches `threshold`; returns how many are shown."""
        self.threshold = float(threshold)
        shown = 0
        for item in self.cell_items.values():
            visible = item.cell.det_conf >= self.threshold
            if item.isVisible() != visible:
                item.setVisible(visible)
            shown += visible
        if self.selected_id in self.cell_items and not self.cell_items[self.selected_id].isVisible():
            self.select_cell(-1)
        return shown

    def set_labels_visible(self, visible: bool) -> None:
        self.labels_visible = bool(visible)
        self._update_labels()

    def set_view_scale(self, scale: float) -> None:
        """Level of detail: a label wider than its box on screen would only cover the neighbouring cells, so it
        waits until the user zooms in far enough (boxes are always drawn)."""
        self.view_scale = float(scale)
        self._update_labels()

    def _label_shown(self, item: CellItem) -> bool:
        return self.labels_visible and item.rect().width() * self.view_scale >= item.label_item.boundingRect().width()

    def _update_labels(self) -> None:
        for item in self.cell_items.values():
            shown = self._label_shown(item)
            if item.label_item.isVisible() != shown:
                item.label_item.setVisible(shown)

    def visible_items(self) -> list[CellItem]:
        return [item for item in self.cell_items.values() if item.isVisible()]

    def select_cell(self, cell_id: int) -> None:
        item = self.cell_items.get(cell_id)
        self.selected_id = cell_id if item is not None else -1
        if item is None:
            self.selection_item.setVisible(False)
            return
        self.selection_item.setRect(item.rect().adjusted(-3.0, -3.0, 3.0, 3.0))
        self.selection_item.setVisible(True)

    def cell_at(self, scene_pos: QPointF) -> CellItem | None:
        for item in self.items(scene_pos):
            if isinstance(item, CellItem) and item.isVisible():
                return item
            if isinstance(item, LabelItem) and isinstance(item.parentItem(), CellItem) and item.isVisible():
                return item.parentItem()     # (a hidden box's label is hidden with it: never picked)
        return None


class SmearView(QGraphicsView):
    """Zoom (wheel, +/-, fit, 100%) and pan (drag) over a SmearScene; a click on a box reports its cell."""

    cellClicked = Signal(int)        # cell id, -1 for a click beside every box
    zoomChanged = Signal(float)      # scale (1.0 = 100%: one image pixel per screen pixel)

    def __init__(self, scene: SmearScene, parent=None) -> None:
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setAcceptDrops(False)          # dropped files go to the main window
        self.setMouseTracking(True)
        self.fit_mode = True                # keep fitting the image while the window is resized, until a zoom
        self._press_pos = None

    @property
    def smear_scene(self) -> SmearScene:
        return self.scene()

    @property
    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def _set_scale(self, scale: float, anchor_mouse: bool = True) -> None:
        scale = min(max(scale, MIN_SCALE), MAX_SCALE)
        current = self.scale_factor or 1.0
        anchor = self.transformationAnchor()
        if not anchor_mouse:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.scale(scale / current, scale / current)
        self.setTransformationAnchor(anchor)
        self._scale_changed()

    def _scale_changed(self) -> None:
        self.smear_scene.set_view_scale(self.scale_factor)
        self.zoomChanged.emit(self.scale_factor)

    def zoom_by(self, factor: float, anchor_mouse: bool = False) -> None:
        self.fit_mode = False
        self._set_scale(self.scale_factor * factor, anchor_mouse)

    def zoom_in(self) -> None:
        self.zoom_by(WHEEL_STEP)

    def zoom_out(self) -> None:
        self.zoom_by(1.0 / WHEEL_STEP)

    def actual_size(self) -> None:
        self.fit_mode = False
        self._set_scale(1.0, anchor_mouse=False)

    def fit(self) -> None:
        self.fit_mode = True
        rect = self.sceneRect()   # the image and its small margin: no scroll bars at fit
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._scale_changed()

    def centre_on_cell(self, cell_id: int) -> None:
        item = self.smear_scene.cell_items.get(cell_id)
        if item is None:
            return
        rect = item.rect()
        view = self.viewport().rect()
        # zoom in far enough that the cell is comfortably visible, never out
        wanted = min(view.width() / max(rect.width() * 4.0, 1.0), view.height() / max(rect.height() * 4.0, 1.0))
        if self.scale_factor < wanted:
            self.fit_mode = False
            self._set_scale(min(wanted, 2.0), anchor_mouse=False)
        self.centerOn(rect.center())

    # -- events -------------------------------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y()
        if delta == 0:
            super().wheelEvent(event)
            return
        self.fit_mode = False
        self._set_scale(self.scale_factor * WHEEL_STEP ** (delta / 120.0), anchor_mouse=True)
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fit_mode:
            self.fit()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press_pos = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        if event.button() == Qt.MouseButton.LeftButton and self._press_pos is not None:
            moved = (event.position() - self._press_pos).manhattanLength()
            self._press_pos = None
            if moved <= 4.0:      # a click, not a pan
                item = self.smear_scene.cell_at(self.mapToScene(event.position().toPoint()))
                self.cellClicked.emit(item.cell_id if item is not None else -1)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_in()
        elif key == Qt.Key.Key_Minus:
            self.zoom_out()
        else:
            super().keyPressEvent(event)
