"""Evaluation view: the saved evaluation runs (`workbench.app.eval_store`) and, for the chosen run, its headline
numbers, the per-class table (P, R, mAP50, mAP50-95) and its plots (PR curve, confusion matrix, ...).

Readable at any window size: table columns are as wide as their headers and values (a table scrolls rather than
cutting a header), every header and metric name explains itself in a tooltip, and the plots are shown at their
natural size (as saved: the legend as large as in the file) in a scroll area, zoomed with the buttons or Ctrl+wheel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QGridLayout, QHBoxLayout, QHeaderView, QLabel,
                               QListWidget, QListWidgetItem, QPushButton, QScrollArea, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from workbench.gui.metric_text import format_value, metric_name, metric_tip
from workbench.gui.metrics_table import MetricsTable

CLASS_COLUMNS = ["precision", "recall", "ap50", "ap50_95"]
ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.1, 8.0
KIND_NAMES = {"detection": "Detector", "classifier": "Classifier", "pipeline": "Pipeline"}


# the per-group table's columns, in this order, where the run has them
GROUP_COLUMNS = ("images", "instances", "n", "n_blast", "accuracy", "precision", "recall", "specificity", "f1",
                 "roc_auc", "mcnemar_p", "ap50", "ap50_95", "false_wbc_per_image", "false_blasts_per_image",
                 "blast_mae", "tp", "fp", "fn", "params", "ms_per_crop", "ms_per_image")


def group_numbers(data: dict) -> tuple[str, dict[str, dict]]:
    """(title, {row name: {metric: number}}) of a run's per-group table: a comparison's runs (`workbench compare`,
    with McNemar's p against its reference) and detectors, else the per-group or per-source numbers."""
    comparison = data.get("comparison")
    if isinstance(comparison, dict) and isinstance(comparison.get("rows"), list):
        p_values = {m.get("run"): m.get("p_value") for m in comparison.get("mcnemar") or [] if isinstance(m, dict)}
        rows: dict[str, dict] = {}
        for row in [*comparison["rows"], *(comparison.get("detectors") or [])]:
            if isinstance(row, dict) and row.get("run"):
                # the 95 % intervals (`*_low`, `*_high`) stay in comparison.md / .csv: the table shows the estimates
                # (and the recipe's words, arch / head / schedule, stay there too: the run's name says it)
                values = {k: v for k, v in row.items()
                          if not k.endswith(("_low", "_high")) and not isinstance(v, (str, dict, list))}
                if row["run"] in p_values:
                    values["mcnemar_p"] = p_values[row["run"]]
                rows[str(row["run"])] = values
        reference = comparison.get("reference", "?")
        return (f"<b>Per run</b> (McNemar p against the reference <b>{reference}</b>; 95 % intervals in "
                f"comparison.md)", rows)
    groups = data.get("per_group") or data.get("per_source") or {}
    return "<b>Per group</b> (lab / camera / diagnosis, or data source)", groups if isinstance(groups, dict) else {}


def _read_only_table(columns: list[str]) -> QTableWidget:
    """A table whose columns fit their header and values (never cut: it scrolls sideways when the view is narrow)."""
    table = QTableWidget(0, len(columns))
    set_headers(table, columns)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(False)
    header.setTextElideMode(Qt.TextElideMode.ElideNone)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    return table


def set_headers(table: QTableWidget, columns: list[str], tips: list[str] | None = None) -> None:
    table.setColumnCount(len(columns))
    for column, text in enumerate(columns):
        item = QTableWidgetItem(text)
        item.setToolTip(tips[column] if tips else text)
        table.setHorizontalHeaderItem(column, item)


class PlotImage(QLabel):
    """A plot at its natural size (as saved) times the view's zoom; it never shrinks to fit (a shrunk PR curve's
    legend is unreadable) - the scroll area around the plots scrolls instead."""

    def __init__(self, pixmap: QPixmap, parent=None) -> None:
        super().__init__(parent)
        self.original = pixmap
        self.zoom = 1.0
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setStyleSheet("background: white;")
        self.set_zoom(1.0)

    def set_zoom(self, zoom: float) -> None:
        self.zoom = zoom
        if self.original.isNull():
            self.setText("(plot could not be read)")
            return
        if zoom == 1.0:
            self.setPixmap(self.original)
        else:
            self.setPixmap(self.original.scaled(self.original.size() * zoom, Qt.AspectRatioMode.KeepAspectRatio,
                                                Qt.TransformationMode.SmoothTransformation))
        self.setFixedSize(self.pixmap().size())


class _CtrlWheelZoom(QObject):
    """Ctrl+wheel over the plots zooms them (the wheel alone scrolls)."""

    def __init__(self, view: "EvalView") -> None:
        super().__init__(view)
        self.view = view

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Wheel and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.view.zoom_plots(ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP)
            return True
        return False


class EvalView(QWidget):
    """List of runs on the left; the chosen run's numbers and plots on the right."""

    def __init__(self, root: Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.root = Path(root) if root is not None else None
        self.runs: list[Any] = []
        self.run: Any = None
        self.root_label = QLabel()
        self.root_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        choose = QPushButton("Runs folder…")
        choose.clicked.connect(self._choose_root)
        top = QHBoxLayout()
        top.addWidget(self.root_label, 1)
        top.addWidget(choose)
        top.addWidget(refresh)

        self.run_list = QListWidget()
        self.run_list.setMinimumWidth(240)
        self.run_list.setSpacing(2)
        self.run_list.currentRowChanged.connect(self._on_row)
        self.empty_label = QLabel()
        self.empty_label.setWordWrap(True)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("<b>Evaluation runs</b> (newest first)"))
        left_layout.addWidget(self.run_list, 1)
        left_layout.addWidget(self.empty_label)

        self.header = QLabel("Choose a run.")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_table = _read_only_table(["Metric", "Value"])
        self.class_table = _read_only_table(["Class"] + [metric_name(c) for c in CLASS_COLUMNS])
        self.class_box = QWidget()
        class_layout = QVBoxLayout(self.class_box)
        class_layout.setContentsMargins(0, 0, 0, 0)
        class_layout.addWidget(QLabel("<b>Per class</b>"))
        class_layout.addWidget(self.class_table)
        class_layout.addStretch(1)
        summary_box = QWidget()
        summary_layout = QVBoxLayout(summary_box)
        summary_layout.setContentsMargins(0, 0, 0, 0)
        summary_layout.addWidget(QLabel("<b>Summary</b>"))
        summary_layout.addWidget(self.summary_table)
        summary_layout.addStretch(1)
        # every number per group (lab / camera / diagnosis, or data source): a pooled number hides the group
        # where the models fail
        self.group_table = MetricsTable(columns=GROUP_COLUMNS)
        self.group_box = QWidget()
        group_layout = QVBoxLayout(self.group_box)
        group_layout.setContentsMargins(0, 0, 0, 0)
        self.group_title = QLabel()
        group_layout.addWidget(self.group_title)
        group_layout.addWidget(self.group_table)
        group_layout.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.class_box)
        right.addWidget(self.group_box, 1)
        tables = QHBoxLayout()
        tables.addWidget(summary_box)
        tables.addSpacing(8)
        tables.addLayout(right, 1)
        self.plots_box = QWidget()
        self.plots_grid = QGridLayout(self.plots_box)
        self.plots_grid.setContentsMargins(0, 0, 0, 0)
        self.plots_grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.plot_widgets: list[tuple[str, PlotImage]] = []
        self.plot_zoom = 1.0
        self.plots_area = QScrollArea()
        self.plots_area.setWidget(self.plots_box)
        self.plots_area.setWidgetResizable(True)
        self.plots_area.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.plots_area.viewport().installEventFilter(_CtrlWheelZoom(self))
        zoom_bar = QHBoxLayout()
        zoom_bar.addWidget(QLabel("<b>Plots</b>"))
        zoom_bar.addStretch(1)
        self.zoom_label = QLabel("100 %")
        for text, tip, slot in (("−", "Zoom out (Ctrl+wheel)", lambda: self.zoom_plots(1 / ZOOM_STEP)),
                                ("100 %", "The plots at their natural size", lambda: self.set_plot_zoom(1.0)),
                                ("+", "Zoom in (Ctrl+wheel)", lambda: self.zoom_plots(ZOOM_STEP)),
                                ("Fit", "Fit the plots to the width of the view", self.fit_plots)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            zoom_bar.addWidget(button)
        zoom_bar.addWidget(self.zoom_label)
        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.header)
        details_layout.addLayout(tables)
        details_layout.addLayout(zoom_bar)
        details_layout.addWidget(self.plots_area, 1)

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(details)
        body.setStretchFactor(0, 0)
        body.setStretchFactor(1, 1)
        body.setSizes([280, 1000])
        body.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(body, 1)
        self._loaded = False

    # -- runs ---------------------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._loaded:
            self.refresh()

    def set_root(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.refresh()

    def refresh(self) -> None:
        self._loaded = True
        self.run_list.clear()
        self.runs = []
        try:
            from workbench.app import eval_store
        except ImportError as exc:
            self.root_label.setText("Runs folder: –")
            self.empty_label.setText(f"Evaluation runs cannot be read here ({exc}).")
            self.show_run(None)
            return
        root = self.root or getattr(eval_store, "EVAL_RUNS_DIR", None)
        self.root_label.setText(f"Runs folder: {root}")
        try:
            self.runs = list(eval_store.list_eval_runs(self.root))
        except Exception as exc:  # a broken runs folder must not take the view down
            self.empty_label.setText(f"Cannot list evaluation runs in {root}: {exc}")
            self.show_run(None)
            return
        for run in self.runs:
            kind = KIND_NAMES.get(run.kind, run.kind)
            weights = (run.metrics.get("weights") or {}).get("name", "") if isinstance(run.metrics, dict) else ""
            created = run.created.replace("T", " ")[:16]
            item = QListWidgetItem(f"{kind} · {created}\n{weights or run.name}")
            item.setToolTip(f"{run.name}\n{run.path}")
            self.run_list.addItem(item)
        self.empty_label.setText("" if self.runs else
                                 f"No evaluation runs in {root}. Runs are written by the evaluation commands.")
        if self.runs:
            self.run_list.setCurrentRow(0)
        else:
            self.show_run(None)

    def select_run(self, index: int) -> None:
        self.run_list.setCurrentRow(index)

    def _on_row(self, row: int) -> None:
        self.show_run(self.runs[row] if 0 <= row < len(self.runs) else None)

    def _choose_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Evaluation runs folder", str(self.root or ""))
        if folder:
            self.set_root(Path(folder))

    # -- one run ------------------------------------------------------------------------------------------------
    def show_run(self, run: Any) -> None:
        self.run = run
        self.summary_table.setRowCount(0)
        self.class_table.setRowCount(0)
        self.group_table.set_metrics(None)
        self.group_box.setVisible(False)
        self._fit_heights()
        self._clear_plots()
        if run is None:
            self.header.setText("Choose a run." if self.runs else "")
            return
        data = run.metrics if isinstance(run.metrics, dict) else {}
        summary = data.get("summary")
        if summary is None:   # metrics may be the summary itself
            summary = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        weights = data.get("weights") or {}
        thresholds = data.get("thresholds") or {}
        lines = [f"<b>{KIND_NAMES.get(run.kind, run.kind)} run {run.name}</b> · {run.created}"]
        what = []
        if weights:
            what.append(f"weights <b>{weights.get('name', '?')}</b>"
                        + (f" ({str(weights.get('sha256', ''))[:12]})" if weights.get("sha256") else ""))
        if data.get("data"):
            what.append(f"data {data['data']}" + (f" · split {data['split']}" if data.get("split") else ""))
        if thresholds:
            what.append("thresholds " + ", ".join(f"{k} {format_value(v)}" for k, v in thresholds.items()))
        if what:
            lines.append(" · ".join(what))
        self.header.setText("<br>".join(lines))
        for key, value in summary.items():
            row = self.summary_table.rowCount()
            self.summary_table.insertRow(row)
            name = QTableWidgetItem(metric_name(key))
            name.setToolTip(metric_tip(key))
            self.summary_table.setItem(row, 0, name)
            item = QTableWidgetItem(format_value(value))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.summary_table.setItem(row, 1, item)
        per_class = data.get("per_class") or {}
        self.class_box.setVisible(bool(per_class))
        if per_class:
            extra = sorted({k for values in per_class.values() if isinstance(values, dict) for k in values}
                           - set(CLASS_COLUMNS))
            columns = [c for c in CLASS_COLUMNS if any(c in v for v in per_class.values() if isinstance(v, dict))]
            columns += extra
            set_headers(self.class_table, ["Class"] + [metric_name(c) for c in columns],
                        ["The class (label) of the cells"] + [metric_tip(c) for c in columns])
            for name, values in per_class.items():
                values = values if isinstance(values, dict) else {}
                row = self.class_table.rowCount()
                self.class_table.insertRow(row)
                self.class_table.setItem(row, 0, QTableWidgetItem(str(name)))
                for column, key in enumerate(columns, start=1):
                    item = QTableWidgetItem(format_value(values.get(key)))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.class_table.setItem(row, column, item)
        title, groups = group_numbers(data)
        self.group_title.setText(title)
        self.group_table.set_metrics(groups)
        self.group_box.setVisible(bool(groups))
        plots = dict(getattr(run, "plots", {}) or {})

        def order(name: str) -> tuple[int, str]:
            lowered = name.lower()
            rank = 0 if "pr" in lowered.split("_") or "pr_curve" in lowered else 1 if "confusion" in lowered else 2
            return rank, lowered

        names = sorted(plots, key=order)
        columns = 1 if len(names) == 1 else 2 if len(names) in (2, 4) else 3
        for n, name in enumerate(names):
            path = Path(plots[name])
            if not path.is_absolute():
                path = Path(run.path) / path
            label = PlotImage(QPixmap(str(path)))
            label.set_zoom(self.plot_zoom)
            label.setToolTip(f"{path}\nCtrl+wheel zooms")
            title = QLabel(f"<b>{name.replace('_', ' ')}</b>")
            cell = QWidget()
            cell_layout = QVBoxLayout(cell)
            cell_layout.setContentsMargins(0, 4, 8, 8)
            cell_layout.addWidget(title)
            cell_layout.addWidget(label)
            self.plots_grid.addWidget(cell, n // columns, n % columns,
                                      Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            self.plot_widgets.append((name.replace("_", " "), label))
        if not names:
            self.plots_grid.addWidget(QLabel("This run saved no plots."), 0, 0)
        self._fit_heights()

    def _fit_heights(self) -> None:
        """Tables as tall as their rows (up to a limit) and the summary as wide as its columns, so the plots get
        the rest; room is kept for a horizontal scroll bar, so a narrow window never hides the last row."""
        for table in (self.summary_table, self.class_table):
            table.resizeColumnsToContents()
            table.resizeRowsToContents()
            height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + 2
            height += sum(table.rowHeight(r) for r in range(table.rowCount()))
            height += table.horizontalScrollBar().sizeHint().height()
            table.setFixedHeight(min(height, 320))
        width = sum(self.summary_table.columnWidth(c) for c in range(self.summary_table.columnCount()))
        self.summary_table.setFixedWidth(width + 2 * self.summary_table.frameWidth() +
                                         self.summary_table.verticalScrollBar().sizeHint().width())

    # -- plot zoom ------------------------------------------------------------------------------------------------
    def set_plot_zoom(self, zoom: float) -> None:
        self.plot_zoom = min(max(float(zoom), MIN_ZOOM), MAX_ZOOM)
        for _name, label in self.plot_widgets:
            label.set_zoom(self.plot_zoom)
        self.zoom_label.setText(f"{100 * self.plot_zoom:.0f} %")

    def zoom_plots(self, factor: float) -> None:
        self.set_plot_zoom(self.plot_zoom * factor)

    def fit_plots(self) -> None:
        """The widest row of plots fits the width of the view (a smaller zoom never goes under 10 %)."""
        if not self.plot_widgets:
            return
        columns = max(1, self.plots_grid.columnCount())
        widths = [label.original.width() for _name, label in self.plot_widgets if not label.original.isNull()]
        if widths:
            spacing = (columns - 1) * self.plots_grid.horizontalSpacing() + 12 * columns
            self.set_plot_zoom((self.plots_area.viewport().width() - spacing) / (max(widths) * columns))

    def _clear_plots(self) -> None:
        self.plot_widgets = []
        while self.plots_grid.count():
            item = self.plots_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def plot_names(self) -> list[str]:
        return [name for name, _ in self.plot_widgets]
