"""Settings values are checked like ultralytics' check_cfg: one `error:` line and exit code 2 for a bad value, from
the command line or from a --config YAML; never a traceback or a silently empty result."""

from __future__ import annotations

import math

import pytest
import yaml

from workbench.cli import EXIT_ERROR, main
from workbench.app.config import DEFAULT_CONFIG_PATH, Settings, load_config, schema, with_overrides
from workbench.core.errors import ConfigError

SAMPLE = "datasets/sample/images"


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_default_has_a_check_and_the_defaults_pass():
    defaults = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert set(_leaves(defaults)) == set(schema())
    assert Settings.from_dict(defaults).to_dict() == defaults


def test_every_default_is_documented_in_the_yaml():
    """The defaults file is the settings' documentation: every key carries a `# description`."""
    lines = [line for line in DEFAULT_CONFIG_PATH.read_text().splitlines() if line.startswith("  ")]
    assert lines and all("#" in line for line in lines), [line for line in lines if "#" not in line]


def test_settings_are_typed_and_read_only():
    import dataclasses

    config = load_config()
    assert isinstance(config.detector.conf, float) and isinstance(config.detector.imgsz, int)
    assert config["detector"]["conf"] == config.detector.conf        # read-only dict view of a section
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.detector.conf = "abc"                                  # a value can only change through the checks
    changed = with_overrides(config, {"detector": {"conf": 0.5}})
    assert changed.detector.conf == 0.5 and config.detector.conf == load_config().detector.conf
    with pytest.raises(ConfigError, match="detector.conf"):
        with_overrides(config, {"detector": {"conf": 3}})


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("option, value, message", [
    ("--conf", "5", "fraction in [0, 1]"),
    ("--conf", "-1", "fraction in [0, 1]"),
    ("--conf", "2", "fraction in [0, 1]"),
    ("--conf", "nan", "finite"),
    ("--conf", "abc", "invalid float value"),
    ("--iou", "5", "fraction in (0, 1]"),
    ("--iou", "0", "fraction in (0, 1]"),
    ("--imgsz", "0", "at least 32"),
    ("--imgsz", "-640", "at least 32"),
    ("--imgsz", "100", "multiple of 32"),
    ("--device", "bogus", "cpu, cuda"),
    ("--max-pixels", "0", "at least 1"),
    ("--max-pixels", "-1", "at least 1"),
])
def test_bad_cli_values_are_one_line_exit_2(capsys, tmp_path, option, value, message):
    code, err = _run(capsys, "analyze", SAMPLE, "--out", str(tmp_path / "o"), option, value)
    assert code == EXIT_ERROR
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_argparse_errors_exit_2_with_one_line(capsys, tmp_path):
    code = main(["analyze", SAMPLE, "--out", str(tmp_path), "--imgsz", "big"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR and len(err.splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("yaml_text, message", [
    ("detector:\n  conf: null\n", "'detector.conf' must be a number, not null"),
    ("detector:\n  conf: abc\n", "'detector.conf' must be a number, not 'abc'"),
    ("detector:\n  conf: true\n", "'detector.conf' must be a number"),
    ("detector:\n  conf: .nan\n", "finite"),
    ("detector:\n  imgsz: 640.5\n", "'detector.imgsz' must be an integer"),
    ("detector:\n  max_det: '10'\n", "'detector.max_det' must be an integer"),
    ("classifier:\n  batch: 0\n", "'classifier.batch=0' must be at least 1"),
    ("classifier:\n  margin: -1\n", "out of range"),
    ("images:\n  max_pixels: null\n", "'images.max_pixels' must be an integer, not null"),
    ("images:\n  extensions: jpg\n", "list of file extensions"),
    ("output:\n  png: 'yes'\n", "'output.png' must be true or false"),
    ("tiling:\n  mode: sometimes\n", "auto, on, off"),
    ("tiling:\n  overlap: 0.95\n", "out of range"),
    ("detector:\n  nope: 1\n", "unknown config key 'detector.nope'"),
    ("[1, 2]\n", "must be a YAML mapping"),
    ("detector: {conf: [\n", "cannot read config"),
])
def test_bad_yaml_values_are_one_line_exit_2(capsys, tmp_path, yaml_text, message):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml_text)
    code, err = _run(capsys, "analyze", SAMPLE, "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert code == EXIT_ERROR
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err


def test_values_are_normalised_and_typed(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("detector:\n  imgsz: 640.0\n  conf: 1\n  device: CUDA:0\nimages:\n  extensions: [.JPG]\n")
    config = load_config(cfg)
    assert config.detector.imgsz == 640 and isinstance(config.detector.imgsz, int)
    assert config.detector.conf == 1.0 and isinstance(config.detector.conf, float)
    assert config.detector.device == "cuda:0"
    assert config.images.extensions == [".jpg"]


def test_overrides_are_checked_too():
    with pytest.raises(ConfigError, match="finite"):
        load_config(overrides={"detector": {"conf": math.inf}})


@pytest.mark.parametrize("argv, message", [
    (["eval", "classifier", "--data", "x", "--threshold", "1.5"], "number in [0, 1]"),
    (["eval", "classifier", "--data", "x", "--batch", "0"], "positive integer"),
    (["train", "detector", "--data", "x.yaml", "--epochs", "0"], "positive integer"),
    (["dataset", "crops", "--out", "x", "--limit", "-3"], "positive integer"),
])
def test_other_commands_refuse_bad_numbers(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR and len(err.splitlines()) == 1 and message in err


def test_paths_section_moves_the_eval_runs_and_datasets(capsys, tmp_path):
    """`paths:` in a --config file: eval runs are listed from (and saved to) that folder; datasets are read there."""
    runs = tmp_path / "my-runs"
    cfg = tmp_path / "paths.yaml"
    cfg.write_text(f"paths:\n  eval_runs: {runs}\n  datasets: {tmp_path / 'nowhere'}\n")
    assert main(["eval", "list", "--config", str(cfg)]) == 0
    assert f"no eval runs in {runs}" in capsys.readouterr().out
    code = main(["dataset", "bccd", "--out", str(tmp_path / "o"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and f"datasets folder not found: {tmp_path / 'nowhere'}" in err


def test_paths_weights_folder_is_the_manifest_used(tmp_path):
    from workbench.app.pipeline import SmearAnalyzer
    from workbench.core.errors import WeightsError

    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(WeightsError, match=str(empty)):
        SmearAnalyzer.from_config(load_config(overrides={"paths": {"weights": str(empty)}}))
