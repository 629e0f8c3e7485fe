"""The one documented defaults file (`cfg/default.yaml`) and user overrides on top of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

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


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the user's YAML (if any), then explicit overrides (e.g. from CLI flags)."""
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    if path is not None:
        try:
            user = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"config {path} must be a YAML mapping")
        config = _merge(config, user)
    if overrides:
        config = _merge(config, overrides)
    return config
