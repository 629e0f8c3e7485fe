"""Tests for the classifier's crop dataset builder and training loop, on a real slice of ALL-IDB1 (census), BCCD,
TXL-PBC and PBC.

Kept fast on a busy 2-core CPU: 64 px crops and inputs, a few crops per split, one epoch, one torch thread per
process. The networks are real (EfficientNet-B3, weights=None); nothing is faked. The data comes from SMEAR_DATASETS
(default <repo>/../shared/datasets); tests skip with the reason when it is absent.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from classification.dataset import CLASS_INDEX, CLASS_NAMES, CropDataset, read_split_file
from classification.train import (
    ClassifierTrainConfig,
    PlateauRule,
    binary_metrics,
    build_parser,
    config_from_args,
    train_classifier,
)
from tests.conftest import BCCD_ROOT, REPO_ROOT, need

SIZE = 64
LIMIT = 1  # source images per split and dataset family


def _tiny_config(data: Path, out: Path, **overrides) -> ClassifierTrainConfig:
    settings = dict(data=str(data), out=str(out), input_size=SIZE, epochs=1, batch=4, workers=0, num_threads=1,
                    max_per_split=4, seed=0, device="cpu")
    settings.update(overrides)
    return ClassifierTrainConfig(**settings)


@pytest.fixture(scope="module")
def crops(tmp_path_factory, datasets_root, census_slice) -> Path:
    need(BCCD_ROOT)
    from workbench.builders.crop_set import CropBuildOptions, build_crops

    out = tmp_path_factory.mktemp("crops") / "crops_v3"
    build_crops(datasets_root, out, census_slice[0], CropBuildOptions(size=SIZE, limit=LIMIT, seed=0))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, crops) -> tuple[Path, object]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    result = train_classifier(_tiny_config(crops, out))
    return out, result


# --------------------------------------------------------------------------------------------------------------------
# crop dataset


def test_class_map_is_fixed():
    assert CLASS_NAMES == ("blast", "normal")
    assert CLASS_INDEX == {"blast": 0, "normal": 1}
    assert CropDataset.class_names == CLASS_NAMES


def test_crop_build_counts_and_files(crops):
    report = json.loads((crops / "build_report.json").read_text())
    records = read_split_file(crops / "split.csv")
    assert report["class_names"] == ["blast", "normal"]
    assert report["options"]["size"] == SIZE and report["options"]["seed"] == 0 and report["options"]["field_um"] > 0
    # the report's counts are exactly the rows of split.csv, which are exactly the files on disk
    counted = defaultdict(int)
    for rec in records:
        counted[(rec.split, rec.label, rec.dataset)] += 1
        assert rec.file == f"{rec.split}/{rec.label}/{Path(rec.file).name}"
        assert rec.extra_normal == (rec.dataset != "allidb1")
        assert rec.x2 > rec.x1 and rec.y2 > rec.y1 and rec.um_per_px > 0 and rec.group and rec.cell_type
    for split, by_class in report["counts"].items():
        for label, by_dataset in by_class.items():
            for dataset, n in by_dataset.items():
                assert counted[(split, label, dataset)] == n, (split, label, dataset)
    on_disk = sorted(str(p.relative_to(crops)) for p in crops.glob("*/*/*.jpg"))
    assert on_disk == sorted(r.file for r in records)
    sources = {r.dataset for r in records}
    assert sources == {"allidb1", "bccd", "txl_raabin", "txl_bcd", "pbc"}
    assert {r.dataset for r in records if r.label == "blast"} == {"allidb1"}   # only ALL-IDB marks blasts
    assert any(r.cell_type.startswith("pbc_") for r in records)


def test_crops_are_square_rgb_of_crop_size(crops):
    ds = CropDataset(crops)
    for index in range(0, len(ds), max(1, len(ds) // 12)):
        image = ds.read_image(index)
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


def test_no_source_image_in_two_splits(crops, datasets_root):
    from workbench.builders.crop_set import _pbc_split
    from workbench.builders.allidb_split import allidb1_split

    records = read_split_file(crops / "split.csv")
    splits = defaultdict(set)
    for rec in records:
        splits[(rec.dataset, rec.source_image)].add(rec.split)
    assert all(len(s) == 1 for s in splits.values()), {k: v for k, v in splits.items() if len(v) > 1}
    allidb = allidb1_split(datasets_root / "all-idb", seed=0)
    official = {s: set((BCCD_ROOT / "ImageSets" / "Main" / f"{s}.txt").read_text().split())
                for s in ("train", "val", "test")}
    with (datasets_root / "txl-pbc" / "images.csv").open(newline="") as handle:
        txl = {Path(r["image"]).name: r["split"] for r in csv.DictReader(handle)}
    with (datasets_root / "pbc" / "manifest.csv").open(newline="") as handle:
        pbc = {Path(r["file"]).name: _pbc_split(r["md5"]) for r in csv.DictReader(handle)}
    for rec in records:
        expected = {"allidb1": lambda: allidb[rec.source_image],
                    "bccd": lambda: next(s for s in official if Path(rec.source_image).stem in official[s]),
                    "pbc": lambda: pbc[rec.source_image]}.get(rec.dataset, lambda: txl[rec.source_image])()
        assert rec.split == expected, rec


def test_unmarked_cells_at_the_border_of_all_images_are_left_out(crops, census_slice):
    census, _ = census_slice
    records = read_split_file(crops / "split.csv")
    for name, c in census.items():
        mine = [r for r in records if r.dataset == "allidb1" and r.source_image == name]
        kept_boxes = {(round(r.x1, 1), round(r.y1, 1)) for r in mine}
        for cell in c.cells:
            key = (round(cell.xyxy[0], 1), round(cell.xyxy[1], 1))
            left_out = c.diagnosis == "ALL" and cell.kind == "unmarked" and cell.at_border
            assert (key not in kept_boxes) == left_out, (name, cell)


def test_field_window_keeps_the_cell_size():
    from workbench.core.crops import crop_cell, field_window

    assert field_window((45, 45, 55, 55), 100, 0.15) == (0, 0, 100, 100)       # small cell: the whole field
    x0, y0, x1, y1 = field_window((0, 0, 200, 100), 100, 0.15)                  # larger than the field: box + margin
    assert x1 - x0 == y1 - y0 == 260
    image = np.zeros((300, 300, 3), np.uint8)
    image[140:160, 140:160] = 255                                               # a 20 px cell
    small = crop_cell(image, (140, 140, 160, 160), 0.15, 100, field_px=200)
    big = crop_cell(image, (140, 140, 160, 160), 0.15, 100)                     # box framing: fills the crop
    assert (small > 0).mean() < 0.05 < (big > 0).mean()


def test_crop_dataset_items_and_layouts(crops, tmp_path):
    by_csv = CropDataset(crops / "split.csv", "train")
    by_folder = CropDataset(crops, "train")  # split.csv found in the folder
    assert [r.file for r in by_folder.records] == [r.file for r in by_csv.records]
    tensor, label = by_csv[0]
    assert tensor.dtype == torch.float32 and tensor.shape == (3, SIZE, SIZE)
    assert label == CLASS_INDEX[by_csv.records[0].label]
    # a folder-per-class tree without split.csv gives the same crops with the same label indices
    shutil.copytree(crops / "train", tmp_path / "train")
    tree = CropDataset(tmp_path, "train")
    assert sorted((Path(r.file).name, i) for r, i in zip(tree.records, tree.labels)) == sorted(
        (Path(r.file).name, i) for r, i in zip(by_csv.records, by_csv.labels)
    )
    assert tree[0][1] == tree.labels[0]
    no_extra = CropDataset(crops, "train", include_extra_normal=False)
    assert all(not r.extra_normal for r in no_extra.records) and len(no_extra) < len(by_csv)


# --------------------------------------------------------------------------------------------------------------------
# training rules


def test_plateau_rule_restores_and_halves_lr():
    rule = PlateauRule(lr=1e-4, factor=0.5, min_lr=1e-6, patience=4)
    d = rule.step(1, 0.70)
    assert d.improved and not d.restore_best and d.lr == 1e-4
    d = rule.step(2, 0.60)
    assert d.improved and rule.best == 0.60 and rule.best_epoch == 2
    d = rule.step(3, 0.65)  # rose above the best: go back to epoch 2's weights, halve the LR
    assert not d.improved and d.restore_best and d.lr == pytest.approx(5e-5) and not d.stop
    d = rule.step(4, 0.60)  # equal to the best: a plateau, nothing to restore
    assert not d.improved and not d.restore_best and d.lr == pytest.approx(5e-5)
    d = rule.step(5, 0.55)  # better again: the counter restarts
    assert d.improved and rule.bad_epochs == 0
    decisions = [rule.step(e, 0.9) for e in range(6, 10)]
    assert [d.lr for d in decisions] == pytest.approx([2.5e-5, 1.25e-5, 6.25e-6, 3.125e-6])
    assert [d.stop for d in decisions] == [False, False, False, True]  # patience 4 epochs without improvement
    floor = PlateauRule(lr=3e-6, min_lr=1e-6, patience=100)
    floor.step(1, 1.0)
    assert [floor.step(e, 2.0).lr for e in range(2, 5)] == pytest.approx([1.5e-6, 1e-6, 1e-6])
    nan = PlateauRule(lr=1e-4)
    nan.step(1, 0.5)
    d = nan.step(2, float("nan"))
    assert d.restore_best and d.lr == pytest.approx(5e-5)
    first = PlateauRule(lr=1e-4).step(1, float("nan"))
    assert not first.improved and not first.restore_best  # nothing to restore yet


def test_plateau_rule_lr_patience_skips_single_wobbles():
    rule = PlateauRule(lr=1e-4, lr_patience=2, patience=10)
    rule.step(1, 0.5)
    first, second, third = rule.step(2, 0.6), rule.step(3, 0.6), rule.step(4, 0.6)
    assert not first.restore_best and first.lr == 1e-4  # one worse epoch: carry on
    assert second.restore_best and second.lr == pytest.approx(5e-5)  # the second: restore and cut
    assert not third.restore_best


def test_plateau_rule_early_stop():
    rule = PlateauRule(lr=1e-4, patience=3)
    rule.step(1, 0.5)
    assert [rule.step(e, 0.6).stop for e in (2, 3, 4)] == [False, False, True]


def test_binary_metrics_blast_is_positive():
    labels = [0, 0, 0, 1, 1]  # blast, blast, blast, normal, normal
    p_blast = [0.9, 0.8, 0.3, 0.6, 0.1]
    m = binary_metrics(labels, p_blast)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(0.5) and m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert binary_metrics([1, 1], [0.2, 0.7])["roc_auc"] is None


def test_cli_mirrors_config():
    args = build_parser().parse_args(["--data", "d", "--input-size", "160", "--balance", "loss", "--no-augment",
                                      "--freeze-epochs", "2", "--pretrained", "w.pt", "--num-threads", "3"])
    config = config_from_args(args)
    assert config == ClassifierTrainConfig(data="d", input_size=160, balance="loss", augment=False, freeze_epochs=2,
                                           pretrained="w.pt", num_threads=3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--data", "d", "--balance", "oversample"])


# --------------------------------------------------------------------------------------------------------------------
# training runs


def test_one_epoch_writes_loadable_best_checkpoint(trained, crops, bccd_image):
    from classification import BlastClassifier, load_classifier
    from workbench.core.fileio import sha256_file

    out, result = trained
    assert Path(result.best_path) == out / "best.pt" and result.best_epoch == 1 and result.last_epoch == 1
    model, spec = load_classifier(out / "best.pt")
    assert spec.class_names == ["blast", "normal"] and spec.input_size == SIZE
    meta = spec.meta
    assert meta["epoch"] == 1 and meta["split_sha256"] == sha256_file(crops / "split.csv")
    assert meta["config"]["input_size"] == SIZE and "loss" in meta["val"]
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        assert key in meta["test"] and key in meta["test_allidb"]
    assert meta["test"] == result.test and meta["test"]["n"] > 0
    assert meta["data"]["train"]  # counts of what the run trained on
    classifier = BlastClassifier(out / "best.pt", batch=4)
    import cv2

    image = cv2.imread(str(bccd_image))[:, :, ::-1].copy()
    labels = classifier.classify_boxes(image, [(50, 50, 250, 250), (300, 200, 500, 400)])
    assert len(labels) == 2 and all(0.0 <= c.p_blast <= 1.0 and c.label in CLASS_NAMES for c in labels)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["action"] == "best"
    assert float(rows[0]["lr"]) == pytest.approx(1e-4)


def test_resume_continues_the_epoch_count(trained, crops, tmp_path):
    out, _ = trained
    state = torch.load(out / "last_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and state["model"]["classifier.1.weight"].dtype == torch.float32
    with pytest.raises(FileExistsError):  # never silently restart over an earlier run
        train_classifier(_tiny_config(crops, out, epochs=2))
    result = train_classifier(_tiny_config(crops, out, epochs=2, resume=True))
    assert result.last_epoch == 2
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert torch.load(out / "last_state.pt", map_location="cpu", weights_only=True)["epoch"] == 2
    # seeded and resumable: two epochs in one go give the same numbers as one epoch plus a resumed one
    fresh = tmp_path / "fresh"
    train_classifier(_tiny_config(crops, fresh, epochs=2))
    columns = ("train_loss", "train_acc", "val_loss", "lr", "action")
    again = list(csv.DictReader((fresh / "log.csv").open()))
    assert [[r[c] for c in columns] for r in again] == [[r[c] for c in columns] for r in rows]


def test_ddp_two_cpu_processes(tmp_path, crops):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "classification.train", "--data", str(crops), "--out", str(out), "--input-size", str(SIZE),
           "--epochs", "1", "--batch", "2", "--workers", "0", "--num-threads", "1", "--max-per-split", "4",
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    # rank 0 alone writes: once as the epoch's best, once more adding the test metrics to its meta; the other rank
    # logs at INFO too (tagged "[rank 1]") and must have written nothing
    assert text.count("saved best") == 1, text[-3000:]
    assert len(re.findall(r"saved classifier \S*best\.pt", text)) == 2, text[-3000:]
    assert "[rank 1]" not in text, text[-3000:]
    assert "DDP: class balance by loss weights" in text
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"]
    from classification import load_classifier

    _, spec = load_classifier(out / "best.pt")
    assert spec.meta["world_size"] == 2 and spec.meta["test"]["n"] > 0


def test_workbench_train_classifier_writes_and_registers_manifest_entry(crops, tmp_path, monkeypatch):
    import yaml

    from workbench.cli import main
    from workbench.app.weights import Manifest, sha256_file

    monkeypatch.setenv("SMEAR_WEIGHTS_DIR", str(tmp_path / "weights"))
    code = main(["train", "classifier", "--data", str(crops), "--out", str(tmp_path / "run"), "--input-size", str(SIZE),
                 "--epochs", "1", "--batch", "4", "--workers", "0", "--num-threads", "1", "--max-per-split", "4",
                 "--register", "b3-test", "--default"])
    assert code == 0
    entry = yaml.safe_load((tmp_path / "run" / "manifest_entry.yaml").read_text())
    assert entry["task"] == "classify" and entry["class_names"] == ["blast", "normal"]
    assert entry["input_size"] == SIZE and "sha256" in entry["split"]
    assert {"accuracy", "specificity", "roc_auc"} <= set(entry["metrics"]["test"])
    listed = Manifest.load(tmp_path / "weights" / "manifest.yaml").default("classify")
    assert listed.name == "b3-test" and listed.sha256 == sha256_file(tmp_path / "weights" / "b3-test.pt")


def test_the_registered_numbers_are_what_eval_classifier_reproduces(crops, tmp_path):
    """Issue 11: the manifest entry records the crop build's options and the test numbers at the stored threshold;
    `workbench eval classifier` on the same crops gives exactly those numbers (a run on the whole split, as the
    shipped one was: no max_per_split)."""
    from workbench.app.config import load_config
    from workbench.app.evaluation import run_classifier_eval
    from workbench.cli.train import classifier_entry

    out = tmp_path / "run"
    train_classifier(_tiny_config(crops, out, max_per_split=None))
    entry = classifier_entry(out / "best.pt", "tiny")
    build = json.loads((crops / "build_report.json").read_text())["options"]
    assert {k: entry.train["crop_build"][k] for k in build} == build
    threshold = entry.metrics["threshold"]["threshold"]
    assert f">= {threshold:g}" in entry.metrics["computed_by"]
    config = load_config(overrides={"classifier": {"weights": str(out / "best.pt")}})
    outcome = run_classifier_eval(crops, config, split="test", out=tmp_path / "eval")
    summary, test = outcome.metrics["summary"], entry.metrics["test"]
    assert outcome.metrics["thresholds"]["blast"] == pytest.approx(threshold)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert summary[key] == pytest.approx(test[key], abs=1e-9), key
