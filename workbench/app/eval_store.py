"""Saved evaluation runs: one folder per run holding `metrics.json` (and its plots, tables, predictions), so the GUI
and `workbench eval list` can show past runs.

Runs go to `EVAL_RUNS_DIR/<YYYYmmdd-HHMMSS>-<kind>` unless `--out` names a folder; a run written elsewhere is
recorded in `EVAL_RUNS_DIR/external.txt` (one folder per line), so it is listed too. `EVAL_RUNS_DIR` is
`<repo>/runs/eval`, or the folder the environment variable SMEAR_EVAL_RUNS names (read at import).

Every metrics.json has the keys of `base_metrics`: kind, created, workbench_version, weights {name, path, sha256},
data, split, thresholds, summary (flat dict of headline numbers), per_class, plots {name: png file relative to the
run folder}, tables {name: csv file}.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.core.errors import EvalRunError, WorkbenchError
from workbench.app.results import write_atomic
from workbench.app.paths import eval_runs_dir

log = logging.getLogger(__name__)

EVAL_RUNS_DIR = eval_runs_dir()
METRICS_NAME = "metrics.json"
EXTERNAL_NAME = "external.txt"
KINDS = ("detection", "classifier", "pipeline", "comparison")
# the headline numbers each kind's summary is guaranteed to hold (None where undefined for the data)
SUMMARY_KEYS = {
    "detection": ("precision", "recall", "ap50", "ap50_95", "images", "instances"),
    "classifier": ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"),
    "pipeline": ("wbc_precision", "wbc_recall", "blast_precision", "blast_recall", "blast_f1", "count_mae",
                 "image_sensitivity", "image_specificity"),
    "comparison": ("runs", "reference", "test_crops", "best_f1_run", "best_f1"),   # `workbench compare`
}


@dataclass
class EvalRun:
    path: Path                       # the run folder
    kind: str                        # detection | classifier | pipeline
    created: str                     # ISO 8601, UTC
    name: str                        # the folder name
    metrics: dict[str, Any]          # metrics.json as written
    plots: dict[str, Path] = field(default_factory=dict)  # plot name -> absolute PNG path (existing files only)

    @property
    def summary(self) -> dict[str, Any]:
        return self.metrics.get("summary", {})


def eval_runs_root(configured: Path | str | None = None) -> Path:
    """The runs root: the `paths.eval_runs` setting when given, else EVAL_RUNS_DIR."""
    return _root(configured)


def _root(root: Path | str | None) -> Path:
    return Path(root).expanduser() if root else EVAL_RUNS_DIR


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_dir(kind: str, out: Path | str | None = None, root: Path | str | None = None) -> Path:
    """Create and return the folder of a new run: `out` when given, else a new timestamped folder in the runs root
    (never an existing one: two runs in the same second get -2, -3 ...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown eval kind {kind!r}")
    if out is not None:
        path = Path(out).expanduser()
        _mkdir(path)
        return path
    base = _root(root)
    stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}"
    for n in range(1, 1000):
        path = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise WorkbenchError(f"cannot create eval run folder {path}: {exc.strerror or exc}") from None
    raise WorkbenchError(f"cannot find a free run folder name for {base / stamp}")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"cannot create output folder {path}: {exc.strerror or exc}") from None


def base_metrics(kind: str, weights: dict[str, Any], data: str, split: str | None, thresholds: dict[str, Any],
                 summary: dict[str, Any], per_class: dict[str, Any] | None, plots: dict[str, str],
                 tables: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """The common metrics.json layout; `extra` keys follow the common ones."""
    missing = [k for k in SUMMARY_KEYS[kind] if k not in summary]
    if missing:
        raise ValueError(f"{kind} summary lacks {missing}")
    return {"kind": kind, "created": now_iso(), "workbench_version": __version__, "weights": weights,
            "data": data, "split": split, "thresholds": thresholds, "summary": summary,
            "per_class": per_class or {}, "plots": plots, "tables": tables or {}, **extra}


def save_run(run_dir: Path, metrics: dict[str, Any], root: Path | str | None = None) -> Path:
    """Write `run_dir/metrics.json` (last, so a folder with metrics.json is a complete run) and record a run outside
    the runs root in its external.txt."""
    path = Path(run_dir) / METRICS_NAME
    write_atomic(path, json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
    _register_external(Path(run_dir), _root(root))
    return path


def _jsonable(value: Any) -> Any:
    """NaN/inf are not JSON: an undefined number is written as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def _register_external(run_dir: Path, root: Path) -> None:
    run_dir = run_dir.resolve()
    try:
        run_dir.relative_to(root.resolve())
        return  # inside the root: found by scanning
    except ValueError:
        pass
    listed = _external(root)
    if run_dir in listed:
        return
    try:
        write_atomic(root / EXTERNAL_NAME, "".join(f"{p}\n" for p in [*listed, run_dir]))
    except OSError as exc:  # the run itself is written; only the GUI's list would miss it
        log.warning("could not record %s in %s: %s", run_dir, root / EXTERNAL_NAME, exc)


def _external(root: Path) -> list[Path]:
    try:
        lines = (root / EXTERNAL_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [Path(line.strip()) for line in lines if line.strip()]


def load_eval_run(path: Path | str) -> EvalRun:
    """A run from its folder (or its metrics.json). Raises EvalRunError when it is missing or not a run."""
    path = Path(path)
    folder = path.parent if path.name == METRICS_NAME else path
    file = folder / METRICS_NAME
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalRunError(f"{folder} is not an eval run (no {METRICS_NAME})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalRunError(f"{file}: unreadable ({exc})") from None
    if not isinstance(metrics, dict) or metrics.get("kind") not in KINDS:
        raise EvalRunError(f"{file}: not an eval metrics file (kind must be one of {', '.join(KINDS)})")
    plots = {name: folder / rel for name, rel in (metrics.get("plots") or {}).items() if (folder / rel).is_file()}
    return EvalRun(path=folder, kind=metrics["kind"], created=str(metrics.get("created", "")), name=folder.name,
                   metrics=metrics, plots=plots)


def list_eval_runs(root: Path | str | None = None) -> list[EvalRun]:
    """Every run in the runs root (and those recorded in its external.txt), newest first. Folders that are not
    readable runs are skipped (logged), so one damaged run never hides the others."""
    base = _root(root)
    folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    folders += [p for p in _external(base) if p.is_dir()]
    runs, seen = [], set()
    for folder in folders:
        if not (folder / METRICS_NAME).is_file() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        try:
            runs.append(load_eval_run(folder))
        except EvalRunError as exc:
            log.warning("skipping %s", exc)
    runs.sort(key=lambda r: (r.created, r.name), reverse=True)
    return runs
