"""What the review tab shows, driven by the session model: the current image (decoded by a worker, a few kept
for quick next / previous), its cell boxes at the display threshold, the gallery and the cell details.

`RecordDisplay` observes the `SessionModel` and redraws when it says so: a new current image, a new result, cells
replaced (box edits, imported labels: only the boxes that differ are redrawn) or a new threshold. It changes
nothing in the model."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QStatusBar

from workbench.app.session import FAILED, ImageRecord, SessionModel
from workbench.gui.image_io import load_qimage
from workbench.gui.panels import CellDetailsPanel, GalleryPanel
from workbench.gui.review import ReviewPane
from workbench.gui.workers import Worker, describe_error

IMAGE_CACHE = 3          # decoded images kept for quick next / previous


class RecordDisplay(QObject):
    imageShown = Signal(str)           # path of the image whose pixels are now in the view (or failed to load)

    def __init__(self, model: SessionModel, pane: ReviewPane, gallery: GalleryPanel, details: CellDetailsPanel,
                 pool: QThreadPool, status: QStatusBar, show_error: Callable[..., None],
                 max_pixels: Callable[[], int | None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model, self.pane, self.gallery, self.details = model, pane, gallery, details
        self.scene, self.view = pane.scene, pane.view
        self.pool, self.status, self.show_error, self.max_pixels = pool, status, show_error, max_pixels
        self.current_image: QImage | None = None
        self._cache: OrderedDict[str, QImage] = OrderedDict()
        self._request = 0
        self._shown_result = None
        pane.set_threshold_widgets(model.threshold)
        pane.slider.valueChanged.connect(lambda v: model.set_threshold(v / pane.slider.maximum()))
        pane.threshold_spin.valueChanged.connect(model.set_threshold)
        self.scene.cellHovered.connect(self._on_cell_hovered)
        self.view.cellClicked.connect(self.select_cell)
        gallery.cellActivated.connect(self._on_gallery_cell)
        model.subscribe(self._on_model)

    # -- the model -> the widgets ------------------------------------------------------------------------------------
    def _on_model(self, event: str, payload: Any) -> None:
        current = self.model.current
        if event == "current_changed":
            self.show_record(payload)
        elif event == "record_changed":
            if payload is current and payload.result is not self._shown_result:
                self.show_result(payload)
        elif event == "cells_changed":
            if payload is current:
                self._cells_changed(payload)
        elif event == "threshold_changed":
            self._apply_threshold(payload)

    def show_record(self, record: ImageRecord | None) -> None:
        self.details.show_cell(None)
        self.pane.set_banner(None)
        if record is None:
            self.scene.set_image(None)
            self.scene.set_result(None)
            self._shown_result = None
            self.gallery.set_cells([], None)
            self.pane.show_viewer(False)
            return
        self.pane.show_viewer(True)
        key = str(record.path)
        self._request += 1
        cached = self._cache.get(key)
        self.current_image = cached
        self.scene.set_image(cached)
        self.show_result(record)
        if cached is not None or record.analysed:
            self.view.fit()
        if cached is not None:
            self._cache.move_to_end(key)
            self.imageShown.emit(key)
            return
        worker = Worker(load_qimage, record.path, self.max_pixels())
        worker.returned.connect(partial(self._on_image_loaded, key, self._request))
        worker.errored.connect(partial(self._on_image_failed, key, self._request))
        worker.start(self.pool)
        self.status.showMessage(f"Loading {record.name}…")

    def show_result(self, record: ImageRecord) -> None:
        """(Re)build the cell items of the current record: a new image or a new analysis."""
        self._shown_result = record.result
        self.scene.set_result(record.result)
        self.scene.set_threshold(self.model.threshold)
        self.gallery.threshold = self.model.threshold
        self.gallery.set_cells(record.result.cells if record.analysed else [], self.current_image)
        self.details.show_cell(None)
        if record.status == FAILED and record.error:
            self.pane.set_banner(f"This image could not be analysed: {record.error}", "analysis")
        elif self.pane.banner_kind == "analysis":
            self.pane.set_banner(None)
        self.pane.update_shown_label(record, self.model.threshold)

    def _cells_changed(self, record: ImageRecord) -> None:
        if record.result is not self._shown_result:      # an unanalysed image got its first (hand-made) cells
            self.show_result(record)
            return
        self.scene.sync_cells(record.result.cells)      # (a no-op when the box editor has already synced them)
        self.gallery.set_cells(record.result.cells, self.current_image)
        if self.scene.selected_id >= 0:
            self.gallery.select(self.scene.selected_id)
        if self.details.cell is not None:
            self.details.show_cell(self.cell(self.details.cell.cell_id), self.current_image)
        self.pane.update_shown_label(record, self.model.threshold)

    def _apply_threshold(self, threshold: float) -> None:
        self.pane.set_threshold_widgets(threshold)
        self.scene.set_threshold(threshold)
        self.gallery.set_threshold(threshold)
        if self.details.cell is not None and self.details.cell.det_conf < threshold:
            self.details.show_cell(None)
        self.pane.update_shown_label(self.model.current, threshold)

    # -- images ------------------------------------------------------------------------------------------------------
    def cache_image(self, path: str, image: QImage) -> None:
        """Keep a decoded image (the analysis hands over the pixels it decoded) for when it is shown."""
        self._cache[path] = image
        self._cache.move_to_end(path)
        while len(self._cache) > IMAGE_CACHE:
            self._cache.popitem(last=False)

    def _on_image_loaded(self, path: str, request_id: int, image: QImage) -> None:
        self.cache_image(path, image)
        if request_id != self._request:
            return          # the user moved on to another image meanwhile
        self.current_image = image
        self.scene.set_image(image)
        if self.view.fit_mode:
            self.view.fit()
        record = self.model.current
        if record is not None and record.analysed:
            self.gallery.set_cells(record.result.cells, image)
            if self.scene.selected_id >= 0:
                self.gallery.select(self.scene.selected_id)
        self.status.showMessage(f"{Path(path).name}: {image.width()} × {image.height()} px", 5000)
        self.imageShown.emit(path)

    def _on_image_failed(self, path: str, request_id: int, exc: BaseException) -> None:
        if request_id != self._request:
            return
        message = describe_error(exc)
        self.pane.set_banner(f"Cannot show this image: {message}", "image")
        self.show_error("Cannot open image", message, dialog=False)
        self.imageShown.emit(path)

    # -- cells ---------------------------------------------------------------------------------------------------------
    @property
    def visible_count(self) -> int:
        return len(self.scene.visible_items())

    def cell(self, cell_id: int):
        item = self.scene.cell_items.get(cell_id)
        return item.cell if item is not None else None

    def _on_cell_hovered(self, cell_id: int) -> None:
        cell = self.cell(cell_id) if cell_id >= 0 else self.cell(self.scene.selected_id)
        self.details.show_cell(cell, self.current_image)

    def select_cell(self, cell_id: int) -> None:
        self.scene.select_cell(cell_id)
        self.gallery.select(cell_id)
        self.details.show_cell(self.cell(cell_id), self.current_image)

    def _on_gallery_cell(self, cell_id: int) -> None:
        self.select_cell(cell_id)
        self.view.centre_on_cell(cell_id)
