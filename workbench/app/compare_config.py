"""The comparison file of `workbench compare --config zoo.yaml`: which classifiers (architecture x preprocessing x
LR schedule ...) and which detectors to train on the same split with the same seed, and how to evaluate them.

```yaml
data: ../datasets/build/crops_v3    # crop build folder or its split.csv; relative paths: to this file's folder
seed: 0                             # every run: the same seed (and so the same sampling of the same split)
reference: b3_dwell                 # McNemar's test of every other run against this one (default: the first)
deterministic: true                 # torch deterministic algorithms: a rerun reproduces the numbers (on CPU)
threads: 2                          # torch CPU threads (the numbers depend on it; fixed for reproducibility)
subset: {val: 120, test: 200}       # optional: at most N crops of a split (all blasts up to N/2, then normals)
test: {split: test, extra_normal: true}   # the crops every run is evaluated on
train: {input_size: 96, epochs: 4}  # options for every run: any `workbench train classifier` option
runs:                               # one per classifier, each option as in `train`, overriding it
  - {name: b3_dwell, arch: efficientnet_b3, lr_schedule: dwell}
  - {name: b3_fixed, arch: efficientnet_b3, lr_schedule: fixed}
detectors:                          # optional
  data: ../datasets/build/bccd/data.yaml   # ultralytics data yaml (train / val)
  eval: {data: ../datasets/build/bccd/data.yaml, split: test}   # default: the data yaml's test split
  train: {epochs: 10, imgsz: 320}   # any `workbench train detector` setting (DetectorTrainConfig field)
  runs:
    - {name: yolov8n, model: yolov8n.yaml}
    - {name: yolov5nu, model: yolov5nu.yaml}
```

Every key is checked: a misspelt option is an error, not a silently ignored setting. No torch at import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError

__all__ = ["CompareConfig", "DetectorRun", "load_compare_config"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOP = {"data", "seed", "reference", "deterministic", "threads", "subset", "test", "train", "runs", "detectors"}
# set by the comparison itself, so that every run shares them
_OWNED = {"data", "out", "seed", "deterministic", "num_threads", "device", "resume", "exist_ok"}
_DETECTOR_OWNED = {"data", "project", "name", "seed", "device", "resume", "model"}


class CompareConfigError(WorkbenchError):
    """The comparison file is missing, unreadable or names something it cannot do."""


@dataclass
class DetectorRun:
    name: str
    model: str
    train: dict[str, Any]


@dataclass
class CompareConfig:
    path: Path
    data: Path
    seed: int = 0
    reference: str = ""
    deterministic: bool = True
    threads: int | None = None
    subset: dict[str, int] = field(default_factory=dict)
    test_split: str = "test"
    test_extra_normal: bool = True
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # (name, ClassifierTrainConfig options)
    detector_data: Path | None = None
    detector_eval: tuple[Path, str] | None = None
    detectors: list[DetectorRun] = field(default_factory=list)

    def run_names(self) -> list[str]:
        return [name for name, _ in self.runs]


def _fail(path: Path, message: str) -> CompareConfigError:
    return CompareConfigError(f"{path}: {message}")


def _mapping(path: Path, value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{what} must be a mapping, not {type(value).__name__}")
    return value


def _resolve(path: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"{what} must be a path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (path.parent / p)


def _options(path: Path, values: dict[str, Any], known: set[str], owned: set[str], what: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key in owned:
            raise _fail(path, f"{what}: '{key}' is set by the comparison for every run, not per run")
        if key not in known:
            raise _fail(path, f"{what}: unknown option '{key}'")
        out[key] = value
    return out


def _name(path: Path, item: dict[str, Any], index: int, seen: set[str], what: str) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"{what} {index + 1}: 'name' must be 1-64 letters, digits, '_', '.', '-'")
    if name in seen:
        raise _fail(path, f"{what} name '{name}' is used twice")
    seen.add(name)
    return name


def load_compare_config(path: Path | str) -> CompareConfig:
    """Read and check a comparison file (CompareConfigError with the file and the problem)."""
    import yaml

    from classification.train_config import ClassifierTrainConfig

    path = Path(path).expanduser()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareConfigError(f"comparison file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(path, f"not a readable YAML file ({str(exc).splitlines()[0]})") from None
    raw = _mapping(path, raw, "the file")
    unknown = sorted(set(map(str, raw)) - _TOP)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})")
    if "data" not in raw:
        raise _fail(path, "'data' (the crop build) is required")
    config = CompareConfig(path=path, data=_resolve(path, raw["data"], "data"))
    seed, threads = raw.get("seed", 0), raw.get("threads")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, f"seed must be an integer, not {seed!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise _fail(path, f"threads must be a positive integer, not {threads!r}")
    config.seed, config.threads = seed, threads
    config.deterministic = bool(raw.get("deterministic", True))
    for split, n in _mapping(path, raw.get("subset"), "subset").items():
        if split not in ("train", "val", "test") or not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise _fail(path, f"subset: expected train/val/test: N >= 2, got {split}: {n!r}")
        config.subset[split] = n
    test = _mapping(path, raw.get("test"), "test")
    if set(test) - {"split", "extra_normal"}:
        raise _fail(path, "test: only 'split' and 'extra_normal' are known")
    config.test_split = str(test.get("split", "test"))
    config.test_extra_normal = bool(test.get("extra_normal", True))

    known = {f.name for f in fields(ClassifierTrainConfig)}
    defaults = _options(path, _mapping(path, raw.get("train"), "train"), known, _OWNED, "train")
    runs = raw.get("runs")
    if not isinstance(runs, list) or not runs:
        raise _fail(path, "'runs' must list at least one classifier run")
    seen: set[str] = set()
    for i, item in enumerate(runs):
        item = _mapping(path, item, f"run {i + 1}")
        name = _name(path, item, i, seen, "run")
        options = _options(path, {k: v for k, v in item.items() if k != "name"}, known, _OWNED, f"run {name}")
        merged = {**defaults, **options}
        try:
            ClassifierTrainConfig(data=str(config.data), **merged).check()
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"run {name}: {exc}") from None
        config.runs.append((name, merged))
    reference = raw.get("reference", config.runs[0][0])
    if reference not in seen:
        raise _fail(path, f"reference '{reference}' is not one of the runs ({', '.join(seen)})")
    config.reference = str(reference)
    _detectors(path, _mapping(path, raw.get("detectors"), "detectors"), config)
    return config


def _detectors(path: Path, raw: dict[str, Any], config: CompareConfig) -> None:
    if not raw:
        return
    from detection.train import DetectorTrainConfig

    if set(raw) - {"data", "eval", "train", "runs"}:
        raise _fail(path, "detectors: only 'data', 'eval', 'train' and 'runs' are known")
    config.detector_data = _resolve(path, raw.get("data"), "detectors: data")
    ev = _mapping(path, raw.get("eval"), "detectors: eval")
    config.detector_eval = (_resolve(path, ev["data"], "detectors: eval data") if "data" in ev else
                            config.detector_data, str(ev.get("split", "test")))
    known = {f.name for f in fields(DetectorTrainConfig)}
    defaults = _options(path, _mapping(path, raw.get("train"), "detectors: train"), known, _DETECTOR_OWNED,
                        "detectors: train")
    runs = raw.get("runs")
    if not isinstance(runs, list) or not runs:
        raise _fail(path, "detectors: 'runs' must list at least one detector")
    seen: set[str] = set(config.run_names())
    for i, item in enumerate(runs):
        item = _mapping(path, item, f"detector {i + 1}")
        name = _name(path, item, i, seen, "detector")
        model = item.get("model")
        if not isinstance(model, str) or not model.endswith((".yaml", ".yml")):
            raise _fail(path, f"detector {name}: 'model' must be an ultralytics model yaml such as yolov8n.yaml")
        options = _options(path, {k: v for k, v in item.items() if k not in ("name", "model")}, known,
                           _DETECTOR_OWNED, f"detector {name}")
        config.detectors.append(DetectorRun(name, model, {**defaults, **options}))
