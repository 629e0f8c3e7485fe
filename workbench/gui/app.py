"""QApplication set-up and the GUI entry point (`workbench gui`, or `workbench` without arguments)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
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


def _weights_line(settings) -> tuple[str, bool]:
    """Which weights the window will analyse with, checked as analysis checks them (manifest sha256)."""
    from workbench.core.errors import WorkbenchError
    from workbench.app.weights import resolve_weights

    parts, ok = [], True
    for what, spec, task in (("detector", settings.detector, "detect"), ("classifier", settings.classifier,
                                                                         "classify")):
        try:
            resolved = resolve_weights(spec, task)
            name = resolved.entry.name if resolved.entry else resolved.path.name
            parts.append(f"{what} {name} (sha256 {resolved.sha256[:12]})")
        except WorkbenchError as exc:
            parts.append(f"{what}: {exc}")
            ok = False
    return "; ".join(parts), ok


HEAVY_MODULES = ("torch", "ultralytics", "cv2", "torchvision", "workbench.app.pipeline", "numpy")


def model_modules() -> str:
    """The model and array libraries loaded in this process (the window starts without them): '-' for none."""
    return ",".join(m for m in HEAVY_MODULES if m in sys.modules) or "-"


class _FirstPaint(QObject):
    """Calls `done()` once, when the window has painted for the first time (it is visible with its content)."""

    def __init__(self, window, done) -> None:
        super().__init__(window)
        self.done = done
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Paint and self.done is not None:
            done, self.done = self.done, None
            QTimer.singleShot(0, done)           # after this paint has reached the screen
        return False


def _exit_when_shown(app: QApplication, window, timeout_s: float, image: bool = True) -> None:
    """`--exit-after-shown`: once the first image's pixels are in the view (or failed), print one line saying what
    is shown and with which weights, then quit: 0 shown, 1 not shown (or nothing within `timeout_s`). Without an
    image to open: once the window has painted, print its size and the model libraries loaded ('-': none) and
    quit with 0 (the start-up bench times this)."""

    def report(path: str) -> None:
        image = window.current_image
        weights, weights_ok = _weights_line(window.settings)
        if image is None or image.isNull():
            print(f"not shown: {path}; {weights}", flush=True)
            app.exit(1)
            return
        print(f"shown: {path} ({image.width()}x{image.height()}), {len(window.model.records)} images open; "
              f"{weights}", flush=True)
        app.exit(0 if weights_ok else 1)

    def give_up() -> None:
        print(f"not shown: no image was shown within {timeout_s:g} s", flush=True)
        app.exit(1)

    def window_shown() -> None:
        print(f"shown: window {window.width()}x{window.height()}; heavy modules loaded: {model_modules()}",
              flush=True)
        app.exit(0)

    if image:
        window.imageShown.connect(report)
    else:
        _FirstPaint(window, window_shown)
    QTimer.singleShot(int(timeout_s * 1000), give_up)


def run_gui(paths: Sequence[str | Path] = (), detector: str | None = None, classifier: str | None = None,
            eval_root: Path | None = None, exit_after_shown: bool = False) -> int:
    """Open the main window (on `paths`, if any) and run the event loop; returns the exit code.
    `detector` / `classifier` (a manifest name or a .pt path) override the saved settings for this session.
    `exit_after_shown` quits once the first image is in the view (the start-up smoke test of scripts/run.sh)."""
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
    if exit_after_shown:
        _exit_when_shown(app, window, timeout_s=60.0, image=bool(paths))
    window.show()
    if paths:
        window.open_paths(paths)
    return app.exec()
