"""Analysis settings of the GUI: which weights (from the manifest, with their measured metrics) and thresholds.

`GuiSettings` is a plain dataclass of the user's choices, each one setting of `workbench/cfg/default.yaml`; it starts
from that file and becomes the pipeline settings (`to_config`); `load_settings` / `save_settings` persist it in
QSettings, so the choices survive a restart.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout)

from workbench.app.config import Settings, load_config, schema
from workbench.core.errors import ConfigError, WorkbenchError
from workbench.app.weights import Manifest, WeightsEntry
from workbench.gui.metrics_table import MetricsTable

SETTINGS_GROUP = "analysis"
log = logging.getLogger(__name__)


# each GUI choice is one setting of workbench/cfg/default.yaml (the defaults live there only)
SETTING_KEYS = {"detector": "detector.weights", "classifier": "classifier.weights", "det_conf": "detector.conf",
                "det_iou": "detector.iou", "imgsz": "detector.imgsz", "max_det": "detector.max_det",
                "tile_mode": "tiling.mode", "device": "detector.device", "classifier_batch": "classifier.batch",
                "max_pixels": "images.max_pixels", "backend": "detector.backend", "nested_ios": "detector.nested_ios",
                "min_cell_um": "detector.min_cell_um"}


@dataclass
class GuiSettings:
    """What an analysis from the GUI runs with: the user's choices of some settings (`SETTING_KEYS`), kept and
    saved as overrides of the defaults file. `detector` / `classifier`: None = the manifest's default, a manifest
    entry name, or a path to a weight file."""

    detector: str | None = None
    classifier: str | None = None
    det_conf: float | None = None
    det_iou: float | None = None
    imgsz: int | None = None
    max_det: int | None = None
    tile_mode: str | None = None
    device: str | None = None
    classifier_batch: int | None = None
    max_pixels: int | None = None
    backend: str | None = None   # both models' (as the device): auto, torch, openvino, onnxruntime
    nested_ios: float | None = None   # nested duplicate boxes merged from this overlap (None: not merged)
    min_cell_um: float | None = None  # narrower boxes clear of the border are not white cells (None: all kept)

    @classmethod
    def defaults(cls) -> "GuiSettings":
        config = load_config()
        values = {}
        for name, key in SETTING_KEYS.items():
            section, option = key.split(".")
            values[name] = getattr(getattr(config, section), option)
        return cls(**values)

    def overrides(self) -> dict[str, dict[str, Any]]:
        """These choices as settings overrides (the device is both models')."""
        out: dict[str, dict[str, Any]] = {}
        for name, key in SETTING_KEYS.items():
            section, option = key.split(".")
            out.setdefault(section, {})[option] = getattr(self, name)
        out["classifier"]["device"] = self.device
        out["classifier"]["backend"] = self.backend
        return out

    def to_config(self) -> Settings:
        """The pipeline settings for these choices (raises ConfigError for values the pipeline refuses)."""
        return load_config(overrides=self.overrides())


def _convert(value: Any, default: Any) -> Any:
    if value is None or value == "" and not isinstance(default, str):
        return default
    if isinstance(default, bool):
        return value in (True, "true", "1", 1)
    if isinstance(default, int):
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return str(value)


def load_settings(store: QSettings | None = None) -> GuiSettings:
    """The saved settings on top of the defaults; a value that cannot be read keeps its default."""
    store = store or QSettings()
    settings = GuiSettings.defaults()
    checks = schema()
    store.beginGroup(SETTINGS_GROUP)
    try:
        for f in fields(GuiSettings):
            if not store.contains(f.name):
                continue
            raw = store.value(f.name)
            default = getattr(settings, f.name)
            key = SETTING_KEYS[f.name]
            try:
                if f.name in ("detector", "classifier"):
                    value = str(raw) if raw not in (None, "") else None
                else:
                    value = _convert(raw, default)
                setattr(settings, f.name, checks[key](key, value))   # a stored value the pipeline refuses is dropped
            except (TypeError, ValueError, ConfigError):
                log.warning("ignoring the saved setting %s=%r", f.name, raw)
    finally:
        store.endGroup()
    return settings


def save_settings(settings: GuiSettings, store: QSettings | None = None) -> None:
    store = store or QSettings()
    store.beginGroup(SETTINGS_GROUP)
    for key, value in asdict(settings).items():
        store.setValue(key, "" if value is None else value)
    store.endGroup()
    store.sync()


class WeightsChooser(QGroupBox):
    """A manifest entry (with its metrics) or a weight file of the user's."""

    DEFAULT, FILE = "__default__", "__file__"

    def __init__(self, title: str, task: str, manifest: Manifest, current: str | None, parent=None) -> None:
        super().__init__(title, parent)
        self.task = task
        self.manifest = manifest
        self.combo = QComboBox()
        default = manifest.default(task)
        self.combo.addItem(f"Manifest default ({default.name})" if default else "Manifest default (none listed)",
                           self.DEFAULT)
        for entry in manifest.of_task(task):
            self.combo.addItem(f"{entry.name} — {entry.architecture}, {entry.data or 'data ?'}", entry.name)
        self.combo.addItem("Weight file…", self.FILE)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("path to a .pt file")
        self.browse = QPushButton("Browse…")
        self.metrics = QLabel()
        self.metrics.setWordWrap(True)
        self.metrics.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.metrics_table = MetricsTable()      # the measured metrics: one row per split / source
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.browse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addLayout(row)
        layout.addWidget(self.metrics)
        layout.addWidget(self.metrics_table)
        self.combo.currentIndexChanged.connect(self._update)
        self.browse.clicked.connect(self._browse)
        self.set_value(current)

    def set_value(self, value: str | None) -> None:
        if not value:
            self.combo.setCurrentIndex(0)
        elif self.manifest.by_name(value) is not None and not Path(value).exists():
            self.combo.setCurrentIndex(self.combo.findData(value))
        else:
            self.combo.setCurrentIndex(self.combo.findData(self.FILE))
            self.path_edit.setText(str(value))
        self._update()

    def value(self) -> str | None:
        data = self.combo.currentData()
        if data == self.DEFAULT:
            return None
        if data == self.FILE:
            return self.path_edit.text().strip() or None
        return str(data)

    def entry(self) -> WeightsEntry | None:
        data = self.combo.currentData()
        if data == self.DEFAULT:
            return self.manifest.default(self.task)
        if data == self.FILE:
            text = self.path_edit.text().strip()
            return self.manifest.by_path(Path(text)) if text and Path(text).exists() else None
        return self.manifest.by_name(str(data))

    def _update(self) -> None:
        is_file = self.combo.currentData() == self.FILE
        self.path_edit.setVisible(is_file)
        self.browse.setVisible(is_file)
        entry = self.entry()
        self.metrics_table.set_metrics(entry.metrics if entry is not None else None)
        self.metrics_table.setVisible(entry is not None)
        if entry is not None:
            where = f"trained on {entry.data}" + (f" ({entry.split})" if entry.split else "") if entry.data else ""
            self.metrics.setText(f"<b>{entry.name}</b> · {entry.architecture} · classes {', '.join(entry.class_names)}"
                                 f" · input {entry.input_size} px<br>{where}")
        elif is_file:
            self.metrics.setText("A weight file not listed in the manifest: its classes are checked when it loads.")
        else:
            self.metrics.setText(f"No {'detector' if self.task == 'detect' else 'classifier'} weights are listed in "
                                 f"{self.manifest.path}. Choose a weight file.")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights", self.path_edit.text(), "PyTorch weights (*.pt)")
        if path:
            self.path_edit.setText(path)
            self._update()


class SettingsDialog(QDialog):
    """Weights and thresholds; OK saves them (QSettings) and they apply to the next analysis."""

    def __init__(self, settings: GuiSettings, store: QSettings | None = None, manifest: Manifest | None = None,
                 parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Analysis settings")
        self.setMinimumWidth(560)
        self.store = store
        self.settings = settings
        self.error = ""
        try:
            manifest = manifest or Manifest.load()
        except WorkbenchError as exc:
            self.error = str(exc)
            manifest = Manifest(Path("weights/manifest.yaml"), [])
        self.detector = WeightsChooser("Detector (white cells)", "detect", manifest, settings.detector)
        self.classifier = WeightsChooser("Classifier (blast / normal)", "classify", manifest, settings.classifier)
        self.conf = QDoubleSpinBox()
        self.conf.setDecimals(4)
        self.conf.setRange(0.0001, 1.0)
        self.conf.setSingleStep(0.05)
        self.conf.setValue(settings.det_conf)
        self.conf.setToolTip("Detector confidence threshold of the analysis; the view's slider filters above it")
        self.iou = QDoubleSpinBox()
        self.iou.setDecimals(2)
        self.iou.setRange(0.05, 0.95)
        self.iou.setSingleStep(0.05)
        self.iou.setValue(settings.det_iou)
        self.imgsz = QSpinBox()
        self.imgsz.setRange(64, 4096)
        self.imgsz.setSingleStep(32)
        self.imgsz.setValue(settings.imgsz)
        self.max_det = QSpinBox()
        self.max_det.setRange(1, 10000)
        self.max_det.setValue(settings.max_det)
        self.tile = QComboBox()
        self.tile.addItems(["auto", "on", "off"])
        self.tile.setCurrentText(settings.tile_mode)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(["cpu", "cuda", "cuda:0", "mps"])
        self.device.setCurrentText(settings.device)
        thresholds = QGroupBox("Detection")
        form = QFormLayout(thresholds)
        form.addRow("Confidence threshold", self.conf)
        form.addRow("NMS / tile-merge IoU", self.iou)
        form.addRow("Input size (px, also tile size)", self.imgsz)
        form.addRow("Max cells per tile", self.max_det)
        form.addRow("Tiling of large images", self.tile)
        form.addRow("Device", self.device)
        self.backend = QComboBox()
        self.backend.addItems(["auto", "torch", "openvino", "onnxruntime"])
        self.backend.setCurrentText(settings.backend)
        self.backend.setToolTip("Where the models run: auto = the fastest export of the chosen weights (workbench "
                                "export), else torch; openvino / onnxruntime need an export of these weights")
        form.addRow("Backend", self.backend)
        self.message = QLabel(self.error)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c62828;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel |
                                   QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._restore_defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(self.detector)
        layout.addWidget(self.classifier)
        layout.addWidget(thresholds)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

    def values(self) -> GuiSettings:
        """The dialog's choices; the settings it has no widget for (batch, pixel limit, nested merge, width rule)
        keep their current values, never the dataclass's None (which would turn a rule off until the next start)."""
        return replace(self.settings, detector=self.detector.value(), classifier=self.classifier.value(),
                       det_conf=self.conf.value(), det_iou=self.iou.value(), imgsz=self.imgsz.value(),
                       max_det=self.max_det.value(), tile_mode=self.tile.currentText(),
                       device=self.device.currentText().strip() or "cpu", backend=self.backend.currentText())

    def _restore_defaults(self) -> None:
        d = GuiSettings.defaults()
        self.detector.set_value(d.detector)
        self.classifier.set_value(d.classifier)
        self.conf.setValue(d.det_conf)
        self.iou.setValue(d.det_iou)
        self.imgsz.setValue(d.imgsz)
        self.max_det.setValue(d.max_det)
        self.tile.setCurrentText(d.tile_mode)
        self.device.setCurrentText(d.device)
        self.backend.setCurrentText(d.backend)

    def accept(self) -> None:
        values = self.values()
        try:
            values.to_config()
        except WorkbenchError as exc:
            self.message.setText(str(exc))
            return
        self.settings = values
        save_settings(values, self.store)
        super().accept()
