"""The training dialog, the evaluation tab and the settings' weights metrics, as a user meets them (issue 16, items 9
and 10): training fine-tunes the shipped weights by default and shows its epochs and numbers as they come, Stop
stops and says so; the evaluation tables' headers are never cut, plots are shown at their natural size and zoom;
the settings show each weights' measured metrics in a table."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QDockWidget  # noqa: E402

from workbench.app.weights import Manifest  # noqa: E402


@pytest.fixture()
def detector_data(tmp_path, bccd_root):
    """A 4-image real YOLO data set (one class wbc), as the training-set export writes one."""
    from workbench.builders.bccd import build_bccd_yolo

    build_bccd_yolo(bccd_root, tmp_path / "data", classes=("wbc",), splits=("train", "val"), limit=4)
    return tmp_path / "data" / "data.yaml"


def test_9_training_fine_tunes_the_shipped_weights_and_shows_epochs_and_metrics(qtbot, window, detector_data,
                                                                               tmp_path):
    manifest = Manifest.load()
    shipped = manifest.file_of(manifest.default("detect"))
    window.settings.detector = window.settings.classifier = None   # the analysis uses the shipped (default) weights
    dialog = window.open_training_dialog(detector_data)
    qtbot.waitExposed(dialog)
    assert dialog.pretrained() == shipped and "shipped default" in dialog.start_from.currentText()
    command = dialog.command()
    assert command[command.index("--pretrained") + 1] == str(shipped)
    dialog.model_box.setCurrentIndex(1)                  # the classifier: its shipped weights and their input size
    classifier = manifest.default("classify")
    assert dialog.pretrained() == manifest.file_of(classifier) and dialog.imgsz.value() == classifier.input_size
    dialog.model_box.setCurrentIndex(0)

    dialog.epochs.setValue(1)
    dialog.imgsz.setValue(64)
    dialog.batch.setValue(4)
    dialog.out_edit.setText(str(tmp_path / "runs"))
    with qtbot.waitSignal(dialog.finished_training, timeout=300_000):
        assert dialog.start()                            # a real `workbench -v train detector` run
    log = dialog.log.toPlainText()
    assert dialog.exit_code == 0 and dialog.status.text() == "Finished", log[-3000:]
    assert "Transferred" in log and "from pretrained weights" in log          # it did start from the shipped file
    assert "epoch 1/1:" in log and "mAP50" in log                             # one line per epoch with its numbers
    assert dialog.latest.text().startswith("Epoch 1/1 · box_loss") and "mAP50-95" in dialog.latest.text()
    assert "━━" not in log and "\x1b[" not in log                              # no progress-bar redraws, no colours
    assert (tmp_path / "runs" / "retrain" / "weights" / "best.pt").is_file()


def test_9_stop_works_without_an_export_and_says_it_stopped(qtbot, window):
    dialog = window.open_training_dialog()               # opened from the menu, no training set exported yet
    slow = [sys.executable, "-u", "-c", "import time\nprint('      1/50   0G  1.5  2.5  1.1  4  64', flush=True)\n"
            "time.sleep(60)"]
    with qtbot.waitSignal(dialog.finished_training, timeout=30_000):
        assert dialog.start(slow)
        qtbot.waitUntil(lambda: dialog.progress.value() == 1, timeout=20_000)
        assert dialog.stop_button.isEnabled()
        qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    assert dialog.status.text() == "Stopped by you after epoch 1 of 50"
    assert "exit code" not in dialog.status.text() and "[stopped by you]" in dialog.log.toPlainText()
    assert not dialog.stop_button.isEnabled() and dialog.start_button.isEnabled()


def test_10_eval_tab_headers_are_whole_and_plots_keep_their_size(qtbot, window, eval_root, make_eval_run):
    from PIL import Image

    run = make_eval_run(eval_root, "20261126-100000-detection", "detection", "2026-11-26T10:00:00+00:00")
    Image.new("RGB", (1500, 1000), (250, 250, 250)).save(run / "plots" / "pr_curve.png")   # ultralytics' size
    Image.new("RGB", (600, 450), (240, 240, 255)).save(run / "plots" / "confusion_matrix.png")
    window.resize(1100, 700)
    window.tabs.setCurrentWidget(window.eval_view)
    view = window.eval_view
    qtbot.waitUntil(lambda: view.run_list.count() == 3, timeout=5000)
    view.select_run(0)
    qtbot.wait(50)
    assert not any(dock.isVisible() for dock in window.findChildren(QDockWidget))   # the tab gets the window
    header = view.class_table.horizontalHeader()
    metrics = header.fontMetrics()
    for column in range(view.class_table.columnCount()):
        item = view.class_table.horizontalHeaderItem(column)
        assert header.sectionSize(column) >= metrics.horizontalAdvance(item.text()), item.text()   # not "ecision ("
        assert item.toolTip()
    assert "TP / (TP + FP)" in view.class_table.horizontalHeaderItem(1).toolTip()
    summary = view.summary_table
    assert summary.columnWidth(0) >= summary.fontMetrics().horizontalAdvance("Precision (P)")

    sizes = {name: label.pixmap().size() for name, label in view.plot_widgets}
    assert (sizes["pr curve"].width(), sizes["pr curve"].height()) == (1500, 1000)           # natural size
    assert (sizes["confusion matrix"].width(), sizes["confusion matrix"].height()) == (600, 450)
    qtbot.waitUntil(lambda: view.plots_area.horizontalScrollBar().maximum() > 0, timeout=5000)   # it scrolls
    window.resize(1400, 900)
    qtbot.wait(20)
    assert view.plot_widgets[0][1].pixmap().width() == 1500                                  # whatever the window
    view.zoom_plots(1.25)
    assert view.plot_widgets[0][1].pixmap().width() == 1875 and view.zoom_label.text() == "125 %"
    wheel = QWheelEvent(QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.plots_area.viewport(), wheel)                               # Ctrl+wheel zooms out
    assert view.plot_widgets[0][1].pixmap().width() == 1500
    view.fit_plots()
    assert view.plot_widgets[0][1].pixmap().width() < 1500
    view.set_plot_zoom(1.0)


def test_10_settings_show_the_weights_measured_metrics(qtbot, window):
    window.settings.detector = window.settings.classifier = None   # the manifest's default (shipped) weights
    dialog = window.open_settings()
    qtbot.waitExposed(dialog)
    manifest = Manifest.load()
    detector = manifest.default("detect")
    table = dialog.detector.metrics_table
    pooled = detector.metrics["test"]["pooled"]
    assert table.cell_text("test · pooled", "ap50") == f"{pooled['ap50']:.3f}"
    assert table.cell_text("test · pooled", "precision") == f"{pooled['precision']:.3f}"
    assert table.cell_text("test · bccd", "recall") == f"{detector.metrics['test']['bccd']['recall']:.3f}"
    assert table.table.rowCount() >= 4 and table.note.text().startswith("computed by: ")
    header = table.table.horizontalHeader()
    for column in range(table.table.columnCount()):
        text = table.table.horizontalHeaderItem(column).text()
        assert header.sectionSize(column) >= header.fontMetrics().horizontalAdvance(text), text
    classifier = manifest.default("classify")
    ctable = dialog.classifier.metrics_table
    assert ctable.cell_text("test", "accuracy") == f"{classifier.metrics['test']['accuracy']:.3f}"
    assert ctable.cell_text("test", "roc_auc") == f"{classifier.metrics['test']['roc_auc']:.3f}"
    # a group without blasts (PBC's healthy donors) has no blast precision or recall: "–", never 0.000
    groups = classifier.metrics["test_groups"]
    assert groups["pbc/healthy"]["n_blast"] == 0
    assert ctable.cell_text("test_groups · pbc/healthy", "precision") == "–"
    assert ctable.cell_text("test_groups · pbc/healthy", "specificity") == f"{groups['pbc/healthy']['specificity']:.3f}"
    assert ctable.cell_text("test_groups · allidb1_olympus/ALL", "recall") == \
        f"{groups['allidb1_olympus/ALL']['recall']:.3f}"
    dialog.reject()


def test_eval_tab_shows_every_number_per_group(qtbot, window, eval_root, make_eval_run):
    """A classifier run's per-group numbers (lab / camera / diagnosis) are shown, not only the pooled ones; a group
    without blasts has no blast precision ("–")."""
    import json

    run = make_eval_run(eval_root, "20261126-120000-classifier", "classifier", "2026-11-26T12:00:00+00:00")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["per_group"] = {
        "allidb1_olympus/ALL": {"n": 26, "n_blast": 16, "accuracy": 0.846, "precision": 0.929, "recall": 0.812,
                                "specificity": 0.9},
        "pbc/healthy": {"n": 409, "n_blast": 0, "accuracy": 1.0, "precision": 0.0, "recall": 0.0, "specificity": 1.0}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    window.tabs.setCurrentWidget(window.eval_view)
    view = window.eval_view
    qtbot.waitUntil(lambda: view.run_list.count() == 3, timeout=5000)
    view.select_run(0)
    assert view.group_box.isVisibleTo(view)
    table = view.group_table
    assert table.cell_text("allidb1_olympus/ALL", "recall") == "0.812"
    assert table.cell_text("pbc/healthy", "specificity") == "1.000"
    assert table.cell_text("pbc/healthy", "precision") == "–"
    view.select_run(1)                                    # a run without groups: no stale table
    assert not view.group_box.isVisibleTo(view)


def test_eval_tab_shows_a_comparison_run_by_run_with_mcnemar(qtbot, window, eval_root, make_eval_run):
    """A `workbench compare` run: one row per trained network (and detector) with McNemar's p against the
    reference; the reference itself has none."""
    import json

    run = make_eval_run(eval_root, "20261126-130000-comparison", "classifier", "2026-11-26T13:00:00+00:00")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["kind"] = "comparison"
    metrics["comparison"] = {
        "reference": "b3_dwell",
        "rows": [{"run": "b3_dwell", "params": 10698306, "f1": 0.704, "f1_low": 0.6, "f1_high": 0.79, "n": 120},
                 {"run": "resnet50", "params": 23512130, "f1": 0.867, "f1_low": 0.8, "f1_high": 0.92, "n": 120}],
        "mcnemar": [{"run": "resnet50", "reference": "b3_dwell", "p_value": 0.0213}],
        "detectors": [{"run": "yolov8n", "ap50": 0.322, "ms_per_image": 124.5}]}
    (run / "metrics.json").write_text(json.dumps(metrics))
    window.tabs.setCurrentWidget(window.eval_view)
    view = window.eval_view
    qtbot.waitUntil(lambda: view.run_list.count() == 3, timeout=5000)
    view.select_run(0)
    table = view.group_table
    assert "b3_dwell" in view.group_title.text()
    assert table.cell_text("resnet50", "mcnemar_p") == "0.021" and table.cell_text("b3_dwell", "mcnemar_p") == "–"
    assert table.cell_text("resnet50", "f1") == "0.867" and table.cell_text("yolov8n", "ap50") == "0.322"
    assert table.cell_text("resnet50", "params") == "23512130"


def test_small_numbers_are_not_shown_as_zero():
    from workbench.gui.metric_text import format_value

    assert format_value(3.2e-06) == "3.2e-06" and format_value(0.0) == "0.000" and format_value(0.0213) == "0.021"
