"""The README's two set-up commands and a plain (non-editable) install, run for real.

`bash scripts/run.sh` is what every new user types first; it broke once without any test noticing (`.[]` is not a
valid requirement). Here it runs end to end: install into .venv, open the window offscreen on the bundled sample
with the shipped weights, quit by itself once the first image is shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_names() -> tuple[str, str]:
    manifest = yaml.safe_load((REPO_ROOT / "weights" / "manifest.yaml").read_text())["weights"]
    pick = {task: next(e["name"] for e in manifest if e["task"] == task and e.get("default")) for task in
            ("detect", "classify")}
    return pick["detect"], pick["classify"]


def test_run_sh_installs_and_shows_the_sample(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           # a clean settings store: the shipped defaults, not whatever a developer picked in the settings dialog
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.run(["bash", "scripts/run.sh", "--exit-after-shown"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    shown = [line for line in proc.stdout.splitlines() if line.startswith("shown: ")]
    assert len(shown) == 1, out[-3000:]
    detector, classifier = _default_names()
    assert shown[0].startswith("shown: datasets/sample/images/BloodImage_00016.jpg (640x480), 4 images open")
    assert f"detector {detector} (sha256" in shown[0] and f"classifier {classifier} (sha256" in shown[0]


def test_every_package_is_in_the_wheel_list():
    """pyproject lists its packages by hand (to map weights/ into the package); a new package must be added there."""
    from setuptools import find_namespace_packages

    listed = set(yaml.safe_load("[" + _pyproject_packages() + "]"))
    found = {p for p in find_namespace_packages(str(REPO_ROOT), include=["workbench*", "detection*", "classification*"])
             if (REPO_ROOT / p.replace(".", "/")).is_dir()
             and any((REPO_ROOT / p.replace(".", "/")).glob("*.py")) or p == "workbench.cfg"}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def _pyproject_packages() -> str:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    start = text.index("packages = [") + len("packages = [")
    return text[start:text.index("]", start)].replace("\n", " ")


@pytest.mark.slow
def test_wheel_install_analyses_the_sample_with_the_shipped_weights(tmp_path):
    """`pip install .` (a wheel, not editable) carries the shipped weights as package data and finds them outside
    the repository. The wheel is built from the tracked files; its dependencies come from this .venv (a .pth line),
    so nothing is downloaded."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO_ROOT / name).read_bytes())
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("smear_workbench-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "zz_smear_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True)

    work = tmp_path / "elsewhere"   # not the repository: nothing may be found through the working folder
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMEAR_")} | {"HOME": str(tmp_path / "home")}
    where = subprocess.run([str(python), "-c", "import workbench, workbench.app.paths as p; "
                            "print(workbench.__file__); print(p.weights_dir())"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(purelib)) and where[1] == str(purelib / "workbench" / "shipped_weights")

    out = tmp_path / "out"
    proc = subprocess.run([str(venv / "bin" / "workbench"), "analyze", str(REPO_ROOT / "datasets" / "sample" / "images"),
                           "--out", str(out), "--no-png"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    detector, classifier = _default_names()
    assert results["n_images"] == 4 and results["n_failed"] == 0 and results["totals"]["wbc"] >= 4
    first = results["images"][0]
    assert first["detector"]["name"] == detector and first["classifier"]["name"] == classifier
    assert first["detector"]["path"].startswith(str(purelib))
