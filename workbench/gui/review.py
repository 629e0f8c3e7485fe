"""The review tab's widgets: the confidence bar (slider, exact value, labels toggle, "n of m shown", colour legend),
a warning banner, the placeholder shown before any image, and the smear viewer (scene + view). The pane only
holds and formats widgets; `RecordDisplay` (workbench.gui.display) decides what they show."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from workbench.app.session import FAILED, ImageRecord
from workbench.gui.style import CLASS_MAP, label_colour
from workbench.gui.viewer import SmearScene, SmearView

SLIDER_STEPS = 1000      # threshold slider resolution (0.001)


class ReviewPane(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = SmearScene(self)
        self.view = SmearView(self.scene)
        self.view.setMinimumSize(320, 240)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fff3cd; color: #5c4400; padding: 6px; border: 1px solid #e0c36a;")
        self.banner.hide()
        self.banner_kind = ""
        self.placeholder = QLabel("Open smear images (Ctrl+O), a folder (Ctrl+Shift+O) or drop them here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setMinimumWidth(80)
        self.slider.setToolTip("Show cells whose detector confidence reaches this value (no re-analysis)")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setKeyboardTracking(False)
        self.labels_box = QCheckBox("Labels")
        self.labels_box.setChecked(True)
        self.labels_box.setToolTip("Show label and confidence on each box (L)")
        self.shown_label = QLabel("")
        legend = QLabel(" &nbsp; ".join(f"<span style='color:{label_colour(label).name()}'>■</span> {label}"
                                        for label in CLASS_MAP))
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 2)
        confidence = QLabel("Confidence ≥")
        confidence.setToolTip(self.slider.toolTip())
        bar.addWidget(confidence)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.threshold_spin)
        bar.addSpacing(8)
        bar.addWidget(self.labels_box)
        bar.addSpacing(8)
        bar.addWidget(self.shown_label)
        bar.addStretch(0)
        bar.addSpacing(8)
        bar.addWidget(legend)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.view, 1)
        self.view.hide()

    def show_viewer(self, shown: bool) -> None:
        """The viewer when an image is current, else the placeholder."""
        self.placeholder.setVisible(not shown)
        self.view.setVisible(shown)

    def set_threshold_widgets(self, threshold: float) -> None:
        """Show `threshold` in the slider and the box without echoing it back as an edit."""
        for widget in (self.slider, self.threshold_spin):
            widget.blockSignals(True)
        self.slider.setValue(round(threshold * SLIDER_STEPS))
        self.threshold_spin.setValue(threshold)
        for widget in (self.slider, self.threshold_spin):
            widget.blockSignals(False)

    def set_banner(self, text: str | None, kind: str = "") -> None:
        """A warning strip above the view (an image that cannot be shown or analysed); None hides it."""
        self.banner_kind = kind if text else ""
        self.banner.setText(text or "")
        self.banner.setVisible(bool(text))

    def update_shown_label(self, record: ImageRecord | None, threshold: float) -> None:
        """'n of m cells shown' for the record at the display threshold (from the model, as the scene shows it)."""
        if record is None or not record.analysed:
            self.shown_label.setText("not analysed" if record is not None and record.status != FAILED else "")
            return
        shown = len(record.cells(threshold))
        self.shown_label.setText(f"{shown} of {len(record.result.cells)} cells shown")
