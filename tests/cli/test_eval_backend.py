"""`workbench eval detection` and `eval classifier` with `--backend openvino` give the PyTorch numbers to the third
decimal (on a slice of BCCD's test split and of ALL-IDB2's cells, with the shipped weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import main


@pytest.fixture(scope="module")
def settings(exported_weights, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval_backend") / "settings.yaml"
    path.write_text(f"paths: {{weights: {exported_weights}}}\n")
    return path


def _eval(capsys, out: Path, *argv) -> dict:
    code = main([str(a) for a in (*argv, "--out", out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return json.loads((out / "metrics.json").read_text())


def _rounded(summary: dict) -> dict:
    return {k: round(v, 3) for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}


def test_eval_detection_numbers_do_not_depend_on_the_backend(capsys, settings, bccd_root, tmp_path):
    voc = tmp_path / "bccd_slice"
    ids = (bccd_root / "ImageSets" / "Main" / "test.txt").read_text().split()[:8]
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    for i in ids:
        (voc / "Annotations" / f"{i}.xml").symlink_to(bccd_root / "Annotations" / f"{i}.xml")
        (voc / "JPEGImages" / f"{i}.jpg").symlink_to(bccd_root / "JPEGImages" / f"{i}.jpg")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    metrics = {b: _eval(capsys, tmp_path / b, "eval", "detection", "--data", voc, "--split", "test", "--backend", b,
                        "--config", settings) for b in ("torch", "openvino")}
    assert metrics["openvino"]["weights"]["backend"] == "openvino" and metrics["torch"]["weights"]["backend"] == "torch"
    assert metrics["torch"]["summary"]["instances"] >= 8 and metrics["torch"]["summary"]["ap50"] > 0.5
    assert _rounded(metrics["openvino"]["summary"]) == _rounded(metrics["torch"]["summary"])


def test_eval_classifier_numbers_do_not_depend_on_the_backend(capsys, settings, tmp_path):
    from tests.conftest import ALLIDB2, need

    crops = tmp_path / "crops"
    files = sorted(need(ALLIDB2 / "img").glob("*.tif"))
    for label, suffix in (("blast", "_1.tif"), ("normal", "_0.tif")):
        (crops / label).mkdir(parents=True)
        for f in [f for f in files if f.name.endswith(suffix)][:8]:
            (crops / label / f.name).symlink_to(f)
    metrics = {b: _eval(capsys, tmp_path / b, "eval", "classifier", "--data", crops, "--backend", b,
                        "--config", settings) for b in ("torch", "openvino")}
    assert metrics["openvino"]["weights"]["backend"] == "openvino"
    assert metrics["torch"]["summary"]["n"] == 16
    assert _rounded(metrics["openvino"]["summary"]) == _rounded(metrics["torch"]["summary"])
