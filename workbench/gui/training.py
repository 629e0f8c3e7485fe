"""Retraining from the GUI: `workbench train detector` (or `train classifier`) on an exported training set, in a
background process (QProcess), with a progress bar (epochs) and a log view. With a weights name, the new weights
are registered in weights/manifest.yaml (`--register`) and become selectable in the analysis settings."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QProcess, QProcessEnvironment, Signal
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

# per-epoch progress: ultralytics' "  3/50   0G  1.23 ...", the classifier trainer's "... epoch 3/50 [..."
EPOCH_LINE = re.compile(r"^\s*(\d+)/(\d+)\s|\bepoch (\d+)/(\d+)\b")


def train_detector_command(data_yaml: Path | str, epochs: int, imgsz: int, batch: int, out: Path | str,
                           name: str, register: str | None = None, device: str = "cpu") -> list[str]:
    command = [sys.executable, "-m", "workbench.cli", "train", "detector", "--data", str(data_yaml),
               "--epochs", str(epochs), "--imgsz", str(imgsz), "--batch", str(batch), "--device", device,
               "--workers", "0", "--out", str(out), "--name", name]
    if register:
        command += ["--register", register]
    return command


def train_classifier_command(crops: Path | str, epochs: int, input_size: int, batch: int, out: Path | str,
                             register: str | None = None, device: str = "cpu") -> list[str]:
    command = [sys.executable, "-m", "workbench.cli", "train", "classifier", "--data", str(crops),
               "--epochs", str(epochs), "--input-size", str(input_size), "--batch", str(batch), "--device", device,
               "--workers", "0", "--out", str(out)]
    if register:
        command += ["--register", register]
    return command


class TrainingDialog(QDialog):
    """Runs one training command and shows its output; `finished(exit_code)` when the process ends."""

    finished_training = Signal(int)

    def __init__(self, data_yaml: Path | str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.model_box = QComboBox()
        self.model_box.addItem("Detector (YOLOv8, data.yaml)", "detector")
        self.model_box.addItem("Classifier (EfficientNet-B3, crops folder)", "classifier")
        self.resize(760, 480)
        self.process: QProcess | None = None
        self.exit_code: int | None = None
        self._buffer = ""
        self.data_edit = QLineEdit(str(data_yaml or ""))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(50)
        self.imgsz = QSpinBox()
        self.imgsz.setRange(32, 4096)
        self.imgsz.setSingleStep(32)
        self.imgsz.setValue(640)
        self.batch = QSpinBox()
        self.batch.setRange(1, 512)
        self.batch.setValue(8)
        self.device = QLineEdit("cpu")
        self.out_edit = QLineEdit("runs/detector")
        self.name_edit = QLineEdit("retrain")
        self.register_edit = QLineEdit("")
        self.register_edit.setPlaceholderText("weights name to register (empty: do not register)")
        form = QFormLayout()
        for label, widget in (("Model", self.model_box), ("Data", self.data_edit), ("Epochs", self.epochs),
                              ("Image size", self.imgsz),
                              ("Batch", self.batch), ("Device", self.device), ("Runs folder", self.out_edit),
                              ("Run name", self.name_edit), ("Register as", self.register_edit)):
            form.addRow(label, widget)
        self.progress = QProgressBar()
        self.progress.setFormat("epoch %v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Not started")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.log.setFont(font)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.log, 1)
        layout.addWidget(buttons)
        self.start_button.clicked.connect(lambda: self.start())
        self.model_box.currentIndexChanged.connect(self._model_changed)

    def set_export(self, data_yaml: Path | str) -> None:
        """An exported training set (its detector data.yaml): the data field follows the chosen model."""
        self.export_data = Path(data_yaml)
        self._model_changed()

    def _model_changed(self, *_args) -> None:
        detector = self.model_box.currentData() == "detector"
        self.imgsz.setValue(640 if detector else 300)
        self.out_edit.setText("runs/detector" if detector else "runs/classifier/retrain")
        self.name_edit.setEnabled(detector)
        export = getattr(self, "export_data", None)
        if export is not None:
            self.data_edit.setText(str(export if detector else export.parent.parent / "classifier"))
        self.stop_button.clicked.connect(self.stop)

    def command(self) -> list[str]:
        if self.model_box.currentData() == "classifier":
            return train_classifier_command(self.data_edit.text().strip(), self.epochs.value(), self.imgsz.value(),
                                            self.batch.value(), self.out_edit.text().strip(),
                                            self.register_edit.text().strip() or None,
                                            self.device.text().strip() or "cpu")
        return train_detector_command(self.data_edit.text().strip(), self.epochs.value(), self.imgsz.value(),
                                      self.batch.value(), self.out_edit.text().strip(), self.name_edit.text().strip(),
                                      self.register_edit.text().strip() or None, self.device.text().strip() or "cpu")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, command: Sequence[str] | None = None, cwd: Path | str | None = None) -> bool:
        if self.running:
            return False
        command = list(command or self.command())
        self.log.clear()
        self.exit_code = None
        self._buffer = ""
        self.progress.setRange(0, max(1, self.epochs.value()))
        self.progress.setValue(0)
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        if cwd is not None:
            process.setWorkingDirectory(str(cwd))
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        self.log.appendPlainText("$ " + " ".join(command))
        self.status.setText("Training…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        process.start(command[0], command[1:])
        return True

    def stop(self) -> None:
        if self.running:
            self.status.setText("Stopping…")
            self.process.terminate()
            if not self.process.waitForFinished(5000):
                self.process.kill()

    def _read(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace").replace("\r", "\n")
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if not line.strip():
                continue
            match = EPOCH_LINE.search(line)
            if match:
                done, total = (int(v) for v in (match.groups()[:2] if match.group(1) else match.groups()[2:]))
                self.progress.setRange(0, total)
                self.progress.setValue(done)
            self.log.appendPlainText(line)
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def _finished(self, code: int, _status) -> None:
        self._read()
        if self._buffer.strip():
            self.log.appendPlainText(self._buffer)
        self.exit_code = int(code)
        ok = code == 0
        self.status.setText("Finished" + ("" if ok else f" with exit code {code}") +
                            (f"; registered as '{self.register_edit.text().strip()}'"
                             if ok and self.register_edit.text().strip() else ""))
        if ok:
            self.progress.setValue(self.progress.maximum())
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.finished_training.emit(self.exit_code)

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.log.appendPlainText(f"cannot start the training process: {self.process.errorString()}")
            self._finished(-1, None)

    def reject(self) -> None:
        self.stop()
        super().reject()
