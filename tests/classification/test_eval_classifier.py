"""Classifier evaluation: every metric equals scikit-learn on the same predictions, McNemar on known tables, the
crop layouts, and `workbench eval classifier` end to end on real ALL-IDB2 crops with the tiny classifier."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from classification.evaluate import (DatasetFormatError, classifier_metrics, load_crop_dataset, mcnemar, roc_auc,
                                     roc_curve)
from workbench.cli import EXIT_ERROR, EXIT_OK, main

sk = pytest.importorskip("sklearn.metrics")


def realistic(n=240, seed=3):
    """Labels and blast probabilities shaped like a decent classifier's, with ties (rounded to 2 decimals)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    logits = np.where(y, 1.2, -1.0) + rng.normal(0, 1.3, n)
    return y, np.round(1 / (1 + np.exp(-logits)), 2)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_metrics_equal_scikit_learn(threshold):
    y, p = realistic()
    m = classifier_metrics(y, p, threshold)
    pred = p >= threshold
    assert m.accuracy == pytest.approx(sk.accuracy_score(y, pred))
    assert m.precision == pytest.approx(sk.precision_score(y, pred))
    assert m.recall == pytest.approx(sk.recall_score(y, pred))
    assert m.specificity == pytest.approx(sk.recall_score(y, pred, pos_label=False))
    assert m.f1 == pytest.approx(sk.f1_score(y, pred))
    assert m.roc_auc == pytest.approx(sk.roc_auc_score(y, p))
    assert m.confusion == sk.confusion_matrix(y, pred, labels=[True, False]).tolist()
    assert m.per_class["normal"]["precision"] == pytest.approx(sk.precision_score(y, pred, pos_label=False))
    assert m.per_class["normal"]["f1"] == pytest.approx(sk.f1_score(y, pred, pos_label=False))
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    assert np.allclose(m.roc["fpr"], fpr) and np.allclose(m.roc["tpr"], tpr)
    # best F1 over thresholds: no threshold does better, and the reported numbers are those at it
    best = max(sk.f1_score(y, p >= t) for t in np.unique(p))
    assert m.best_f1["f1"] == pytest.approx(best)
    assert m.best_f1["recall"] == pytest.approx(sk.recall_score(y, p >= m.best_f1["threshold"]))


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    y, p = realistic()
    a, b = classifier_metrics(y, p), classifier_metrics(y, p)
    assert a.ci95 == b.ci95 and a.bootstrap["resamples"] == 1000
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        low, high = a.ci95[key]
        assert low <= getattr(a, key) <= high, key
        assert high - low < 0.3
    assert classifier_metrics(y, p, seed=1).ci95 != a.ci95


def test_one_class_only_and_perfect():
    m = classifier_metrics([True, True, True], [0.9, 0.2, 0.7])
    assert m.roc_auc is None and m.specificity == 0.0 and m.recall == pytest.approx(2 / 3)
    assert roc_auc([False, True], [0.5, 0.5]) == 0.5  # a tie counts half
    m = classifier_metrics([True, False, True, False], [0.9, 0.1, 0.8, 0.4])
    assert (m.accuracy, m.f1, m.roc_auc) == (1.0, 1.0, 1.0)
    assert roc_curve([True, False], [0.9, 0.1])["tpr"] == [0.0, 1.0, 1.0]


def test_mcnemar_exact_and_chi_square():
    # 3 crops only A gets right, 12 only B: 15 discordant < 25 -> exact two-sided binomial
    a = [True] * 40 + [True] * 3 + [False] * 12 + [False] * 5
    b = [True] * 40 + [False] * 3 + [True] * 12 + [False] * 5
    r = mcnemar(a, b)
    assert (r.both_correct, r.only_a_correct, r.only_b_correct, r.both_wrong) == (40, 3, 12, 5)
    exact = 2 * sum(math.comb(15, k) for k in range(4)) / 2**15
    assert r.method.startswith("exact") and r.p_value == pytest.approx(exact) == pytest.approx(0.03515625)
    # 10 vs 25 -> chi-square with continuity correction: (|10 - 25| - 1)^2 / 35 = 5.6, 1 dof
    a = [True] * 10 + [False] * 25 + [True] * 50
    b = [False] * 10 + [True] * 25 + [True] * 50
    r = mcnemar(a, b)
    assert r.statistic == pytest.approx(5.6)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(5.6 / 2)))
    assert mcnemar([True, False], [True, False]).p_value == 1.0  # no discordant pair
    try:
        from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
    except ImportError:
        return
    assert r.p_value == pytest.approx(sm_mcnemar([[50, 10], [25, 0]], exact=False, correction=True).pvalue)


# --------------------------------------------------------------------------------------------------------------------
# data layouts and the CLI


@pytest.fixture(scope="module")
def crops(tmp_path_factory, datasets_root):
    """8 real ALL-IDB2 crops (4 blast, 4 normal) linked into a folder-per-class tree, split folders and a split.csv.
    ALL-IDB stays out of the repository: these are symlinks in a temporary folder."""
    from tests.conftest import ALLIDB2, need

    img = need(ALLIDB2 / "img")
    blasts = sorted(img.glob("*_1.tif"))[:4]
    normals = sorted(img.glob("*_0.tif"))[:4]
    root = tmp_path_factory.mktemp("crops")
    rows = []
    for split, chosen in (("test", blasts[:2] + normals[:2]), ("val", blasts[2:] + normals[2:])):
        for path in chosen:
            label = "blast" if path.stem.endswith("_1") else "normal"
            for base in (root / "flat" / label, root / "splits" / split / label):
                base.mkdir(parents=True, exist_ok=True)
                (base / path.name).symlink_to(path)
            rows.append({"file": f"{split}/{label}/{path.name}", "label": label, "split": split,
                         "extra_normal": "1" if path == normals[3] else "0"})
    with open(root / "splits" / "split.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "split", "extra_normal"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_crop_layouts(crops):
    names = ["blast", "normal"]
    flat, split = load_crop_dataset(crops / "flat", names)
    assert len(flat) == 8 and split is None and sum(s.label == "blast" for s in flat) == 4
    test, split = load_crop_dataset(crops / "splits", names)  # a build folder: its split.csv, test split
    assert split == "test" and len(test) == 4
    val, _ = load_crop_dataset(crops / "splits" / "split.csv", names, "val")
    assert len(val) == 4 and all(s.path.is_file() for s in val)
    assert len(load_crop_dataset(crops / "splits", names, "val", include_extra_normal=False)[0]) == 3
    with pytest.raises(DatasetFormatError, match="not one of the classifier's classes"):
        load_crop_dataset(crops / "flat", ["blast", "lymphocyte"])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_eval_classifier_with_compare(capsys, tmp_path, crops, tiny_classifier):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "eval", "classifier", "--data", crops / "flat", "--weights", tiny_classifier,
                            "--compare", tiny_classifier, "--out", out)
    assert code == EXIT_OK, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "classifier" and m["split"] is None and m["thresholds"]["blast"] == 0.5
    assert set(m["summary"]) >= {"accuracy", "precision", "recall", "specificity", "f1", "roc_auc"}
    assert m["weights"]["path"] == str(tiny_classifier) and len(m["weights"]["sha256"]) == 64
    assert set(m["ci95"]) >= {"accuracy", "f1", "roc_auc"} and m["bootstrap"]["resamples"] == 1000
    assert m["summary"]["n"] == 8 and m["confusion_matrix"]["labels"] == ["blast", "normal"]
    for rel in [*m["plots"].values(), *m["tables"].values()]:
        assert (out / rel).stat().st_size > 0
    assert {"roc", "confusion_matrix"} <= set(m["plots"])
    # the same weights twice: no discordant crop, McNemar p = 1
    assert m["compare"]["mcnemar"]["p_value"] == 1.0 and m["summary"]["mcnemar_p"] == 1.0
    # metrics.json agrees with scikit-learn on the written per-crop predictions
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    y = [r["label"] == "blast" for r in rows]
    pred = [r["predicted"] == "blast" for r in rows]
    assert m["summary"]["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["summary"]["f1"] == pytest.approx(sk.f1_score(y, pred, zero_division=0))
    assert m["summary"]["roc_auc"] == pytest.approx(sk.roc_auc_score(y, [float(r["p_blast"]) for r in rows]),
                                                    abs=1e-4)
    assert "accuracy" in stdout and "McNemar" in stdout


def test_cli_eval_classifier_bad_inputs(capsys, tmp_path, crops, tiny_classifier):
    code, _, err = run(capsys, "eval", "classifier", "--data", tmp_path / "nope", "--weights", tiny_classifier)
    assert code == EXIT_ERROR and err.startswith("error: crop data not found") and len(err.splitlines()) == 1
    bad = tmp_path / "bad"
    (bad / "lymphocyte").mkdir(parents=True)
    (bad / "blast").mkdir()
    code, _, err = run(capsys, "eval", "classifier", "--data", bad, "--weights", tiny_classifier, "--out", tmp_path)
    assert code == EXIT_ERROR and "'lymphocyte' is not one of the classifier's classes" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "metrics.json").exists()
