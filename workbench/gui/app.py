"""QApplication set-up and the GUI entry point (`workbench gui`, or `workbench` without arguments)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ORGANIZATION = "SmearWorkbench"
APPLICATION = "Smear Workbench"


def make_app(argv: Sequence[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    return app


def run_gui(paths: Sequence[str | Path] = (), detector: str | None = None, classifier: str | None = None,
            eval_root: Path | None = None) -> int:
    """Open the main window (on `paths`, if any) and run the event loop; returns the exit code.
    `detector` / `classifier` (a manifest name or a .pt path) override the saved settings for this session."""
    app = make_app()
    from workbench.gui.main_window import MainWindow
    from workbench.gui.settings_dialog import load_settings

    store = QSettings()
    settings = load_settings(store)
    if detector:
        settings.detector = detector
    if classifier:
        settings.classifier = classifier
    window = MainWindow(settings=settings, store=store, eval_root=eval_root)
    window.show()
    if paths:
        window.open_paths(paths)
    return app.exec()
