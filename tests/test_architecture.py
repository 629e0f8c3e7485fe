"""Model code and the pipeline stay Qt-free, and model packages do not depend on the app (import-linter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    proc = subprocess.run([Path(sys.executable).parent / "lint-imports", "--no-cache"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken" in proc.stdout


def test_detection_and_classification_import_without_qt_or_torch():
    code = ("import sys, detection, classification, workbench.results, workbench.images; "
            "bad = [m for m in ('PySide6', 'torch', 'ultralytics') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
