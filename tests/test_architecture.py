"""The floors hold (import-linter: layers, Qt only in the GUI, no import circles), and the lower floors import
without Qt or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    proc = subprocess.run([Path(sys.executable).parent / "lint-imports", "--no-cache"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken" in proc.stdout


def test_detection_and_classification_import_without_qt_or_torch():
    code = ("import sys, detection, classification, workbench.app.results, workbench.core.images; "
            "bad = [m for m in ('PySide6', 'torch', 'ultralytics') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_import_goes_through_importlib_to_dodge_the_floors():
    """The floors are only worth something if the linter sees every import: no importlib tricks in the package."""
    offenders = [str(p.relative_to(REPO)) for package in ("workbench", "detection", "classification")
                 for p in (REPO / package).rglob("*.py") if "importlib.import_module(" in p.read_text()]
    allowed = {"classification/__init__.py"}   # lazy attribute access to its own submodules (PEP 562)
    assert set(offenders) <= allowed, offenders


def test_the_launcher_parser_imports_no_model_code():
    code = ("import sys, workbench.launch; workbench.launch.cli_main.__module__; "
            "from workbench.cli import build_parser; build_parser(); "
            "bad = [m for m in ('PySide6', 'torch', 'ultralytics', 'cv2') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def _sources():
    return [p for package in ("workbench", "detection", "classification") for p in (REPO / package).rglob("*.py")]


def test_modules_and_classes_stay_small():
    """A module of one purpose reads in one sitting: no module over ~600 lines, no class over ~400."""
    import ast

    long_modules, long_classes = [], []
    for path in _sources():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(REPO)} ({len(text.splitlines())})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long_classes.append(f"{path.relative_to(REPO)}:{node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long_modules and not long_classes, (long_modules, long_classes)


def test_no_copy_of_the_settings_defaults_outside_the_yaml():
    """The defaults live in cfg/default.yaml only: the GUI's settings start from it, not from literals of their own."""
    from dataclasses import fields

    from workbench.gui.settings_dialog import GuiSettings

    assert all(f.default is None for f in fields(GuiSettings))


def test_tests_mirror_the_packages():
    """tests/<floor or package>/: a newcomer finds a module's tests where the module lives."""
    top = sorted(p.name for p in (REPO / "tests").glob("test_*.py"))
    assert top == ["test_architecture.py"], top
    assert {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "__"))} \
        == {"app", "builders", "classification", "cli", "core", "detection", "fuzz", "gui"}


def test_test_files_have_unique_names():
    """pytest's default (prepend) import mode imports test modules by basename: two
    tests/<floor>/test_x.py files stop collection in a fresh clone."""
    from collections import Counter

    counts = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert [name for name, n in counts.items() if n > 1] == []
