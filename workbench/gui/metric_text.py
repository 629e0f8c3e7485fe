"""How metric names and values are written in the window (names, tooltips, number format): one place for the
evaluation tab and the weights' metrics table in the settings."""

from __future__ import annotations

from typing import Any

METRIC_NAMES = {
    "precision": "Precision (P)", "recall": "Recall (R)", "ap50": "mAP50", "ap50_95": "mAP50-95",
    "images": "Images", "instances": "Instances", "accuracy": "Accuracy", "specificity": "Specificity",
    "f1": "F1", "roc_auc": "AUC (ROC)", "auc": "AUC (ROC)", "sensitivity": "Sensitivity",
    "wbc_precision": "WBC precision", "wbc_recall": "WBC recall", "blast_precision": "Blast precision",
    "blast_recall": "Blast recall", "blast_f1": "Blast F1", "count_mae": "Count MAE (cells / image)",
    "image_sensitivity": "Image sensitivity", "image_specificity": "Image specificity", "support": "Support",
    "mcnemar_p": "McNemar p", "ms_per_crop": "ms / crop", "ms_per_image": "ms / image", "params": "Parameters",
}
METRIC_HELP = {
    "precision": "Of the boxes (or blast calls) the model made, the fraction that are right: TP / (TP + FP)",
    "recall": "Of the true cells (or blasts), the fraction the model found: TP / (TP + FN)",
    "ap50": "Mean average precision with a box counted as found at IoU >= 0.5",
    "ap50_95": "Mean average precision averaged over IoU thresholds 0.50, 0.55, ..., 0.95 (COCO)",
    "images": "Images evaluated", "instances": "True cells (boxes) in those images",
    "accuracy": "Fraction of cells classified right", "specificity": "Of the normal cells, the fraction called normal",
    "f1": "Harmonic mean of precision and recall", "roc_auc": "Area under the ROC curve of p(blast)",
    "auc": "Area under the ROC curve of p(blast)", "support": "Cells of this class in the test data",
    "count_mae": "Mean absolute error of the white-cell count per image",
    "false_wbc_per_image": "Boxes per image that match no true white cell",
    "mcnemar_p": "McNemar's test against the comparison's reference (exact binomial, two-sided): a small p means the "
                 "two models' errors differ on the same test cells",
    "ms_per_crop": "Milliseconds per crop on the machine that ran the comparison",
}

def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", " "))


def metric_tip(key: str) -> str:
    name = metric_name(key)
    return f"{name}: {METRIC_HELP[key]}" if key in METRIC_HELP else name


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if 0 < abs(value) < 0.001:       # a McNemar p of 3e-06 is not "0.000"
            return f"{value:.1e}"
        return f"{value:.4g}" if abs(value) >= 10 else f"{value:.3f}"
    if value is None:
        return "–"
    return str(value)
