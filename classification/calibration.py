"""Calibration of blast probabilities: the reliability curve and the expected calibration error.

A technician reads p_blast as a probability ("0.8: eight in ten such cells are blasts"). Whether it is one is
measured by binning the crops by p_blast (equal-width bins) and comparing each bin's mean p_blast with its fraction
of true blasts; the expected calibration error (ECE) is the crop-weighted mean of those gaps (Guo et al. 2017), the
maximum calibration error (MCE) the largest one.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BINS = 10


def reliability(y_true: Sequence[bool], p_blast: Sequence[float], bins: int = BINS) -> dict[str, Any]:
    """Per bin [lo, hi) (the last one closed): crops, mean p_blast, fraction of blasts; and ECE / MCE."""
    y = np.asarray(y_true, dtype=bool)
    p = np.clip(np.asarray(p_blast, dtype=float), 0.0, 1.0)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true and p_blast must be equal-length vectors, got {y.shape} and {p.shape}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum(np.digitize(p, edges[1:-1], right=False), bins - 1)
    rows, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        row = {"lo": round(float(edges[b]), 4), "hi": round(float(edges[b + 1]), 4), "n": n,
               "mean_p_blast": float(p[mask].mean()) if n else None,
               "fraction_blast": float(y[mask].mean()) if n else None}
        if n:
            gap = abs(row["mean_p_blast"] - row["fraction_blast"])
            ece += gap * n / len(y)
            mce = max(mce, gap)
        rows.append(row)
    return {"bins": rows, "ece": float(ece) if len(y) else None, "mce": float(mce) if len(y) else None,
            "n_bins": bins, "binning": "equal width"}


def plot_reliability(path, table: dict[str, Any], title: str) -> None:
    from workbench.core.plots import new_figure, save_figure

    fig = new_figure(5.2, 5.2)
    ax = fig.add_subplot()
    xs = [r["mean_p_blast"] for r in table["bins"] if r["n"]]
    ys = [r["fraction_blast"] for r in table["bins"] if r["n"]]
    ns = [r["n"] for r in table["bins"] if r["n"]]
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--", label="perfectly calibrated")
    ax.plot(xs, ys, "o-", label=f"crops (ECE {table['ece']:.3f})" if table["ece"] is not None else "crops")
    for x, y, n in zip(xs, ys, ns):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean p_blast in the bin", ylabel="fraction of blasts in the bin",
           title=title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)
