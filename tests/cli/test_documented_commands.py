"""Every command the README documents runs to its end on a small slice of the real data, without a traceback.

`workbench dataset crops` once wrote its build and then died on a missing method; nothing ran the command itself.
These tests run each documented command through the real entry point (`workbench.cli.main`), in the order a user
would (build, train, evaluate), on `--limit`ed slices; `test_readme_commands_are_all_smoke_tested` fails when the
README documents a command that has no smoke test here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("dataset", "train", "eval")
SMOKE_TESTED = {
    ("gui",),                 # tests/cli/test_setup_scripts.py runs scripts/run.sh, which runs `workbench gui`
    ("analyze",), ("report",), ("dataset", "bccd"), ("dataset", "census"), ("dataset", "detection"), ("dataset", "crops"),
    ("train", "detector"), ("train", "classifier"), ("train", "average"),
    ("eval", "detection"), ("eval", "classifier"), ("eval", "pipeline"), ("eval", "list"),
    ("export",), ("bench",),  # tests/cli/test_export.py runs both (export, then analyze / bench on the exports)
    ("compare",),             # tests/app/test_compare.py runs it twice on a tiny comparison file
}


def documented_commands() -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for match in re.finditer(r"^\s*workbench ([a-z]+)(?: ([a-z]+))?", (REPO_ROOT / "README.md").read_text(), re.M):
        first, second = match.groups()
        found.add((first, second) if first in GROUPS and second else (first,))
    return found


def test_readme_commands_are_all_smoke_tested():
    documented = documented_commands()
    assert ("analyze",) in documented and ("eval", "list") in documented   # the parser above reads the README
    assert documented <= SMOKE_TESTED, f"documented but never run by a test: {sorted(documented - SMOKE_TESTED)}"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("documented")


def _ok(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "Traceback" not in captured.err
    return captured.out


def test_analyze(capsys, work):
    out = _ok(capsys, "analyze", REPO_ROOT / "datasets" / "sample" / "images", "--out", work / "analyze")
    assert "4 of 4 images analysed" in out
    assert json.loads((work / "analyze" / "results.json").read_text())["n_images"] == 4


def test_report(capsys, work):
    """`workbench report` on the run test_analyze wrote (issue 17): a PDF, then a new version beside it."""
    out = _ok(capsys, "report", work / "analyze", "--out", work / "report.pdf", "--max-gallery", 2)
    assert "unsigned draft" in out and (work / "report.pdf").stat().st_size > 10_000
    out = _ok(capsys, "report", work / "analyze", "--out", work / "report.pdf", "--no-gradcam")
    assert "report.v2.pdf" in out and (work / "report.v2.pdf").is_file()


def test_dataset_bccd(capsys, work, datasets_root):
    out = _ok(capsys, "dataset", "bccd", "--datasets", datasets_root, "--out", work / "bccd", "--limit", 2)
    assert "BCCD -> YOLO: 6 images" in out and (work / "bccd" / "data.yaml").is_file()


def test_dataset_census(capsys, work, datasets_root):
    out = _ok(capsys, "dataset", "census", "--datasets", datasets_root, "--out", work / "census", "--limit", 1)
    assert "ALL-IDB1 census (wbc-yolov8n-v1)" in out and (work / "census" / "census.json").is_file()
    assert (work / "census" / "census_smudge.jpg").is_file()


def test_dataset_detection(capsys, work, datasets_root):
    out = _ok(capsys, "dataset", "detection", "--datasets", datasets_root, "--out", work / "detection", "--limit", 1,
              "--census", work / "census" / "census.json")
    assert "detection dataset" in out and (work / "detection" / "data.yaml").is_file()
    assert (work / "detection" / "eval.yaml").is_file()


def test_dataset_crops(capsys, work, datasets_root):
    out = _ok(capsys, "dataset", "crops", "--datasets", datasets_root, "--out", work / "crops", "--limit", 1,
              "--size", 64, "--census", work / "census" / "census.json")
    assert out.startswith("classifier crops: train ") and (work / "crops" / "split.csv").is_file()


def test_train_detector(capsys, work, monkeypatch):
    # the BCCD yolo build (1-class): the multi-source build is trained the same way (tests/builders/test_multisource.py)
    monkeypatch.setenv("SMEAR_WEIGHTS_DIR", str(work / "weights"))
    out = _ok(capsys, "train", "detector", "--data", work / "bccd" / "data.yaml", "--epochs", 1, "--imgsz", 64,
              "--batch", 2, "--workers", 0, "--no-plots", "--out", work / "runs", "--name", "det")
    assert "best weights:" in out


def test_train_average(capsys, work):
    out = _ok(capsys, "train", "average", "wbc-yolov8n-v2", "wbc-yolov8n-v2", "--out", work / "avg.pt")
    assert "averaged 2 detectors (wbc, rbc, platelet; 0.13393 um/px" in out and (work / "avg.pt").is_file()


def test_train_classifier(capsys, work):
    out = _ok(capsys, "train", "classifier", "--data", work / "crops", "--out", work / "runs" / "cls",
              "--input-size", 32, "--epochs", 1, "--batch", 4, "--workers", 0, "--num-threads", 1,
              "--max-per-split", 4)
    assert "best weights:" in out


def test_eval_detection(capsys, work):
    out = _ok(capsys, "eval", "detection", "--data", work / "detection" / "eval.yaml", "--split", "test",
              "--out", work / "eval-det")
    assert "AP50" in out and (work / "eval-det" / "metrics.json").is_file()
    metrics = json.loads((work / "eval-det" / "metrics.json").read_text())
    assert set(metrics["per_source"]) == {"bccd", "txl_raabin", "txl_bcd", "allidb1"}


def test_eval_classifier(capsys, work):
    out = _ok(capsys, "eval", "classifier", "--data", work / "crops", "--out", work / "eval-cls")
    assert "accuracy" in out and (work / "eval-cls" / "metrics.json").is_file()


def test_eval_pipeline(capsys, work, datasets_root):
    images, labels = work / "smears", work / "points"
    images.mkdir()
    labels.mkdir()
    allidb1 = datasets_root / "all-idb" / "ALL_IDB1"
    for stem in ("Im006_1", "Im095_0"):
        (images / f"{stem}.jpg").symlink_to(allidb1 / "im" / f"{stem}.jpg")
        (labels / f"{stem}.xyc").write_bytes((allidb1 / "xyc" / f"{stem}.xyc").read_bytes())
    out = _ok(capsys, "eval", "pipeline", "--images", images, "--labels", labels, "--points",
              "--out", work / "eval-pipe")
    assert "blast" in out and (work / "eval-pipe" / "metrics.json").is_file()


def test_eval_list(capsys, work):
    out = _ok(capsys, "eval", "list", "--root", work)
    assert "detection" in out or "classifier" in out or "pipeline" in out
