"""argparse value types shared by the sub-commands: a bad value is refused by the parser as one `error:` line
(exit 2) before anything runs. Settings that live in cfg/default.yaml are checked by workbench.app.config instead."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# the documented exit codes of every command: 0 done; 1 some inputs could not be used (the rest is written and the
# failures are listed); 2 a usage, settings, weights or data error (nothing done)
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def fraction(text: str) -> float:
    """A probability / threshold in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], not {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], not {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite size or distance, 0 allowed."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text}")
    return value


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="YAML", help="settings file overriding workbench/cfg/default.yaml")


def configured_paths(args: argparse.Namespace):
    """The `paths:` section of the --config settings (the defaults without one)."""
    from workbench.app.config import load_config

    return load_config(getattr(args, "config", None)).paths


def command_settings(args: argparse.Namespace, detector: dict | None = None, classifier: dict | None = None,
                     **sections: dict):
    """The --config settings with a command's options on top: an option left unset (None) keeps the setting. The
    options several commands share are read here: --tile, --trust-weights and --backend (both models)."""
    from workbench.app.config import load_config

    overrides = {"detector": dict(detector or {}), "classifier": dict(classifier or {}), "tiling": {},
                 **{name: dict(values) for name, values in sections.items()}}
    if getattr(args, "tile", None) is not None:
        overrides["tiling"]["mode"] = args.tile
    if getattr(args, "trust_weights", False):
        overrides["detector"]["trust_weights"] = True
    if getattr(args, "backend", None) is not None:
        overrides["detector"]["backend"] = overrides["classifier"]["backend"] = args.backend
    given = {name: {k: v for k, v in values.items() if v is not None} for name, values in overrides.items()}
    return load_config(getattr(args, "config", None), {name: values for name, values in given.items() if values})


BACKEND_HELP = ("where the models run: auto (default: the fastest export of the chosen weights made by `workbench "
                "export`, else torch), torch, openvino or onnxruntime (an export of these weights; no fallback)")


def add_backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["auto", "torch", "openvino", "onnxruntime"], help=BACKEND_HELP)


class WorkbenchParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (with where to get help) and exit code 2, like every other
    user error; sub-command parsers inherit it. Here, light, so the launcher's window path uses it too."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        import sys

        from workbench.core.text import printable

        print(f"error: {self.prog}: {printable(message)} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_ERROR)
