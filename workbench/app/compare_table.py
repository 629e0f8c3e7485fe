"""The comparison table of `workbench compare`: one row per run with its test metrics and 95% intervals, McNemar's
test of each run against the reference, written as markdown, CSV and a plot.

Intervals (95%):
- accuracy, precision, recall (sensitivity), specificity: Wilson score intervals of the proportion (k of n: correct
  of all crops, blasts among blast calls, blast calls among blasts, normal calls among normals);
- F1 and ROC-AUC: percentile bootstrap over the crops (classification.evaluate.classifier_metrics: 1000 resamples,
  seed 0; resamples where the metric is undefined are left out).
McNemar (classification.evaluate.mcnemar): exact two-sided binomial test under 25 discordant crops, else chi-square
with continuity correction, on each crop's right / wrong call of the two runs at their own stored thresholds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.core.fileio import csv_text, write_atomic

__all__ = ["Z95", "detector_markdown", "mcnemar_rows", "metric_row", "plot_comparison", "table_markdown",
           "wilson_interval", "write_csv"]

Z95 = 1.959963984540054   # the two-sided 95% normal quantile
PROPORTIONS = ("accuracy", "precision", "recall", "specificity")
BOOTSTRAPPED = ("f1", "roc_auc")
METRICS = PROPORTIONS + BOOTSTRAPPED
_LABELS = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "specificity": "Specificity",
           "f1": "F1 (Dice)", "roc_auc": "ROC-AUC"}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of the proportion k / n ((None, None) when n is 0)."""
    if n <= 0:
        return None, None
    p = k / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def metric_row(name: str, y: np.ndarray, p: np.ndarray, threshold: float, info: dict[str, Any]) -> dict[str, Any]:
    """One table row: `info` (architecture, parameters, ms per crop ...) then each metric with its 95% interval."""
    from classification.evaluate import classifier_metrics

    y = np.asarray(y, dtype=bool)
    m = classifier_metrics(y, p, threshold)
    tp, fn = m.confusion[0]
    fp, tn = m.confusion[1]
    counts = {"accuracy": (tp + tn, m.n), "precision": (tp, tp + fp), "recall": (tp, tp + fn),
              "specificity": (tn, tn + fp)}
    row: dict[str, Any] = {"run": name, **info, "threshold": threshold, "n": m.n, "n_blast": m.n_blast,
                           "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for key in METRICS:
        value = getattr(m, key)
        low, high = wilson_interval(*counts[key]) if key in counts else tuple(m.ci95[key])
        row[key], row[f"{key}_low"], row[f"{key}_high"] = value, low, high
    return row


def mcnemar_rows(reference: str, correct: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """McNemar's test of every run against `reference` on the same crops."""
    from classification.evaluate import mcnemar

    rows = []
    for name, right in correct.items():
        if name == reference:
            continue
        r = mcnemar(correct[reference], right)
        rows.append({"run": name, "reference": reference, "both_correct": r.both_correct,
                     "only_reference_correct": r.only_a_correct, "only_run_correct": r.only_b_correct,
                     "both_wrong": r.both_wrong, "statistic": r.statistic, "p_value": r.p_value, "method": r.method})
    return rows


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], key: str) -> str:
    return f"{_num(row[key])} ({_num(row[f'{key}_low'])}–{_num(row[f'{key}_high'])})"


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def table_markdown(rows: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]], reference: str) -> str:
    """The classifier table: one row per run, metrics with 95% intervals, and McNemar's p against the reference."""
    by_run = {t["run"]: t for t in tests}
    head = ["Run", "Architecture", "Head", "Preprocess", "LR schedule", "Input", "Params (M)", "ms / crop",
            *(_LABELS[k] for k in METRICS), f"McNemar p vs {reference}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        test = by_run.get(r["run"])
        mc = "reference" if r["run"] == reference else (
            f"{_p(test['p_value'])} ({test['only_reference_correct']}/{test['only_run_correct']})" if test else "–")
        cells = [r["run"], r["arch"], r["head"], r["preprocess"], r["lr_schedule"], str(r["input_size"]),
                 f"{r['params'] / 1e6:.1f}", f"{r['ms_per_crop']:.1f}", *(_with_ci(r, k) for k in METRICS), mc]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def detector_markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = ["Run", "Model", "Params (M)", "Epochs", "Images", "Instances", "Precision", "Recall", "AP50", "AP50-95",
            "ms / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], r["model"], f"{r['params'] / 1e6:.2f}", str(r["epochs"]), str(r["images"]),
                 str(r["instances"]), _num(r["precision"]), _num(r["recall"]), _num(r["ap50"]), _num(r["ap50_95"]),
                 f"{r['ms_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    write_atomic(path, csv_text([{k: _csv_value(v) for k, v in r.items()} for r in rows], columns))


def _csv_value(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def plot_comparison(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """F1 and ROC-AUC of each run with their 95% intervals."""
    from workbench.core.plots import new_figure, save_figure

    fig = new_figure(1.8 + 0.75 * len(rows), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for offset, key, colour in ((-0.15, "f1", "tab:blue"), (0.15, "roc_auc", "tab:orange")):
        values = [r[key] if r[key] is not None else np.nan for r in rows]
        low = [v - (r[f"{key}_low"] if r[f"{key}_low"] is not None else v) for v, r in zip(values, rows)]
        high = [(r[f"{key}_high"] if r[f"{key}_high"] is not None else v) - v for v, r in zip(values, rows)]
        ax.errorbar(x + offset, values, yerr=[low, high], fmt="o", color=colour, capsize=3, label=_LABELS[key])
    ax.set_xticks(x, [r["run"] for r in rows], rotation=30, ha="right")
    ax.set(ylim=(0, 1.02), ylabel="test value (95% CI)", title="Classifier comparison on the same test crops")
    ax.grid(axis="y", lw=0.4, alpha=0.6)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)
