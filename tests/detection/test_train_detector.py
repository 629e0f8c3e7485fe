"""`workbench dataset bccd` + `workbench train detector`: one epoch on a few real images gives loadable weights and a
manifest entry with measured metrics; --register lists them in the weights manifest."""

from __future__ import annotations

import pytest
import yaml

from workbench.cli import main
from workbench.app.weights import Manifest, sha256_file


def test_dataset_then_one_epoch_training_registers_weights(tmp_path, monkeypatch, capsys, datasets_root):
    from workbench.builders import bccd

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)                   # where the user runs it: no run folder may appear there
    real_build = bccd.build_bccd_yolo
    monkeypatch.setattr(bccd, "build_bccd_yolo", lambda *a, **k: real_build(*a, **{**k, "limit": 4}))
    assert main(["dataset", "bccd", "--datasets", str(datasets_root), "--out", str(tmp_path / "data")]) == 0
    assert "BCCD -> YOLO: 12 images" in capsys.readouterr().out

    data_yaml = tmp_path / "data" / "data.yaml"   # as `workbench dataset detection` writes it: one pixel size
    data_yaml.write_text(data_yaml.read_text() + "pixel_size:\n  um_per_px: 0.1339\n")
    monkeypatch.setenv("SMEAR_WEIGHTS_DIR", str(tmp_path / "weights"))
    import os

    import torch

    threads_set = []
    real_set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (threads_set.append(n), real_set_threads(n)))
    code = main(["train", "detector", "--data", str(tmp_path / "data" / "data.yaml"), "--epochs", "1", "--imgsz", "64",
                 "--batch", "4", "--workers", "0", "--no-plots", "--out", str(tmp_path / "runs"), "--name", "t",
                 "--register", "wbc-test", "--default"])
    assert code == 0
    # on CPU every core trains (ultralytics alone leaves cpu_count - 1 threads and no loader workers)
    assert len(os.sched_getaffinity(0)) in threads_set
    entry = yaml.safe_load((tmp_path / "runs" / "t" / "weights" / "manifest_entry.yaml").read_text())
    assert entry["task"] == "detect" and entry["class_names"] == ["wbc"] and entry["input_size"] == 64
    assert set(entry["metrics"]) == {"computed_by", "val", "test"}
    assert set(entry["metrics"]["test"]) == {"precision", "recall", "ap50", "ap50_95"}
    manifest = Manifest.load(tmp_path / "weights" / "manifest.yaml")
    listed = manifest.default("detect")
    assert listed.name == "wbc-test" and listed.sha256 == sha256_file(tmp_path / "weights" / "wbc-test.pt")

    from detection.predictor import WbcDetector

    assert WbcDetector(tmp_path / "weights" / "wbc-test.pt").class_names == ["wbc"]
    assert listed.pixel_size_um == pytest.approx(0.1339)
    # the run's own checkpoints, used before (or without) registering, carry the pixel size they were trained at
    for name in ("best.pt", "last.pt"):
        assert WbcDetector(tmp_path / "runs" / "t" / "weights" / name).pixel_size_um == pytest.approx(0.1339)
    # ultralytics' validator saves beside the weights, not in its settings' runs_dir (a runs/ folder wherever
    # ultralytics first ran) nor in the working directory
    assert (tmp_path / "runs" / "t" / "weights" / "val_test").is_dir() and list(work.iterdir()) == []


def test_missing_data_yaml_is_one_line(tmp_path, capsys):
    assert main(["train", "detector", "--data", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data yaml not found") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["bccd", "census", "detection", "crops"])
def test_dataset_commands_refuse_a_missing_datasets_folder(tmp_path, capsys, kind):
    assert main(["dataset", kind, "--datasets", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "datasets folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [(0.1339, 0.1339), (None, None), ("0.13", None), (float("nan"), None),
                                             (0.0, None), (1e6, None), (True, None)])
def test_checkpoint_pixel_size_is_read_only_when_plausible(value, expected):
    """The pixel size inside a checkpoint comes from a file from outside: anything but a plausible number is None."""
    from types import SimpleNamespace

    from detection.predictor import trained_pixel_size

    yolo = SimpleNamespace(model=SimpleNamespace(smear_pixel_size_um=value))
    assert trained_pixel_size(yolo) == expected
