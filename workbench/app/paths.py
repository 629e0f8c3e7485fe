"""Where the app finds its folders: shipped weights, evaluation runs and the real datasets.

Run from a source checkout (the repository, installed editable or not installed at all), everything lives in the
repository as before: `weights/`, `runs/eval/`, `../shared/datasets`. Installed from a wheel (`pip install .`),
the package carries the shipped weights as package data (`workbench/shipped_weights/`, built from `weights/`) and
writes its runs to the user's data folder, never into site-packages. Each folder can be moved by the `paths:`
section of a settings file (`--config`), else by an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # the `workbench` package
_CHECKOUT = PACKAGE_DIR.parent
MANIFEST_NAME = "manifest.yaml"


def source_checkout() -> Path | None:
    """The repository root when the code runs from a checkout (it holds pyproject.toml and this package), else
    None (an installed wheel: the parent folder is site-packages)."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "workbench" / "__init__.py").is_file():
        return _CHECKOUT
    return None


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "smear-workbench"


def _chosen(configured: str | Path | None, variable: str) -> Path | None:
    """The folder a setting names, else the one the environment variable names, else None (the default applies)."""
    value = configured or os.environ.get(variable)
    return Path(value).expanduser() if value else None


def cases_dir() -> Path:
    """Where the cases of image folders are kept (workbench.app.case): `SMEAR_CASES_DIR`, else
    `<user data>/cases` (never the image folders themselves, which are often shared or read-only data)."""
    return _chosen(None, "SMEAR_CASES_DIR") or user_data_dir() / "cases"


def weights_dir(configured: str | Path | None = None) -> Path:
    """The `paths.weights` setting, else `SMEAR_WEIGHTS_DIR`, else the checkout's `weights/`, else the weights
    installed with the package."""
    chosen = _chosen(configured, "SMEAR_WEIGHTS_DIR")
    if chosen:
        return chosen
    checkout = source_checkout()
    if checkout is not None and (checkout / "weights" / MANIFEST_NAME).is_file():
        return checkout / "weights"
    return PACKAGE_DIR / "shipped_weights"


def eval_runs_dir(configured: str | Path | None = None) -> Path:
    """The `paths.eval_runs` setting, else `SMEAR_EVAL_RUNS`, else the checkout's `runs/eval/`, else
    `<user data>/runs/eval`."""
    return _chosen(configured, "SMEAR_EVAL_RUNS") or (source_checkout() or user_data_dir()) / "runs" / "eval"


def datasets_dir(configured: str | Path | None = None) -> Path:
    """The `paths.datasets` setting, else `SMEAR_DATASETS`, else `../shared/datasets` beside the checkout (or beside
    the working folder)."""
    return _chosen(configured, "SMEAR_DATASETS") or (source_checkout() or Path.cwd()).parent / "shared" / "datasets"
