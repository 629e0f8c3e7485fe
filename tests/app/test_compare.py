"""`workbench compare`: the comparison file is checked, the table's 95% intervals and McNemar p-values agree with
independent computations (statsmodels, sklearn), and a rerun of the same tiny comparison on a real crop build
reproduces every number (deterministic mode, CPU)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from workbench.app.compare_config import CompareConfigError, load_compare_config
from workbench.app.compare_table import mcnemar_rows, metric_row, wilson_interval

TINY = """\
data: {data}
seed: 0
reference: b0
threads: 1
subset: {{train: 24, val: 8, test: 24}}
train: {{input_size: 32, epochs: 2, epoch_samples: 16, batch: 4, lr: 0.003, augment: false}}
runs:
  - {{name: b0, arch: efficientnet_b0}}
  - {{name: b0_histeq_fixed, arch: efficientnet_b0, preprocess: histeq, lr_schedule: fixed}}
"""


def _write(tmp_path, text: str, name: str = "zoo.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (7, 20), (1, 3), (113, 120), (46, 60)])
def test_wilson_interval_is_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12)
    assert wilson_interval(0, 0) == (None, None)


def test_metric_row_counts_and_intervals_are_independent_numbers():
    """Proportions and their Wilson intervals from the confusion counts (statsmodels); F1 and ROC-AUC intervals are the
    2.5 / 97.5 percentiles of sklearn's metrics over the same bootstrap resamples (seed 0, 1000)."""
    from sklearn.metrics import f1_score, roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(3)
    y = rng.random(80) < 0.4
    p = np.clip(0.35 * y + rng.random(80) * 0.7, 0, 1)
    row = metric_row("r", y, p, 0.5, {"arch": "x"})
    pred = p >= 0.5
    tp, fp, fn, tn = (int(np.sum(a & b)) for a, b in ((y, pred), (~y, pred), (y, ~pred), (~y, ~pred)))
    assert (row["tp"], row["fp"], row["fn"], row["tn"], row["arch"]) == (tp, fp, fn, tn, "x")
    for key, k, n in (("accuracy", tp + tn, 80), ("precision", tp, tp + fp), ("recall", tp, tp + fn),
                      ("specificity", tn, tn + fp)):
        assert row[key] == pytest.approx(k / n)
        assert (row[f"{key}_low"], row[f"{key}_high"]) == pytest.approx(proportion_confint(k, n, method="wilson"))
    assert row["f1"] == pytest.approx(f1_score(y, pred)) and row["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    idx = np.random.default_rng(0).integers(0, len(y), size=(1000, len(y)))
    f1s = [f1_score(y[i], pred[i], zero_division=0) for i in idx if y[i].any()]
    aucs = [roc_auc_score(y[i], p[i]) for i in idx if y[i].any() and not y[i].all()]
    assert (row["f1_low"], row["f1_high"]) == pytest.approx(tuple(np.percentile(f1s, [2.5, 97.5])), abs=1e-12)
    assert (row["roc_auc_low"], row["roc_auc_high"]) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])),
                                                                      abs=1e-12)


def test_mcnemar_rows_are_statsmodels_against_the_reference():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(1)
    ref = rng.random(200) < 0.8
    few = ref.copy()
    few[:9] = ~few[:9]                     # 9 discordant crops: the exact test
    many = rng.random(200) < 0.6           # dozens: chi-square with continuity correction
    rows = {r["run"]: r for r in mcnemar_rows("ref", {"ref": ref, "few": few, "many": many})}
    assert set(rows) == {"few", "many"}
    for name, other, exact in (("few", few, True), ("many", many, False)):
        table = [[int(np.sum(ref & other)), int(np.sum(ref & ~other))],
                 [int(np.sum(~ref & other)), int(np.sum(~ref & ~other))]]
        expected = mcnemar(table, exact=exact, correction=True)
        r = rows[name]
        assert (r["both_correct"], r["only_reference_correct"], r["only_run_correct"], r["both_wrong"]) == \
            (table[0][0], table[0][1], table[1][0], table[1][1])
        assert r["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert r["statistic"] == pytest.approx(expected.statistic, rel=1e-9)


def test_hand_checked_mcnemar_case():
    """10 crops only the reference got right, 2 only the run: exact two-sided p = 2 * P(X <= 2), X ~ Bin(12, 1/2)
    = 2 * (1 + 12 + 66) / 4096."""
    ref = np.array([True] * 10 + [False] * 2 + [True] * 5)
    run = np.array([False] * 10 + [True] * 2 + [True] * 5)
    (row,) = mcnemar_rows("ref", {"ref": ref, "run": run})
    assert row["p_value"] == pytest.approx(2 * 79 / 4096)


@pytest.mark.parametrize("text,message", [
    ("data: x\nruns: [{name: a, arch: resnet50}]\nepochz: 3\n", "unknown key"),
    ("data: x\nruns: [{name: a, arch: resnet50, lr_shedule: fixed}]\n", "unknown option 'lr_shedule'"),
    ("data: x\nruns: [{name: a, arch: resnet50, seed: 3}]\n", "set by the comparison"),
    ("data: x\nruns: [{name: a, arch: alexnet}]\n", "arch must be one of"),
    ("data: x\nruns: [{name: a}, {name: a}]\n", "used twice"),
    ("data: x\nreference: b\nruns: [{name: a}]\n", "reference 'b' is not one of the runs"),
    ("data: x\nruns: []\n", "at least one classifier run"),
    ("runs: [{name: a}]\n", "'data'"),
    ("data: x\nruns: [{name: a}]\ndetectors: {data: d.yaml, runs: [{name: y, model: yolov8n.pt}]}\n",
     "ultralytics model yaml"),
    ("[1, 2\n", "not a readable YAML file"),
])
def test_comparison_file_is_checked(tmp_path, text, message):
    with pytest.raises(CompareConfigError, match=message):
        load_compare_config(_write(tmp_path, text))


def test_comparison_file_merges_shared_options_and_resolves_paths(tmp_path):
    config = load_compare_config(_write(tmp_path, TINY.format(data="crops")))
    assert config.data == tmp_path / "crops" and config.reference == "b0" and config.threads == 1
    (_, first), (_, second) = config.runs
    assert first["input_size"] == 32 and first["arch"] == "efficientnet_b0" and "preprocess" not in first
    assert (second["preprocess"], second["lr_schedule"], second["epochs"]) == ("histeq", "fixed", 2)


def test_subset_split_caps_each_split_with_half_blasts(crops, tmp_path):
    from workbench.app.compare import subset_split

    out = subset_split(crops / "split.csv", {"val": 6, "test": 10}, 0, tmp_path / "a")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    source = list(csv.DictReader((crops / "split.csv").open(encoding="utf-8")))
    for split, cap in (("val", 6), ("test", 10)):
        kept = [r for r in rows if r["split"] == split]
        available = [r for r in source if r["split"] == split]
        assert len(kept) == min(cap, len(available))
        assert sum(r["label"] == "blast" for r in kept) <= cap // 2
    assert len([r for r in rows if r["split"] == "train"]) == len([r for r in source if r["split"] == "train"])
    assert (tmp_path / "a" / "build_report.json").is_file()
    again = subset_split(crops / "split.csv", {"val": 6, "test": 10}, 0, tmp_path / "b")
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def _numbers(out):
    rows = list(csv.DictReader((out / "comparison.csv").open(encoding="utf-8")))
    keys = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "threshold", "params")
    return {r["run"]: {k: r[k] for k in keys + tuple(f"{m}_{e}" for m in keys[:6] for e in ("low", "high"))}
            for r in rows}


def test_compare_reruns_reproduce_the_table_and_mcnemar_is_recomputable(crops, tmp_path, capsys):
    """The acceptance check: the same tiny comparison twice (deterministic, one thread) gives the same metrics,
    intervals, McNemar p, training losses and weights, and McNemar recomputed with statsmodels from predictions.csv
    is the table's."""
    from statsmodels.stats.contingency_tables import mcnemar

    from workbench.app.eval_store import list_eval_runs
    from workbench.cli.main import main

    config = _write(tmp_path, TINY.format(data=crops))
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        assert main(["compare", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| b0_histeq_fixed | efficientnet_b0 | linear | histeq | fixed | 32 |" in printed

    first, second = (_numbers(o) for o in outs)
    assert set(first) == {"b0", "b0_histeq_fixed"}
    for run, values in first.items():
        for key, value in values.items():
            a, b = (float(v) if v not in ("", "None") else None for v in (value, second[run][key]))
            assert a == b or round(a, 3) == round(b, 3), (run, key, a, b)
    predictions = [list(csv.DictReader((o / "predictions.csv").open(encoding="utf-8"))) for o in outs]
    for a, b in zip(*predictions):
        assert (a["file"], a["label"]) == (b["file"], b["label"])
        assert float(a["b0"]) == pytest.approx(float(b["b0"]), abs=1e-6)
    # at this budget the eval-mode outputs may still be one value for every crop (batch-norm running statistics
    # mostly the init's), so the rerun is also checked where it cannot be trivially equal: every training loss and
    # every weight of every run
    import torch

    for run in first:
        logs = [list(csv.DictReader((o / "runs" / run / "log.csv").open(encoding="utf-8"))) for o in outs]
        assert [r["train_loss"] for r in logs[0]] == [r["train_loss"] for r in logs[1]]
        states = [torch.load(o / "runs" / run / "best.pt", weights_only=True)["state_dict"] for o in outs]
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), run

    tests = list(csv.DictReader((outs[0] / "mcnemar.csv").open(encoding="utf-8")))
    assert [t["run"] for t in tests] == ["b0_histeq_fixed"]
    records = {n: json.loads((outs[0] / "runs" / n / "run.json").read_text()) for n in ("b0", "b0_histeq_fixed")}
    y = np.array([r["label"] == "blast" for r in predictions[0]])
    right = {n: (np.array([float(r[n]) for r in predictions[0]]) >= records[n]["threshold"]) == y for n in records}
    ref, run = right["b0"], right["b0_histeq_fixed"]
    table = [[int(np.sum(ref & run)), int(np.sum(ref & ~run))], [int(np.sum(~ref & run)), int(np.sum(~ref & ~run))]]
    expected = mcnemar(table, exact=table[0][1] + table[1][0] < 25, correction=True).pvalue
    assert float(tests[0]["p_value"]) == pytest.approx(expected, abs=1e-6)

    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["kind"] == "comparison" and metrics["summary"]["runs"] == 2
    assert (outs[0] / "comparison.png").stat().st_size > 1000
    listed = [r for r in list_eval_runs() if r.kind == "comparison"]
    assert outs[0].resolve() in [r.path.resolve() for r in listed] and listed[0].plots   # the Evaluation tab's list
    # a compared run's weights load like any other classifier, their preprocessing with them
    from classification.predictor import BlastClassifier

    assert BlastClassifier(outs[0] / "runs" / "b0_histeq_fixed" / "best.pt").preprocess == "histeq"


def test_compare_refuses_to_overwrite_and_reports_a_bad_file(crops, tmp_path, capsys):
    from workbench.cli.main import main

    assert main(["compare", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: comparison file not found")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    config = _write(tmp_path, TINY.format(data=crops))
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "already holds a comparison" in capsys.readouterr().err
