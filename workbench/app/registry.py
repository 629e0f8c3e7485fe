"""Registering trained weights: copy the file into the weights folder and add its manifest entry.

Every training command writes `manifest_entry.yaml` beside its weights (data, split, hyper-parameters, measured
metrics); `--register NAME` additionally puts the weights into `weights/` so `analyze`, the GUI and eval can pick
them by name.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import yaml

from workbench.core.fileio import write_atomic
from workbench.core.errors import WeightsError
from workbench.app.weights import Manifest, WeightsEntry, sha256_file

log = logging.getLogger(__name__)


def write_entry_file(path: Path, entry: WeightsEntry) -> None:
    write_atomic(path, yaml.safe_dump(asdict(entry), sort_keys=False))


def read_entry_file(path: Path) -> WeightsEntry:
    try:
        return WeightsEntry(**yaml.safe_load(Path(path).read_text()))
    except (OSError, TypeError, yaml.YAMLError) as exc:
        raise WeightsError(f"cannot read manifest entry {path}: {exc}") from exc


def register_weights(weights: Path, entry: WeightsEntry, manifest: Manifest | None = None,
                     make_default: bool = False) -> WeightsEntry:
    """Copy `weights` into the manifest's folder as `<entry.name><suffix>` and list it (replacing an entry of the
    same name). The sha256 is computed on the copied file, so the manifest always describes what is on disk."""
    manifest = manifest or Manifest.load()
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"cannot register {weights}: file not found")
    target = manifest.folder / f"{entry.name}{weights.suffix}"
    if weights.resolve() != target.resolve():
        manifest.folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(weights, tmp)
        tmp.replace(target)
    entry.file = target.name
    entry.sha256 = sha256_file(target)
    manifest.add(entry, make_default=make_default)
    manifest.save()
    log.info("registered %s as '%s' in %s", target, entry.name, manifest.path)
    return entry
