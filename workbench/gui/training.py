"""Retraining from the GUI: `workbench train detector` (or `train classifier`) on an exported training set, in a
background process (QProcess), with a progress bar (epochs), the last epoch's numbers and a log view. With a weights
name, the new weights are registered in weights/manifest.yaml (`--register`) and become selectable in the analysis
settings.

By default training fine-tunes the weights the analysis uses (the shipped ones, from the manifest): `--pretrained`
is that file, and the classifier's input size is theirs; "From scratch" is a choice. The trainers' own progress is
made visible: ultralytics prints its epochs only when YOLO_VERBOSE is on, the classifier trainer logs them at INFO
(`workbench -v`). Stop ends the process and says so (a terminated process would otherwise read "exit code 15").
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

# per-epoch progress: ultralytics' "  3/50   0G  1.23 ...", the classifier trainer's "... epoch 3/50 [..."
EPOCH_LINE = re.compile(r"^\s*(\d+)/(\d+)\s|\bepoch (\d+)/(\d+)\b")
# ultralytics' validation line after each epoch: "all  <images>  <instances>  P  R  mAP50  mAP50-95"
VAL_LINE = re.compile(r"^\s*all\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS_BAR = re.compile(r"[━─]{3,}|\d+%\|")        # a progress bar redraw: summarised, not logged
LAUNCHER = [sys.executable, "-m", "workbench.launch", "-v"]
SCRATCH = "__scratch__"
TASKS = {"detector": "detect", "classifier": "classify"}


def train_detector_command(data_yaml: Path | str, epochs: int, imgsz: int, batch: int, out: Path | str,
                           name: str, register: str | None = None, device: str = "cpu",
                           pretrained: Path | str | None = None) -> list[str]:
    command = [*LAUNCHER, "train", "detector", "--data", str(data_yaml),
               "--epochs", str(epochs), "--imgsz", str(imgsz), "--batch", str(batch), "--device", device,
               "--workers", "0", "--out", str(out), "--name", name]
    if pretrained:
        command += ["--pretrained", str(pretrained)]
    if register:
        command += ["--register", register]
    return command


def train_classifier_command(crops: Path | str, epochs: int, input_size: int, batch: int, out: Path | str,
                             register: str | None = None, device: str = "cpu",
                             pretrained: Path | str | None = None) -> list[str]:
    command = [*LAUNCHER, "train", "classifier", "--data", str(crops),
               "--epochs", str(epochs), "--input-size", str(input_size), "--batch", str(batch), "--device", device,
               "--workers", "0", "--out", str(out)]
    if pretrained:
        command += ["--pretrained", str(pretrained)]
    if register:
        command += ["--register", register]
    return command


class TrainingDialog(QDialog):
    """Runs one training command and shows its output; `finished_training(exit_code)` when the process ends.
    `chosen` maps "detect" / "classify" to the analysis settings' weights (None: the manifest's default)."""

    finished_training = Signal(int)

    def __init__(self, data_yaml: Path | str | None = None, parent: QWidget | None = None,
                 chosen: Mapping[str, str | None] | None = None, manifest=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.chosen = dict(chosen or {})
        self.manifest = manifest
        self.model_box = QComboBox()
        self.model_box.addItem("Detector (YOLOv8, data.yaml)", "detector")
        self.model_box.addItem("Classifier (EfficientNet-B3, crops folder)", "classifier")
        self.resize(820, 560)
        self.process: QProcess | None = None
        self.exit_code: int | None = None
        self.stopped = False
        self._buffer = ""
        self._epoch: tuple[int, int] | None = None
        self._epoch_text = ""
        self.export_data: Path | None = None
        self.data_edit = QLineEdit(str(data_yaml or ""))
        self.start_from = QComboBox()
        self.start_from.setToolTip("Fine-tune these weights (the analysis's, by default), or train from scratch")
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
        for label, widget in (("Model", self.model_box), ("Data", self.data_edit), ("Start from", self.start_from),
                              ("Epochs", self.epochs), ("Image size", self.imgsz), ("Batch", self.batch),
                              ("Device", self.device), ("Runs folder", self.out_edit), ("Run name", self.name_edit),
                              ("Register as", self.register_edit)):
            form.addRow(label, widget)
        self.progress = QProgressBar()
        self.progress.setFormat("epoch %v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Not started")
        self.latest = QLabel("")                       # the last epoch's numbers, as the trainer printed them
        self.latest.setWordWrap(True)
        self.latest.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        layout.addWidget(self.latest)
        layout.addWidget(self.log, 1)
        layout.addWidget(buttons)
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(self.stop)           # once: Stop works whatever was chosen before
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.start_from.currentIndexChanged.connect(self._start_from_changed)
        self._model_changed()

    # -- choices --------------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.model_box.currentData()

    def _manifest(self):
        if self.manifest is None:
            from workbench.app.weights import Manifest
            from workbench.core.errors import WorkbenchError

            try:
                self.manifest = Manifest.load()
            except WorkbenchError:
                self.manifest = False
        return self.manifest or None

    def set_export(self, data_yaml: Path | str) -> None:
        """An exported training set (its detector data.yaml): the data field follows the chosen model."""
        self.export_data = Path(data_yaml)
        self._model_changed()

    def _model_changed(self, *_args) -> None:
        detector = self.kind == "detector"
        self.imgsz.setValue(640 if detector else 300)
        self.out_edit.setText("runs/detector" if detector else "runs/classifier/retrain")
        self.name_edit.setEnabled(detector)
        if self.export_data is not None:
            self.data_edit.setText(str(self.export_data if detector else self.export_data.parent.parent /
                                       "classifier"))
        self._fill_start_from()

    def _fill_start_from(self) -> None:
        """The task's weights from the manifest, the analysis's choice (else the manifest default) first."""
        task = TASKS[self.kind]
        manifest = self._manifest()
        self.start_from.blockSignals(True)
        self.start_from.clear()
        entries = manifest.of_task(task) if manifest is not None else []
        chosen = self.chosen.get(task)
        preferred = None
        if chosen and Path(chosen).is_file():
            self.start_from.addItem(f"{Path(chosen).name} (the analysis's weights)", str(Path(chosen)))
            preferred = 0
        for entry in entries:
            path = manifest.file_of(entry)
            tag = " — shipped default" if entry.default else ""
            self.start_from.addItem(f"{entry.name}{tag} ({entry.architecture}, input {entry.input_size} px)",
                                    str(path))
            if preferred is None and (entry.name == chosen or (not chosen and entry.default)):
                preferred = self.start_from.count() - 1
        self.start_from.addItem("From scratch (no weights)", SCRATCH)
        self.start_from.setCurrentIndex(preferred if preferred is not None else 0)
        self.start_from.blockSignals(False)
        self._start_from_changed()

    def _start_from_changed(self, *_args) -> None:
        """Fine-tuning a classifier keeps its input size."""
        if self.kind != "classifier":
            return
        manifest, path = self._manifest(), self.pretrained()
        entry = manifest.by_path(path) if manifest is not None and path is not None else None
        if entry is not None and entry.input_size:
            self.imgsz.setValue(int(entry.input_size))

    def pretrained(self) -> Path | None:
        data = self.start_from.currentData()
        return None if data in (None, SCRATCH) else Path(data)

    def command(self) -> list[str]:
        register = self.register_edit.text().strip() or None
        device = self.device.text().strip() or "cpu"
        if self.kind == "classifier":
            return train_classifier_command(self.data_edit.text().strip(), self.epochs.value(), self.imgsz.value(),
                                            self.batch.value(), self.out_edit.text().strip(), register, device,
                                            self.pretrained())
        return train_detector_command(self.data_edit.text().strip(), self.epochs.value(), self.imgsz.value(),
                                      self.batch.value(), self.out_edit.text().strip(), self.name_edit.text().strip(),
                                      register, device, self.pretrained())

    # -- the process ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, command: Sequence[str] | None = None, cwd: Path | str | None = None) -> bool:
        if self.running:
            return False
        command = list(command or self.command())
        self.log.clear()
        self.exit_code = None
        self.stopped = False
        self._buffer = ""
        self._epoch, self._epoch_text = None, ""
        self.latest.setText("")
        self.progress.setRange(0, max(1, self.epochs.value()))
        self.progress.setValue(0)
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("YOLO_VERBOSE", "True")       # ultralytics prints its epochs and validation numbers
        env.insert("NO_COLOR", "1")
        process.setProcessEnvironment(env)
        if cwd is not None:
            process.setWorkingDirectory(str(cwd))
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        self.log.appendPlainText("$ " + " ".join(command))
        start_from = self.pretrained() if command[:len(LAUNCHER)] == LAUNCHER else None
        self.status.setText("Training…" + (f" (fine-tuning {start_from.name})" if start_from else ""))
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        process.start(command[0], command[1:])
        return True

    def stop(self) -> None:
        """Stop the training (the weights of the last finished epoch stay in the run folder)."""
        if self.running:
            self.stopped = True
            self.status.setText("Stopping…")
            self.process.terminate()
            if not self.process.waitForFinished(5000):
                self.process.kill()

    def _read(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace").replace("\r", "\n")
        self._buffer += ANSI.sub("", text)
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._line(line)
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        match = EPOCH_LINE.search(line)
        if match:
            done, total = (int(v) for v in (match.groups()[:2] if match.group(1) else match.groups()[2:]))
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            if match.group(1):              # ultralytics: epoch, GPU memory, then the losses
                fields = line.split()
                losses = " ".join(f"{name} {value}" for name, value in zip(("box_loss", "cls_loss", "dfl_loss"),
                                                                            fields[2:5]))
                self._epoch, self._epoch_text = (done, total), losses
                self.latest.setText(f"Epoch {done}/{total} · {losses}")
                if PROGRESS_BAR.search(line):
                    return                  # the bar's redraws: the summary above, not the log
            else:                            # the classifier trainer's one line per epoch
                self.latest.setText(f"Epoch {done}/{total} · {line[match.end():].strip()}")
        val = VAL_LINE.match(line)
        if val and self._epoch is not None:
            p, r, ap50, ap = val.groups()
            done, total = self._epoch
            self.latest.setText(f"Epoch {done}/{total} · {self._epoch_text} · P {p} R {r} mAP50 {ap50} "
                                f"mAP50-95 {ap}")
            self.log.appendPlainText(f"epoch {done}/{total}: {self._epoch_text} | val P {p} R {r} mAP50 {ap50} "
                                     f"mAP50-95 {ap}")
            return
        if PROGRESS_BAR.search(line):
            return
        self.log.appendPlainText(line)

    def _finished(self, code: int, _status) -> None:
        self._read()
        if self._buffer.strip():
            self._line(self._buffer)
            self._buffer = ""
        self.exit_code = int(code)
        ok = code == 0 and not self.stopped
        if self.stopped:
            epoch = self.progress.value()
            text = f"Stopped by you after epoch {epoch} of {self.progress.maximum()}" if epoch else \
                "Stopped by you before the first epoch ended"
            self.log.appendPlainText(f"[stopped by you] {text}")
        elif ok:
            text = "Finished" + (f"; registered as '{self.register_edit.text().strip()}'"
                                 if self.register_edit.text().strip() else "")
        else:
            text = f"Failed (exit code {code}): see the log"
        self.status.setText(text)
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
