"""The `workbench` program itself starts the window without the model libraries (issue 16, item 8: the launcher used
to import torch while building its parser, so the window came 4.3 s after launch and the idle app held 1 GB). The
time to the window is measured by bench/gui_startup_bench.py (a timed test fails on a busy machine); this checks
what makes it fast: nothing of torch, ultralytics, torchvision, OpenCV or numpy is loaded when the window has
painted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_workbench_command_paints_its_window_without_model_libraries(tmp_path):
    script = Path(sys.executable).parent / "workbench"          # the console script a user runs
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "workbench.launch"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "SMEAR_CASES_DIR": str(tmp_path / "cases")}
    proc = subprocess.run([*command, "gui", "--exit-after-shown"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("shown: window"), proc.stdout
    assert proc.stdout.strip().endswith("heavy modules loaded: -"), proc.stdout      # nor numpy
    assert not (tmp_path / "cases").exists()                      # looking makes no case


def test_the_window_path_parses_only_the_window_options():
    """`workbench` / `workbench gui ...` never import the other commands' modules (their parsers pull in data and
    training code); every other command still gets the full command line."""
    code = ("import sys, workbench.launch as l; a = l.window_args(['gui', 'x.jpg', '--detector', 'd.pt']); "
            "b = l.window_args([]); c = l.window_args(['analyze', 'x']); "
            "loaded = [m for m in ('workbench.cli.train', 'workbench.cli.analyze', 'workbench.cli.dataset', "
            "'workbench.app.weights', 'classification', 'numpy', 'PySide6') if m in sys.modules]; "
            "print(a.paths, a.detector, b.command, c, loaded)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['x.jpg'] d.pt gui None []", proc.stdout
