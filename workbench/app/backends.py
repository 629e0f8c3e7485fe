"""Which runtime a model runs on: PyTorch, or an exported copy of its weights on OpenVINO or ONNX Runtime.

`backend` (settings `detector.backend` / `classifier.backend`, `--backend`):
- `torch`: the checkpoint itself, on any device;
- `openvino` / `onnxruntime`: the export of exactly these weights (the manifest's `exports`, matched by the parent's
  sha256; `workbench export` makes them), on the CPU. Missing export, runtime not installed, a file that does not
  match its sha256 or does not load: one error line, no fallback (the user asked for this backend);
- `auto`: on the CPU, the fastest export of these weights that loads (OpenVINO, then ONNX Runtime: measured in one
  run, README "Speed"; an export measured slower than PyTorch when it was made is never picked), else PyTorch. An export that fails is said in one warning
  line and the next one is tried. On a GPU device, PyTorch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from workbench.app.weights import ExportEntry, Manifest, ResolvedWeights, sha256_file
from workbench.core.errors import ConfigError, WeightsError, WorkbenchError
from workbench.core.runtimes import FORMATS, RUNTIMES, missing_runtime

log = logging.getLogger(__name__)

TORCH = "torch"
PREFERENCE = ("openvino", "onnxruntime")   # the faster first (`workbench bench`, README "Speed")


@dataclass
class Chosen:
    """The loaded network of one model and the backend it runs on (`export`: the manifest entry, None for torch)."""

    model: Any
    backend: str
    export: ExportEntry | None = None


def export_location(manifest: Manifest, export: ExportEntry) -> Path:
    return (manifest.folder / export.path).resolve()


def verify_export(manifest: Manifest, export: ExportEntry, what: str) -> Path:
    """The export's path once every file it lists matches its sha256 (a changed, damaged or swapped file is
    refused before any runtime parses it)."""
    if not export.files:
        raise WeightsError(f"{what} export {export.name} lists no files in {manifest.path}")
    for rel, digest in export.files.items():
        path = (manifest.folder / rel).resolve()
        if not path.is_file():
            raise WeightsError(f"{what} export {export.name}: {rel} not found (run `workbench export` again)")
        actual = sha256_file(path)
        if actual != digest:
            raise WeightsError(f"{what} export {export.name}: {rel} does not match the manifest (sha256 "
                               f"{actual[:12]}... != {str(digest)[:12]}...): the file was changed or damaged")
    return export_location(manifest, export)


def _speed_order(exports: list[ExportEntry]) -> list[ExportEntry]:
    """The exports `auto` tries, fastest first: OpenVINO, then ONNX Runtime (measured in one run on the same images,
    README "Speed"). An export whose own measurement at export time was slower than PyTorch's is left out. (The
    timings of two exports were taken at different times, under whatever else the machine did then, so they do not
    rank two runtimes against each other.)"""
    usable = []
    for e in exports:
        if e.format not in FORMATS:
            continue
        timing = e.timing_ms if isinstance(e.timing_ms, dict) else {}
        torch_ms, own = timing.get(TORCH), timing.get(FORMATS[e.format])
        if isinstance(torch_ms, (int, float)) and isinstance(own, (int, float)) and own >= torch_ms:
            continue
        usable.append(e)
    return sorted(usable, key=lambda e: PREFERENCE.index(FORMATS[e.format]))


def choose(requested: str, device: str, what: str, resolved: ResolvedWeights, manifest: Manifest,
           load_export: Callable[[Path, str], Any], load_torch: Callable[[], Any]) -> Chosen:
    """Load the model of `resolved` on the backend `requested` (see the module doc). `what`: detector | classifier
    (in messages); `load_export(path, backend)` / `load_torch()` load the network and raise WorkbenchError (one
    line) when they cannot."""
    task = "detect" if what == "detector" else "classify"
    name = resolved.entry.name if resolved.entry is not None else resolved.path.name
    exports = manifest.exports_of(resolved.sha256, task)
    if requested == TORCH:
        return Chosen(load_torch(), TORCH)
    if requested in RUNTIMES:
        if device != "cpu":
            raise ConfigError(f"the {requested} backend runs on the CPU, not on '{device}': use --backend torch "
                              f"with --device {device}")
        fmt = RUNTIMES[requested][1]
        export = next((e for e in exports if e.format == fmt), None)
        if export is None:
            raise WeightsError(f"no {fmt} export of the {what} {name} (sha256 {resolved.sha256[:12]}...) in "
                               f"{manifest.path}: make one with `workbench export --format {fmt} --{what} {name}`")
        return _load(requested, export, what, manifest, load_export)
    if requested != "auto":
        raise ConfigError(f"unknown backend {requested!r} (auto, torch, {', '.join(RUNTIMES)})")
    if device != "cpu":
        return Chosen(load_torch(), TORCH)
    for export in _speed_order(exports):
        backend = FORMATS[export.format]
        try:
            return _load(backend, export, what, manifest, load_export)
        except WorkbenchError as exc:
            log.warning("%s %s: the %s backend is not used (%s); falling back", what, name, backend, exc)
    return Chosen(load_torch(), TORCH)


def _load(backend: str, export: ExportEntry, what: str, manifest: Manifest,
          load_export: Callable[[Path, str], Any]) -> Chosen:
    problem = missing_runtime(backend)
    if problem:
        raise ConfigError(problem)
    path = verify_export(manifest, export, what)
    return Chosen(load_export(path, backend), backend, export)
