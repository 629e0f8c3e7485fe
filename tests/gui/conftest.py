"""Fixtures of the GUI tests (tests/gui/): an isolated QSettings file, GUI settings with the tiny real models, a
window, an evaluation run folder written by hand in the `metrics.json` layout of workbench.app.eval_store, and the
waiting helpers (`open_and_wait`, `analyse_and_wait`, `make_eval_run` are fixtures that return the helper, so no test
module imports from another). tests/conftest.py's fixtures (tiny_detector, tiny_classifier, bccd_root, ...) apply
here too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_png(path: Path, width: int = 320, height: int = 240, colour=(40, 90, 200)) -> Path:
    """A small real PNG (a plot stand-in): a coloured diagonal on white."""
    import numpy as np
    from PIL import Image

    array = np.full((height, width, 3), 255, np.uint8)
    for x in range(width):
        y = int((height - 1) * (1 - x / (width - 1)))
        array[max(0, y - 2):y + 2, x] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_eval_run(root: Path, name: str, kind: str = "detection", created: str = "2026-11-24T10:00:00+00:00") -> Path:
    folder = root / name
    plots = {}
    if kind == "detection":
        summary = {"precision": 0.912, "recall": 0.874, "ap50": 0.931, "ap50_95": 0.702, "images": 72,
                   "instances": 75}
        per_class = {"wbc": {"precision": 0.912, "recall": 0.874, "ap50": 0.931, "ap50_95": 0.702}}
        plots = {"pr_curve": "plots/pr_curve.png", "confusion_matrix": "plots/confusion_matrix.png"}
    elif kind == "classifier":
        summary = {"accuracy": 0.9, "precision": 0.88, "recall": 0.93, "specificity": 0.87, "f1": 0.904,
                   "roc_auc": 0.955}
        per_class = {"blast": {"precision": 0.88, "recall": 0.93, "support": 130},
                     "normal": {"precision": 0.92, "recall": 0.87, "support": 130}}
        plots = {"roc_curve": "plots/roc_curve.png", "confusion_matrix": "plots/confusion_matrix.png"}
    else:
        raise ValueError(kind)
    for rel in plots.values():
        write_png(folder / rel)
    metrics = {"kind": kind, "created": created, "workbench_version": "0.1.0",
               "weights": {"name": f"{kind}-tiny", "path": "/x.pt", "sha256": "ab" * 32},
               "data": "bccd", "split": "test", "thresholds": {"conf": 0.25, "iou": 0.5},
               "summary": summary, "per_class": per_class, "plots": plots, "tables": {}}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return folder


@pytest.fixture(autouse=True)
def cases_dir(tmp_path, monkeypatch) -> Path:
    """Each test keeps its cases (workbench.app.case) in its own folder: a case saved by one test never opens in
    another, and none reaches the user's data folder."""
    folder = tmp_path / "cases"
    monkeypatch.setenv("SMEAR_CASES_DIR", str(folder))
    return folder


@pytest.fixture()
def store(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture()
def gui_settings(tiny_detector, tiny_classifier):
    """The tiny real models with the test threshold that makes them give boxes (as tests/conftest.tiny_config)."""
    from workbench.gui.settings_dialog import GuiSettings

    settings = GuiSettings.defaults()
    settings.detector, settings.classifier = str(tiny_detector), str(tiny_classifier)
    # up to 40 boxes: the tiny detector's top 15 all have the same confidence, 40 gives two levels to filter
    settings.det_conf, settings.max_det, settings.classifier_batch = 0.0001, 40, 16
    settings.nested_ios = None      # the untrained detector's boxes nest; merging is tested on real data (issue 17)
    settings.min_cell_um = None     # its boxes are of any size; the width rule is tested on real data
    return settings


@pytest.fixture()
def eval_root(tmp_path) -> Path:
    root = tmp_path / "runs" / "eval"
    make_eval_run(root, "20261124-100000-detection", "detection", "2026-11-24T10:00:00+00:00")
    make_eval_run(root, "20261124-110000-classifier", "classifier", "2026-11-24T11:00:00+00:00")
    return root


@pytest.fixture()
def make_window(qtbot, gui_settings, store, eval_root):
    """`make_window()`: a shown window with the tiny models on the test's settings store; a second call is the app
    started again (same settings, recent list and cases)."""

    def make():
        from workbench.gui.main_window import MainWindow

        win = MainWindow(settings=gui_settings, store=store, eval_root=eval_root)
        qtbot.addWidget(win)
        win.resize(1440, 900)
        win.show()
        qtbot.waitExposed(win)
        return win

    return make


@pytest.fixture()
def window(make_window):
    return make_window()


@pytest.fixture()
def plain_window(qtbot, tmp_path):
    """A window with the default settings (no test models) and operator "dr-test"."""
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow
    from workbench.gui.settings_dialog import GuiSettings

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("annotation/operator", "dr-test")
    win = MainWindow(settings=GuiSettings.defaults(), store=settings, eval_root=tmp_path / "no-runs")
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture()
def open_and_wait(qtbot):
    """`open_and_wait(win, paths)`: open images and wait until the current one's pixels are in the view."""

    def run(win, paths) -> None:
        with qtbot.waitSignal(win.imageShown, timeout=20_000):
            win.open_paths(paths)

    return run


@pytest.fixture()
def analyse_and_wait(qtbot):
    """`analyse_and_wait(win, start, timeout)`: start an analysis (`start()` must return True) and wait for it to
    end; returns [cancelled]."""

    def run(win, start, timeout: int = 120_000) -> list:
        with qtbot.waitSignal(win.analysisFinished, timeout=timeout) as blocker:
            assert start()
        return blocker.args

    return run


@pytest.fixture(name="make_eval_run")
def make_eval_run_fixture():
    """`make_eval_run(root, name, kind, created)`: one evaluation run folder written by hand."""
    return make_eval_run
