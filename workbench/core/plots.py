"""Figures written as PNG files: matplotlib's Figure on an Agg canvas (never pyplot), safe in worker threads and
inside the Qt app, written atomically. Used by every evaluation and report."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.core.fileio import write_atomic


def new_figure(width: float, height: float):
    # Figure + Agg canvas, not pyplot: no global backend switch, safe inside the Qt app and in worker threads
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def plot_confusion_matrix(path: Path, matrix: Sequence[Sequence[int]], labels: Sequence[str],
                          title: str, true_labels: Sequence[str] | None = None) -> None:
    """Counts with row-normalised colour (rows: true, columns: predicted)."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    shade = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig = new_figure(1.6 + 1.1 * len(labels), 1.2 + 1.0 * len(true_labels or labels))
    ax = fig.add_subplot()
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(m.shape[0]), true_labels or labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    save_figure(fig, path)
