"""Screenshots of the real windows (offscreen `grab()`): the main window with an analysed BCCD image (boxes, counts,
gallery, cell details) and the evaluation view with a run. They are saved in the test's tmp folder and, when
SMEAR_SCREENSHOT_DIR is set, there too, so a person can look at them:

    SMEAR_SCREENSHOT_DIR=/tmp/gui_shots .venv/bin/python -m pytest tests/gui/test_gui_screenshots.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402



def save(widget, name: str, tmp_path: Path) -> list[Path]:
    pixmap = widget.grab()
    targets = [tmp_path / "screenshots" / name]
    if os.environ.get("SMEAR_SCREENSHOT_DIR"):
        targets.append(Path(os.environ["SMEAR_SCREENSHOT_DIR"]) / name)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        assert pixmap.save(str(target), "PNG"), target
    return targets


def distinct_colours(path: Path, step: int = 7) -> int:
    image = QImage(str(path))
    return len({image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)})


def test_screenshots_of_main_window_and_eval_view(qtbot, window, bccd_root, tmp_path, open_and_wait, analyse_and_wait):
    images = sorted((bccd_root / "JPEGImages").glob("BloodImage_*.jpg"))[:4]
    open_and_wait(window, images)
    window.metadata.sample_edit.setText("P-000")
    window.metadata.sample_edit.editingFinished.emit()
    window.metadata.folder_button.click()
    analyse_and_wait(window, lambda: window.analyse_records(window.model.records[:3]))
    window.set_threshold(0.0)
    record = window.model.current
    assert record.analysed and window.visible_count == len(record.result.cells) > 0
    first = window.gallery.shown_ids()[0]
    window.gallery.cellActivated.emit(first)
    window.view.fit()
    qtbot.wait(50)
    [main_png, *_] = save(window, "main_window.png", tmp_path)
    shot = QImage(str(main_png))
    assert (shot.width(), shot.height()) == (window.width(), window.height())
    assert distinct_colours(main_png) > 200            # an image, boxes and text, not a blank window
    # the boxes are drawn: the blast colour appears in the view's part of the screenshot
    origin = window.view.mapTo(window, QPoint(0, 0))
    blast = QColor(230, 40, 40).rgb()
    found = any(shot.pixel(origin.x() + x, origin.y() + y) == blast
                for x in range(0, window.view.width()) for y in range(0, window.view.height(), 3))
    assert found

    window.tabs.setCurrentWidget(window.eval_view)
    qtbot.waitUntil(lambda: window.eval_view.run_list.count() == 2, timeout=5000)
    window.eval_view.select_run(1)                     # the detection run: per-class table and PR curve
    qtbot.wait(50)
    [eval_png, *_] = save(window, "eval_view.png", tmp_path)
    assert distinct_colours(eval_png) > 20

    dialog = window.open_settings()
    qtbot.waitExposed(dialog)
    save(dialog, "settings_dialog.png", tmp_path)
    dialog.reject()
