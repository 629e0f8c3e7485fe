"""Training against the confound: sampling balanced over class x source group, validation and test metrics per
group (checked against hand-computed cases), and the operating threshold chosen on validation, stored with the
weights and used by the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from classification.dataset import CropRecord
from classification.train import choose_threshold, group_metrics, sample_group, sample_weights


def _rec(label: str, group: str, diagnosis: str = "healthy") -> CropRecord:
    return CropRecord(f"{label}.jpg", label, "train", group, "x.jpg", 0, 0, 1, 1, group=group, diagnosis=diagnosis)


def test_sampling_weights_balance_classes_and_groups():
    records = ([_rec("blast", "canon", "ALL")] * 10 + [_rec("blast", "olympus", "ALL")] * 40
               + [_rec("normal", "pbc")] * 900 + [_rec("normal", "canon", "ALL")] * 100)
    w = np.array(sample_weights(records))
    labels = np.array([r.label for r in records])
    groups = np.array([sample_group(r) for r in records])
    assert w.sum() == pytest.approx(1.0)
    assert w[labels == "blast"].sum() == pytest.approx(0.5)       # each class draws half
    # within a class a group's share follows the square root of its size: sqrt(900) : sqrt(100) = 3 : 1
    assert w[groups == "pbc/healthy"].sum() / w[groups == "canon/ALL"][labels[groups == "canon/ALL"] == "normal"].sum() \
        == pytest.approx(3.0)
    assert w[groups == "olympus/ALL"].sum() / w[(groups == "canon/ALL") & (labels == "blast")].sum() \
        == pytest.approx(2.0)


def test_group_metrics_against_a_hand_computed_case():
    # canon/ALL: 2 blasts (p .9, .4), 2 non-blasts of ALL images (p .7, .1); pbc: 3 non-blasts (p .2, .6, .05)
    records = [_rec("blast", "canon", "ALL"), _rec("blast", "canon", "ALL"), _rec("normal", "canon", "ALL"),
               _rec("normal", "canon", "ALL"), _rec("normal", "pbc"), _rec("normal", "pbc"), _rec("normal", "pbc")]
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    probs = np.array([0.9, 0.4, 0.7, 0.1, 0.2, 0.6, 0.05])
    out = group_metrics(records, labels, probs, threshold=0.5)
    canon = out["canon/ALL"]   # tp 1 (.9), fn 1 (.4), fp 1 (.7), tn 1 (.1)
    assert (canon["tp"], canon["fn"], canon["fp"], canon["tn"]) == (1, 1, 1, 1)
    assert canon["precision"] == 0.5 and canon["recall"] == 0.5 and canon["specificity"] == 0.5
    pbc = out["pbc/healthy"]   # 1 of 3 non-blasts called blast (.6)
    assert (pbc["fp"], pbc["tn"]) == (1, 2) and pbc["specificity"] == pytest.approx(2 / 3)
    hard = out["ALL images, non-blast cells"]   # the non-blast cells of ALL smears only: .7 and .1
    assert hard["n"] == 2 and hard["specificity"] == 0.5
    assert out["ALL images, all cells"]["n"] == 4


def test_threshold_is_the_best_f1_on_validation():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])   # 0 = blast
    probs = np.array([0.95, 0.8, 0.62, 0.7, 0.3, 0.2, 0.1])
    chosen = choose_threshold(labels, probs)
    # t in (0.62, 0.7] calls blasts .95 .8 and the normal .7: F1 = 4/5; t <= .62 adds the blast .62: F1 = 6/7
    assert chosen["threshold"] == pytest.approx(0.3 + 0.01)   # lowest grid point above the normal at .3 ...
    assert chosen["f1"] == pytest.approx(6 / 7)


def test_threshold_stored_with_the_weights_is_used(tmp_path):
    from classification.model import build_efficientnet_b3, save_classifier
    from classification.predictor import BlastClassifier

    path = tmp_path / "c.pt"
    save_classifier(path, build_efficientnet_b3(2), ["blast", "normal"], input_size=32,
                    meta={"threshold": {"threshold": 0.8}, "crop": {"field_um": 22.0, "margin": 0.1}})
    classifier = BlastClassifier(path)
    assert classifier.threshold == 0.8 and classifier.spec.field_um == 22.0 and classifier.margin == 0.1
    assert classifier.spec.threshold_source == "the weights' operating threshold, chosen on validation"
    assert classifier.label(np.array([0.7, 0.3])).label == "normal"     # 0.7 < 0.8: not a blast here
    assert classifier.label(np.array([0.85, 0.15])).label == "blast"
    assert BlastClassifier(path, threshold=0.5).label(np.array([0.7, 0.3])).label == "blast"
    assert classifier.field_px(0.1) == pytest.approx(220.0) and classifier.field_px(None) is None


def test_eval_group_table_and_calibration_hand_computed():
    from pathlib import Path

    from classification.calibration import reliability
    from classification.evaluate import ALL_NON_BLAST, CropSample, group_table

    samples = [CropSample(Path("a"), "blast", group="canon/ALL"), CropSample(Path("b"), "normal", group="canon/ALL"),
               CropSample(Path("c"), "normal", group="pbc/healthy"), CropSample(Path("d"), "normal",
                                                                               group="pbc/healthy")]
    y = np.array([True, False, False, False])
    p = np.array([0.95, 0.65, 0.15, 0.05])
    table = group_table(samples, y, p, threshold=0.6)
    assert table["canon/ALL"]["precision"] == 0.5 and table["canon/ALL"]["specificity"] == 0.0
    assert table["pbc/healthy"]["correct"] == 1.0 and table["pbc/healthy"]["precision"] is None
    assert table[ALL_NON_BLAST] == {**table[ALL_NON_BLAST], "n": 1, "fp": 1, "correct": 0.0}
    # bins of width 0.1: [0.9, 1] mean .95 all blast (gap .05); [0.6, .7) .65 no blast (gap .65); [0.1, .2) .15
    # (gap .15); [0, .1) .05 (gap .05): ECE = (.05 + .65 + .15 + .05) / 4
    cal = reliability(y, p)
    assert cal["ece"] == pytest.approx((0.05 + 0.65 + 0.15 + 0.05) / 4) and cal["mce"] == pytest.approx(0.65)
    assert sum(b["n"] for b in cal["bins"]) == 4


def test_training_record_and_eval_report_the_same_group_rows():
    """The trainer's per-group record and `eval classifier`'s table come from one row definition: same groups, same
    hard-negative row with the same counts (the trainer adds every cell of ALL images as one more row)."""
    from pathlib import Path

    from classification.evaluate import ALL_CELLS, ALL_NON_BLAST, CropSample, group_table

    records = [_rec("blast", "canon", "ALL"), _rec("normal", "canon", "ALL"), _rec("normal", "olympus", "ALL"),
               _rec("normal", "pbc")]
    samples = [CropSample(Path(f"{i}"), r.label, group=sample_group(r)) for i, r in enumerate(records)]
    labels = np.array([0, 1, 1, 1])
    probs = np.array([0.9, 0.7, 0.2, 0.1])
    trained = group_metrics(records, labels, probs, threshold=0.5)
    evaluated = group_table(samples, labels == 0, probs, threshold=0.5)
    assert list(trained) == [*evaluated, ALL_CELLS]
    for name in evaluated:
        assert {k: trained[name][k] for k in ("n", "tp", "fp", "fn", "tn")} == \
            {k: evaluated[name][k] for k in ("n", "tp", "fp", "fn", "tn")}
    assert evaluated[ALL_NON_BLAST]["n"] == 2 and trained[ALL_CELLS]["n"] == 3


def test_training_and_eval_report_undefined_metrics_alike():
    """Known bug: a test split without non-blasts gave specificity None in training but 0.0 in eval, although the
    trainer claims the eval code path. One code computes both now."""
    from classification.evaluate import classifier_metrics
    from classification.train import binary_metrics

    labels, probs = np.array([0, 0, 0]), np.array([0.9, 0.4, 0.8])    # blasts only
    train = binary_metrics(labels, probs, 0.5)
    evaluated = classifier_metrics(labels == 0, probs, 0.5, resamples=10)
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        assert train[key] == getattr(evaluated, key), key
    assert train["specificity"] == 0.0 and train["roc_auc"] is None
