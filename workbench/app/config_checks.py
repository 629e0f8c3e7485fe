"""Value checks of the settings, the way ultralytics' `check_cfg` checks its config: each returns the checked (and
normalised) value or raises one ConfigError line naming the key, the value and what is allowed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from workbench.core.errors import ConfigError


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


def number(minimum: float | None = None, maximum: float | None = None, high_open: bool = False) -> Check:
    """A float in [minimum, maximum] ([minimum, maximum) when `high_open`)."""
    def check(key: str, value: Any) -> float:
        value = float(_number(key, value))
        too_high = maximum is not None and (value >= maximum if high_open else value > maximum)
        if (minimum is not None and value < minimum) or too_high:
            raise ConfigError(f"'{key}={value:g}' is out of range [{minimum}, {maximum}{')' if high_open else ']'}")
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


def optional_positive(maximum: float, what: str = "a pixel size") -> Check:
    def check(key: str, value: Any) -> float | None:
        if value is None:
            return None
        value = float(_number(key, value))
        if not 0.0 < value <= maximum:
            raise ConfigError(f"'{key}={value:g}' is out of range: {what} in (0, {maximum:g}] micrometres, "
                              f"or null")
        return value
    return check


def optional_path(key: str, value: Any) -> str | None:
    """null (the built-in place) or a folder path."""
    if isinstance(value, Path):
        value = str(value)
    return text(optional=True)(key, value)


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


def unidentified_band(key: str, value: Any) -> str | list[float]:
    """`weights` (the band stored with the classifier's weights, none if they have none), `off`, or [low, high]:
    two p_blast values with 0 <= low < high <= 1."""
    if value in ("weights", "off"):
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"'{key}' must be weights, off or [low, high], not {_describe(value)}")
    low, high = (float(_number(key, v)) for v in value)
    if not 0.0 <= low < high <= 1.0:
        raise ConfigError(f"'{key}=[{low:g}, {high:g}]' is not a band of p_blast: need 0 <= low < high <= 1")
    return [low, high]


def optional_fraction(key: str, value: Any) -> float | None:
    """null (off) or a fraction in (0, 1]."""
    return None if value is None else fraction(low_open=True)(key, value)
