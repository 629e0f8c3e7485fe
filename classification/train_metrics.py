"""The numbers the classifier trainer decides by and reports: blast-positive metrics (scikit-learn), the validation
loss per class x source group, the sampling weights over class x group, the operating threshold chosen on
validation, and test metrics per group. Imports no torch."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from workbench.builders.crop_records import CLASS_NAMES, CropRecord

BLAST = CLASS_NAMES.index("blast")  # the positive class of every metric

__all__ = ["binary_metrics", "choose_threshold", "group_metrics", "sample_group", "sample_weights"]


def binary_metrics(labels: Sequence[int], p_blast: Sequence[float], threshold: float = 0.5) -> dict[str, Any]:
    """Blast-positive metrics from class indices (CLASS_NAMES order) and blast probabilities, computed by the code
    `workbench eval classifier` uses (classification.evaluate: scikit-learn's definitions and its zero_division=0
    convention, so an empty denominator gives 0.0 in training, in the manifest and in eval alike; ROC-AUC and
    balanced accuracy are None with one class only). The prediction is p_blast >= threshold."""
    from classification.evaluate import _rates, roc_auc

    y = np.asarray(labels) == BLAST
    score = np.asarray(p_blast, dtype=float)
    n = int(y.size)
    if n == 0:
        return {"n": 0}
    r = _rates(y, score >= threshold)
    both = 0 < int(y.sum()) < n
    return {
        "n": n, "n_blast": int(y.sum()), "n_normal": int(n - y.sum()),
        "accuracy": r["accuracy"],
        "balanced_accuracy": (r["recall"] + r["specificity"]) / 2 if both else None,
        "precision": r["precision"], "recall": r["recall"], "specificity": r["specificity"], "f1": r["f1"],
        "roc_auc": roc_auc(y, score) if both else None,
        "tp": r["tp"], "fp": r["fp"], "tn": r["tn"], "fn": r["fn"],
    }


def _balanced_loss(losses: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of each class's mean loss: the normal majority does not drown the blasts."""
    means = [float(losses[labels == c].mean()) for c in range(len(CLASS_NAMES)) if np.any(labels == c)]
    return float(np.mean(means)) if means else math.nan


def sample_group(record: CropRecord) -> str:
    """The stratum a crop is balanced and reported in: source group (lab / camera) x diagnosis."""
    return f"{record.group or record.dataset}/{record.diagnosis or 'unknown'}"


def sample_weights(records: Sequence[CropRecord]) -> list[float]:
    """Sampling weights: each class draws half of the crops; within a class, each group gets a share proportional to
    the square root of its size (a small group, e.g. the non-blast cells of ALL smears, is drawn more often than its
    size alone would give, a large one, e.g. PBC, less), split evenly over the group's crops."""
    sizes = Counter((r.label, sample_group(r)) for r in records)
    labels = {r.label for r in records}
    share = {}
    for label in labels:
        roots = {g: math.sqrt(n) for (lab, g), n in sizes.items() if lab == label}
        total = sum(roots.values())
        for group, root in roots.items():
            share[(label, group)] = (1.0 / len(labels)) * root / total
    return [share[(r.label, sample_group(r))] / sizes[(r.label, sample_group(r))] for r in records]


def _val_metrics(labels: np.ndarray, probs: np.ndarray, losses: np.ndarray,
                 groups: Sequence[str] | None = None, select_by: str = "loss") -> dict[str, Any]:
    metrics = binary_metrics(labels, probs)
    metrics["class_loss"] = _balanced_loss(losses, labels)
    metrics["loss_unweighted"] = float(losses.mean()) if losses.size else math.nan
    if groups is not None and len(groups) == len(labels):
        keys = np.array([f"{CLASS_NAMES[int(lab)]}:{g}" for lab, g in zip(labels, groups)])
        metrics["group_loss"] = {k: float(losses[keys == k].mean()) for k in sorted(set(keys))}
        # each class counts half, each of its groups equally within it: normals come from many more groups
        per_class = [np.mean([v for k, v in metrics["group_loss"].items() if k.startswith(f"{c}:")])
                     for c in CLASS_NAMES if any(k.startswith(f"{c}:") for k in metrics["group_loss"])]
        metrics["loss_by_groups"] = float(np.mean(per_class)) if per_class else math.nan
    use_groups = select_by == "group_loss" and "loss_by_groups" in metrics
    metrics["loss"] = metrics["loss_by_groups"] if use_groups else metrics["class_loss"]
    return metrics


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """The operating threshold on p_blast chosen on validation crops: the one of best F1 (blast positive), the lowest
    such threshold on a 0.01 grid between 0.05 and 0.95 (ties go to the higher recall)."""
    y = np.asarray(labels) == BLAST
    p = np.asarray(probs, dtype=float)
    best = {"threshold": 0.5, "f1": -1.0, "precision": None, "recall": None}
    for t in np.round(np.arange(0.05, 0.951, 0.01), 2):
        pred = p >= t
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best["f1"] + 1e-12:
            best = {"threshold": float(t), "f1": f1, "precision": tp / (tp + fp) if tp + fp else None,
                    "recall": tp / (tp + fn) if tp + fn else None}
    return best


def group_metrics(records: Sequence[CropRecord], labels: np.ndarray, probs: np.ndarray,
                  threshold: float) -> dict[str, dict[str, Any]]:
    """binary_metrics per source group (lab / camera x diagnosis), plus "ALL images, non-blast cells" (the hard
    negatives: every non-blast crop of an ALL smear) and "ALL images, all cells"."""
    from classification.evaluate import group_rows

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    of_all_image = np.array([r.diagnosis == "ALL" for r in records], dtype=bool)
    rows = group_rows([sample_group(r) for r in records], of_all_image, labels == BLAST, with_all_cells=True)
    return {name: binary_metrics(labels[mask], probs[mask], threshold) for name, mask in rows}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
