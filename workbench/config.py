"""The one documented defaults file (`cfg/default.yaml`) and user overrides on top of it.

Keys and values are both checked, the way ultralytics' `check_cfg` does: an unknown key, a fraction outside 0..1,
a float where an integer is needed, a string where a number is needed or a null where a value is needed is refused
with one `ConfigError` line that names the key, the value and what is allowed. A bad value never reaches a model
(where it would give a traceback or, worse, a silently empty result).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from workbench.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("cfg") / "default.yaml"


def _merge(base: dict, override: dict, where: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"unknown config key '{where}{key}' (see {DEFAULT_CONFIG_PATH.name} for the valid keys)")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping")
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


# ----------------------------------------------------------------------------------------------------- value checks

Check = Callable[[str, Any], Any]   # (dotted key, value) -> the checked (possibly normalised) value, or ConfigError


def _describe(value: Any) -> str:
    return "null" if value is None else f"{value!r} ({type(value).__name__})"


def _number(key: str, value: Any) -> float:
    # bool is an int in Python, but `conf: true` is a mistake, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"'{key}' must be a number, not {_describe(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"'{key}' must be a finite number, not {value}")
    return value


def fraction(low_open: bool = False) -> Check:
    """A float in 0..1 (in (0, 1] when `low_open`)."""
    def check(key: str, value: Any) -> float:
        value = float(_number(key, value))
        if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
            interval = "(0, 1]" if low_open else "[0, 1]"
            raise ConfigError(f"'{key}={value:g}' is out of range: it is a fraction in {interval}")
        return value
    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Check:
    def check(key: str, value: Any) -> float:
        value = float(_number(key, value))
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(f"'{key}={value:g}' is out of range [{minimum}, {maximum}]")
        return value
    return check


def integer(minimum: int | None = None, multiple_of: int | None = None) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, not {_describe(value)}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"'{key}={value}' must be at least {minimum}")
        if multiple_of and value % multiple_of:
            raise ConfigError(f"'{key}={value}' must be a multiple of {multiple_of}")
        return value
    return check


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, not {_describe(value)}")
    return value


def choice(*allowed: str) -> Check:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"'{key}' must be one of {', '.join(allowed)}, not {_describe(value)}")
        return value
    return check


def text(optional: bool = False) -> Check:
    def check(key: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"'{key}' must be a non-empty string{' or null' if optional else ''}, "
                              f"not {_describe(value)}")
        return value
    return check


def optional_positive(maximum: float) -> Check:
    def check(key: str, value: Any) -> float | None:
        if value is None:
            return None
        value = float(_number(key, value))
        if not 0.0 < value <= maximum:
            raise ConfigError(f"'{key}={value:g}' is out of range: a pixel size in (0, {maximum:g}] micrometres, "
                              f"or null")
        return value
    return check


def weights_spec(key: str, value: Any) -> str | None:
    """null (the manifest's default), a manifest name or a path."""
    if isinstance(value, Path):
        value = str(value)
    return text(optional=True)(key, value)


_DEVICE = re.compile(r"^(cpu|mps|cuda|cuda:\d+|\d+)$")


def device(key: str, value: Any) -> str:
    """cpu, cuda, cuda:N, N (a CUDA index) or mps. Whether the device exists is checked when a model loads."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DEVICE.match(value.strip().lower()):
        raise ConfigError(f"'{key}' must be cpu, cuda, cuda:N, N or mps, not {_describe(value)}")
    return value.strip().lower()


def extensions(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and re.fullmatch(r"\.\w+", v)
                                                           for v in value):
        raise ConfigError(f"'{key}' must be a non-empty list of file extensions like [.jpg, .png], "
                          f"not {_describe(value)}")
    return [v.lower() for v in value]


# Every leaf of cfg/default.yaml has exactly one check (tests/test_config.py asserts the two agree).
SCHEMA: dict[str, Check] = {
    "detector.weights": weights_spec,
    "detector.conf": fraction(),
    "detector.iou": fraction(low_open=True),
    "detector.imgsz": integer(minimum=32, multiple_of=32),
    "detector.device": device,
    "detector.max_det": integer(minimum=1),
    "tiling.mode": choice("auto", "on", "off"),
    "tiling.tile_factor": number(minimum=1.0),
    "tiling.overlap": number(minimum=0.0, maximum=0.9),
    "tiling.batch": integer(minimum=1),
    "tiling.edge_margin": integer(minimum=0),
    "tiling.merge_ios": fraction(low_open=True),
    "scale.um_per_px": optional_positive(10.0),
    "scale.estimate": boolean,
    "scale.fallback_um_per_px": optional_positive(10.0),
    "classifier.weights": weights_spec,
    "classifier.batch": integer(minimum=1),
    "classifier.margin": number(minimum=0.0, maximum=2.0),
    "classifier.device": device,
    "classifier.blast_class": text(),
    "images.max_pixels": integer(minimum=1),
    "images.extensions": extensions,
    "output.png": boolean,
    "output.font_scale": number(minimum=0.05, maximum=10.0),
}


def _leaves(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check every value against SCHEMA; returns a copy with values normalised (e.g. `imgsz: 640.0` -> 640)."""
    checked = copy.deepcopy(config)
    for key, value in _leaves(config).items():
        check = SCHEMA.get(key)
        if check is None:
            raise ConfigError(f"unknown config key '{key}' (see {DEFAULT_CONFIG_PATH.name} for the valid keys)")
        section, _, leaf = key.rpartition(".")
        node = checked
        for part in section.split("."):
            node = node[part]
        node[leaf] = check(key, value)
    return checked


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the user's YAML (if any), then explicit overrides (e.g. from CLI flags); every value checked."""
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    if path is not None:
        try:
            user = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot read config {path}: {first}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"config {path} must be a YAML mapping")
        config = _merge(config, user)
    if overrides:
        config = _merge(config, overrides)
    return check_config(config)
