"""Grad-CAM of the selected cell, on demand, in the cell panel: the crop the classifier saw beside the map of the
evidence for the chosen class (classification.explain). The classifier is loaded and run in a Worker thread, never
on the UI thread; the loaded network is kept for the next cell (one per weights file)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QThreadPool, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from workbench.app.session import ImageRecord
from workbench.gui.image_io import numpy_to_qimage
from workbench.gui.style import CLASS_MAP, label_name
from workbench.gui.workers import Worker, describe_error

if TYPE_CHECKING:
    import numpy as np

_loaded: dict[tuple, object] = {}      # (path, size, mtime, margin) -> BlastClassifier (not the analysis's)
_digests: dict[tuple, str] = {}        # (path, size, mtime) -> the file's sha256
_lock = threading.Lock()
SIDE = 120


def _file_key(path: Path) -> tuple:
    """A loaded network is kept per file content: weights replaced under the same name are loaded again."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _classifier(config, info):
    """The classifier that labelled the cell, as a PyTorch network (Grad-CAM needs its gradients): the result's
    weights file while it still holds those weights (its sha256), else the configured classifier when it is those
    weights, or when no model labelled the cell (a box drawn by hand). Another model's map would explain a decision
    that model did not make, so a cell whose weights are gone is refused with a WeightsError."""
    from classification.predictor import BlastClassifier
    from workbench.app.weights import Manifest, resolve_weights
    from workbench.core.errors import WeightsError
    from workbench.core.fileio import sha256_file

    def candidates():
        if info is not None and info.path and Path(info.path).is_file():
            yield Path(info.path)
        try:
            yield resolve_weights(config.classifier.weights or None, "classify",
                                  Manifest.in_folder(config.paths.weights)).path
        except WeightsError:
            if not (info is not None and info.sha256):
                raise                     # a hand-drawn box: the configured classifier's own problem is the message

    wanted = info.sha256 if info is not None and info.sha256 else None
    with _lock:
        for path in candidates():
            key = _file_key(path)
            if key not in _digests:
                _digests[key] = sha256_file(path)
            if wanted is not None and _digests[key] != wanted:
                continue
            loaded = (*key, config.classifier.margin)
            if loaded not in _loaded:
                _loaded[loaded] = BlastClassifier(path, margin=config.classifier.margin)
            return _loaded[loaded]
    raise WeightsError(f"the classifier that labelled this cell ({info.name}, sha256 {info.sha256[:12]}...) is no "
                       f"longer at {info.path}; re-analyse the image to explain the current classifier's label")


def compute_cam(config, record_path: str, box: tuple, um_per_px: float | None, class_name: str, info
                ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(crop, crop with the map laid over it, the class's probability, seconds) for one cell (worker thread)."""
    from classification.explain import cell_cams, overlay
    from workbench.core.images import load_image

    start = time.perf_counter()
    classifier = _classifier(config, info)
    image = load_image(record_path, config.images.max_pixels, config.images.max_bytes)
    [cam] = cell_cams(classifier, image, [box], class_name, um_per_px)
    return cam.crop, overlay(cam.crop, cam.cam), cam.probability, time.perf_counter() - start


def to_pixmap(rgb: np.ndarray, side: int = SIDE) -> QPixmap:
    import numpy as np      # here, not at the top: the window starts without numpy (bench/gui_startup_bench.py)

    image = numpy_to_qimage(np.ascontiguousarray(rgb))
    return QPixmap.fromImage(image).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)


class CamPanel(QWidget):
    """'Grad-CAM for [class] [Show]' and the two pictures. `target()` gives the cell to explain."""

    computed = Signal(object)          # (record, cell id, class name, probability) once a map is shown
    failed = Signal(str)

    def __init__(self, pool: QThreadPool, config: Callable[[], object],
                 target: Callable[[], tuple[ImageRecord, int] | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pool, self.config, self.target = pool, config, target
        self.class_combo = QComboBox()
        for label in CLASS_MAP:
            self.class_combo.addItem(label_name(label), label)
        self.button = QPushButton("Grad-CAM")
        self.button.setToolTip("Where in the crop the classifier found the evidence for the chosen class "
                               "(computed in the background)")
        self.crop_label, self.cam_label = QLabel(), QLabel()
        for label in (self.crop_label, self.cam_label):
            label.setFixedSize(SIDE, SIDE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #28282c; border-radius: 3px;")
        self.status = QLabel("Select a cell, then Grad-CAM.")
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Class"))
        top.addWidget(self.class_combo, 1)
        top.addWidget(self.button)
        pictures = QHBoxLayout()
        pictures.addWidget(self.crop_label)
        pictures.addWidget(self.cam_label)
        pictures.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addLayout(top)
        layout.addLayout(pictures)
        layout.addWidget(self.status)
        self.worker: Worker | None = None
        self._request = 0
        self.shown: tuple | None = None          # (record, cell id, class) of the map on show
        self.button.clicked.connect(lambda: self.explain())

    def clear(self) -> None:
        self._request += 1
        self.crop_label.clear()
        self.cam_label.clear()
        self.shown = None
        self.status.setText("Select a cell, then Grad-CAM.")

    def explain(self, record: ImageRecord | None = None, cell_id: int | None = None,
                class_name: str | None = None) -> Worker | None:
        """Start the map of `class_name` (default: the chosen one) for a cell (default: `target()`)."""
        if record is None:
            target = self.target()
            if target is None:
                self.status.setText("Select a cell first (click a box or a crop).")
                return None
            record, cell_id = target
        if class_name is not None:
            self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(class_name)))
        class_name = self.class_combo.currentData()
        cell = next((c for c in record.result.cells if c.cell_id == cell_id), None) if record.result else None
        if cell is None:
            return None
        self._request += 1
        request = self._request
        um_per_px = (record.result.scale or {}).get("um_per_px")
        self.status.setText(f"Computing Grad-CAM of {label_name(class_name)} for cell #{cell_id}…")
        self.worker = Worker(compute_cam, self.config(), str(record.path), tuple(cell.xyxy), um_per_px, class_name,
                             record.result.classifier)
        self.worker.returned.connect(lambda value: self._show(request, record, cell_id, class_name, value))
        self.worker.errored.connect(lambda exc: self._error(request, exc))
        self.worker.start(self.pool)
        return self.worker

    def _show(self, request: int, record: ImageRecord, cell_id: int, class_name: str, value) -> None:
        if request != self._request:
            return                           # another cell was asked for meanwhile
        crop, cam, probability, seconds = value
        self.crop_label.setPixmap(to_pixmap(crop))
        self.cam_label.setPixmap(to_pixmap(cam))
        self.shown = (record, cell_id, class_name)
        self.status.setText(f"Cell #{cell_id}: evidence for {label_name(class_name)} (red = most); "
                            f"p({class_name}) {probability:.3f} · {seconds:.1f} s")
        self.computed.emit((record, cell_id, class_name, probability))

    def _error(self, request: int, exc: BaseException) -> None:
        if request == self._request:
            self.status.setText(f"Grad-CAM failed: {describe_error(exc)}")
            self.failed.emit(describe_error(exc))
