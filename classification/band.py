"""The "unidentified" band of p_blast: cells the classifier is not sure enough about wait for a person.

A lab analyser does not force a call on every cell: the ones it cannot place wait as "unidentified" until the
technician decides. Here that is a band (low, high) around the operating threshold, chosen on the validation crops
(never the test crops) by this rule:

- `high` is the lowest p_blast on a 0.01 grid, at or above the operating threshold, from which the crops called
  blast (p_blast >= high) are blasts at least `target` of the time (precision >= target);
- `low` is the highest p_blast on that grid, at or below the threshold, under which the crops called non-blast
  (p_blast < low) are non-blasts at least `target` of the time (negative predictive value >= target);
- a side that never reaches the target goes to the edge of the grid (0.01 / 0.99): those calls always wait.

Cells with low <= p_blast < high are unidentified. The band is stored with the weights (checkpoint meta
`unidentified_band`, or the manifest entry's `unidentified_band` for weights trained before the rule existed) with
the numbers it was chosen from, so anyone can check it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_TARGET = 0.95
RULE = ("band around the operating threshold on a 0.01 grid: high = lowest p_blast whose blast calls (p >= high) "
        "reach the target precision on validation, low = highest p_blast whose non-blast calls (p < low) reach the "
        "target negative predictive value")
_GRID = np.round(np.arange(0.01, 0.9901, 0.01), 2)


def choose_band(is_blast: Sequence[bool], p_blast: Sequence[float], threshold: float = 0.5,
                target: float = DEFAULT_TARGET) -> dict[str, Any]:
    """The band (see the module docstring) for validation crops with truth `is_blast` and scores `p_blast`."""
    y = np.asarray(is_blast, dtype=bool)
    p = np.asarray(p_blast, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or not len(y):
        raise ValueError(f"is_blast and p_blast must be equal-length non-empty vectors, got {y.shape} and {p.shape}")
    if not 0.0 < threshold < 1.0 or not 0.0 < target <= 1.0:
        raise ValueError(f"threshold must be in (0, 1) and target in (0, 1], not {threshold} / {target}")
    high = next((float(h) for h in _GRID if h >= threshold and _precision(y, p >= h) >= target), float(_GRID[-1]))
    low = next((float(lo) for lo in _GRID[::-1] if lo <= threshold and _precision(~y, p < lo) >= target),
               float(_GRID[0]))
    inside = (p >= low) & (p < high)
    return {
        "low": low, "high": high, "target": target, "threshold": float(threshold), "rule": RULE,
        "n": int(len(y)), "n_blast": int(y.sum()),
        "fraction_inside": round(float(inside.mean()), 4),
        "precision_above": _round(_precision(y, p >= high)), "npv_below": _round(_precision(~y, p < low)),
        "errors_outside": int(((p >= high) & ~y).sum() + ((p < low) & y).sum()),
    }


def _precision(positive: np.ndarray, called: np.ndarray) -> float:
    """Fraction of the called crops that are `positive`; 1.0 when nothing is called (no call, no error)."""
    n = int(called.sum())
    return float((positive & called).sum()) / n if n else 1.0


def _round(value: float) -> float:
    return round(float(value), 4)


def band_of(meta: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(low, high) of a stored band (`choose_band`'s dict), or None when there is none or it is not a band."""
    if not isinstance(meta, Mapping):
        return None
    low, high = meta.get("low"), meta.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    low, high = float(low), float(high)
    return (low, high) if 0.0 <= low < high <= 1.0 else None


def in_band(p_blast: float, band: tuple[float, float] | None) -> bool:
    return band is not None and band[0] <= p_blast < band[1]
