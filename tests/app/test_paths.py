"""Where the app's folders come from: the setting first, then the environment variable, then the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.app import paths

FOLDERS = [(paths.weights_dir, "SMEAR_WEIGHTS_DIR"), (paths.eval_runs_dir, "SMEAR_EVAL_RUNS"),
           (paths.datasets_dir, "SMEAR_DATASETS")]


@pytest.mark.parametrize("folder_of, variable", FOLDERS)
def test_setting_beats_variable_beats_default(folder_of, variable, tmp_path, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    default = folder_of()
    monkeypatch.setenv(variable, str(tmp_path / "from-env"))
    assert folder_of() == tmp_path / "from-env"
    assert folder_of(tmp_path / "from-setting") == tmp_path / "from-setting"
    assert folder_of("") == tmp_path / "from-env"          # an empty setting is no setting
    monkeypatch.setenv(variable, "")
    assert folder_of() == default                          # nor is an empty variable


def test_defaults_in_a_checkout(monkeypatch):
    for _, variable in FOLDERS:
        monkeypatch.delenv(variable, raising=False)
    checkout = paths.source_checkout()
    assert checkout is not None and (checkout / "pyproject.toml").is_file()
    assert paths.weights_dir() == checkout / "weights"
    assert paths.eval_runs_dir() == checkout / "runs" / "eval"
    assert paths.datasets_dir() == checkout.parent / "shared" / "datasets"


def test_home_is_expanded_and_cases_follow_their_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.weights_dir("~/w") == tmp_path / "w"
    monkeypatch.setenv("SMEAR_CASES_DIR", "~/cases")
    assert paths.cases_dir() == tmp_path / "cases"
    monkeypatch.delenv("SMEAR_CASES_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert paths.cases_dir() == Path(tmp_path / "data" / "smear-workbench" / "cases")


def test_the_weights_folder_is_resolved_when_the_manifest_is_read(tmp_path, monkeypatch):
    """SMEAR_WEIGHTS_DIR set after the app was imported (a launcher, a test, a long-lived GUI) still applies."""
    from workbench.app.weights import Manifest

    assert Manifest.load().folder == paths.weights_dir()
    monkeypatch.setenv("SMEAR_WEIGHTS_DIR", str(tmp_path / "site-models"))
    manifest = Manifest.load()
    assert manifest.folder == tmp_path / "site-models" and manifest.entries == []
