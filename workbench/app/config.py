"""The settings: one schema (dataclasses, each field with its check), one documented defaults file
(`workbench/cfg/default.yaml`, a `# description` per key), and a user's YAML and command-line overrides on top.

Keys and values are both checked, the way ultralytics' `check_cfg` does: an unknown key, a fraction outside 0..1,
a float where an integer is needed, a string where a number is needed or a null where a value is needed is refused
with one `ConfigError` line that names the key, the value and what is allowed. A bad value never reaches a model.
The defaults live in the YAML only; the dataclasses say what each value is (tests keep the two in step). The GUI
keeps its own choices as overrides of these settings, never as a copy of them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from workbench.app.config_checks import (Check, boolean, choice, device, extensions, fraction, integer, number,
                                         optional_fraction, optional_path, optional_positive, text,
                                         unidentified_band, weights_spec)
from workbench.core.errors import ConfigError
from workbench.core.yaml_io import load_yaml_file, short_error

# inference backends (workbench.app.backends): auto = the fastest exported model of the chosen weights, else torch
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "cfg" / "default.yaml"


def setting(check: Check) -> Any:
    """A settings field: no default here (the defaults file has it), its value check in the metadata."""
    return field(metadata={"check": check})


@dataclass(frozen=True)
class DetectorSettings:
    weights: str | None = setting(weights_spec)
    conf: float = setting(fraction())
    iou: float = setting(fraction(low_open=True))
    imgsz: int = setting(integer(minimum=32, multiple_of=32))
    device: str = setting(device)
    max_det: int = setting(integer(minimum=1))
    trust_weights: bool = setting(boolean)
    backend: str = setting(choice(*BACKENDS))
    nested_ios: float | None = setting(optional_fraction)
    min_cell_um: float | None = setting(optional_positive(20.0, "a cell width"))


@dataclass(frozen=True)
class TilingSettings:
    mode: str = setting(choice("auto", "on", "off"))
    tile_factor: float = setting(number(minimum=1.0))
    overlap: float = setting(number(minimum=0.0, maximum=0.9, high_open=True))  # as detection.TilingConfig
    batch: int = setting(integer(minimum=1))
    edge_margin: int = setting(integer(minimum=0))
    merge_ios: float = setting(fraction(low_open=True))


@dataclass(frozen=True)
class ScaleSettings:
    um_per_px: float | None = setting(optional_positive(10.0))
    estimate: bool = setting(boolean)
    fallback_um_per_px: float | None = setting(optional_positive(10.0))


@dataclass(frozen=True)
class ClassifierSettings:
    weights: str | None = setting(weights_spec)
    batch: int = setting(integer(minimum=1))
    margin: float = setting(number(minimum=0.0, maximum=2.0))
    device: str = setting(device)
    blast_class: str = setting(text())
    backend: str = setting(choice(*BACKENDS))
    unidentified_band: str | list[float] = setting(unidentified_band)


@dataclass(frozen=True)
class ImageSettings:
    max_pixels: int = setting(integer(minimum=1))
    max_bytes: int = setting(integer(minimum=1 << 20))
    extensions: list[str] = setting(extensions)


@dataclass(frozen=True)
class OutputSettings:
    png: bool = setting(boolean)
    font_scale: float = setting(number(minimum=0.05, maximum=10.0))


@dataclass(frozen=True)
class PathSettings:
    weights: str | None = setting(optional_path)
    eval_runs: str | None = setting(optional_path)
    datasets: str | None = setting(optional_path)


@dataclass(frozen=True)
class Settings:
    """Everything an analysis, an evaluation or the GUI runs with."""

    detector: DetectorSettings
    tiling: TilingSettings
    scale: ScaleSettings
    classifier: ClassifierSettings
    images: ImageSettings
    output: OutputSettings
    paths: PathSettings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, section: str) -> dict[str, Any]:
        """settings["detector"]["conf"]: read-only dict access (for code that builds overrides from a section)."""
        return asdict(getattr(self, section))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        """Check every value (and that every key is known) and build the settings."""
        sections = {}
        for section in fields(cls):
            raw = data.get(section.name)
            if not isinstance(raw, dict):
                raise ConfigError(f"config key '{section.name}' must be a mapping")
            kind = section.type if isinstance(section.type, type) else _SECTIONS[section.name]
            known = {f.name: f for f in fields(kind)}
            unknown = sorted(set(raw) - set(known))
            if unknown:
                raise ConfigError(f"unknown config key '{section.name}.{unknown[0]}' (see {DEFAULT_CONFIG_PATH.name} "
                                  f"for the valid keys)")
            missing = sorted(set(known) - set(raw))
            if missing:
                raise ConfigError(f"config key '{section.name}.{missing[0]}' has no value")
            values = {name: f.metadata["check"](f"{section.name}.{name}", raw[name]) for name, f in known.items()}
            sections[section.name] = kind(**values)
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}' (see {DEFAULT_CONFIG_PATH.name} for the valid keys)")
        return cls(**sections)


_SECTIONS = {"detector": DetectorSettings, "tiling": TilingSettings, "scale": ScaleSettings,
             "classifier": ClassifierSettings, "images": ImageSettings, "output": OutputSettings,
             "paths": PathSettings}


def schema() -> dict[str, Check]:
    """Every settings key (dotted) and its check."""
    return {f"{section}.{f.name}": f.metadata["check"] for section, kind in _SECTIONS.items() for f in fields(kind)}


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


def defaults_dict() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the user's YAML (if any), then explicit overrides (e.g. from CLI flags or the GUI); every
    value checked."""
    config = defaults_dict()
    if path is not None:
        try:
            user = load_yaml_file(path) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {short_error(exc)}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"config {path} must be a YAML mapping")
        config = _merge(config, user)
    if overrides:
        config = _merge(config, overrides)
    return Settings.from_dict(config)


def with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """`settings` with some values replaced (nested dict, as load_config's overrides), checked again."""
    return Settings.from_dict(_merge(settings.to_dict(), overrides))
