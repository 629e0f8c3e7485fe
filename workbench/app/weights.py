"""The weights registry: `weights/manifest.yaml` says what each shipped (or user-registered) weight file is.

Each entry records task, architecture, class names, input size, sha256, the data and split it was trained on and
its measured metrics. Loading a listed file checks its sha256 and class names, so a swapped or damaged file is
refused with a clear message instead of silently giving different results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.core.fileio import sha256_file
from workbench.core.errors import WeightsError
from workbench.app.paths import MANIFEST_NAME, weights_dir
from workbench.app.results import ModelInfo, write_atomic

TASKS = ("detect", "classify")


@dataclass
class WeightsEntry:
    name: str
    file: str
    task: str                      # detect | classify
    architecture: str
    class_names: list[str]
    input_size: int
    sha256: str
    default: bool = False
    data: str = ""
    split: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    pixel_size_um: float | None = None   # detector: the pixel size it was trained at (images are resampled to it)
    unidentified_band: dict[str, Any] | None = None  # classifier: p_blast band chosen on validation (app/band.py)


@dataclass
class ExportEntry:
    """An exported copy of listed weights for another runtime (`workbench export`): matched to its parent weights by
    the parent's sha256, so an export of other weights is never used for them. `path` (the .onnx file or the
    `<name>_openvino_model/` folder) and the keys of `files` are relative to the manifest's folder."""

    name: str
    parent: str
    parent_sha256: str
    task: str                      # detect | classify
    format: str                    # openvino | onnx
    path: str
    files: dict[str, str]          # every file of the export -> its sha256 (checked before loading)
    input_size: int
    dynamic_batch: bool = True
    precision: str = "fp32"
    max_deviation: dict[str, Any] = field(default_factory=dict)   # measured against PyTorch on real images
    timing_ms: dict[str, Any] = field(default_factory=dict)       # measured at export, same images: torch vs this
    exported_with: dict[str, str] = field(default_factory=dict)   # library versions
    created: str = ""


@dataclass
class ResolvedWeights:
    """A weight file to load, with its manifest entry when it has one."""

    path: Path
    entry: WeightsEntry | None
    sha256: str

    def model_info(self, architecture: str, class_names: list[str], input_size: int) -> ModelInfo:
        name = self.entry.name if self.entry else self.path.stem
        return ModelInfo(name=name, path=str(self.path), sha256=self.sha256, architecture=architecture,
                         class_names=list(class_names), input_size=int(input_size))


class Manifest:
    def __init__(self, path: Path, entries: list[WeightsEntry], exports: list[ExportEntry] | None = None) -> None:
        self.path = Path(path)
        self.entries = entries
        self.exports = list(exports or [])

    @property
    def folder(self) -> Path:
        return self.path.parent

    @classmethod
    def in_folder(cls, folder: str | Path | None) -> "Manifest":
        """The manifest of a weights folder (the `paths.weights` setting); None = the shipped weights."""
        return cls.load(weights_dir(folder) / MANIFEST_NAME if folder else None)

    @classmethod
    def load(cls, path: Path | None = None) -> "Manifest":
        # None: the checkout's weights/ or the installed copy, or SMEAR_WEIGHTS_DIR (e.g. a site-wide model store),
        # resolved now rather than at import so that setting the variable later takes effect (workbench.app.paths)
        path = Path(path) if path else weights_dir() / MANIFEST_NAME
        if not path.exists():
            return cls(path, [])
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            entries = [WeightsEntry(**e) for e in raw.get("weights", [])]
            exports = [ExportEntry(**e) for e in raw.get("exports") or []]
        except (OSError, yaml.YAMLError, TypeError, AttributeError) as exc:
            raise WeightsError(f"weights manifest {path} is invalid: {exc}") from exc
        for entry in entries:
            if entry.task not in TASKS:
                raise WeightsError(f"weights manifest {path}: entry '{entry.name}' has unknown task '{entry.task}'")
        return cls(path, entries, exports)

    def save(self) -> None:
        header = ("# Smear Workbench weights manifest: one entry per weight file in this folder. Loading checks sha256\n"
                  "# and class names. Metrics are measured (see README: Training / Evaluation), never estimated.\n")
        data: dict[str, Any] = {"weights": [asdict(e) for e in self.entries]}
        if self.exports:
            data["exports"] = [asdict(e) for e in self.exports]
        body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        write_atomic(self.path, header + body)

    def add(self, entry: WeightsEntry, make_default: bool = False) -> None:
        self.entries = [e for e in self.entries if e.name != entry.name]
        if make_default:
            for e in self.entries:
                if e.task == entry.task:
                    e.default = False
            entry.default = True
        self.entries.append(entry)

    def file_of(self, entry: WeightsEntry) -> Path:
        return (self.folder / entry.file).resolve()

    def default(self, task: str) -> WeightsEntry | None:
        candidates = [e for e in self.entries if e.task == task]
        defaults = [e for e in candidates if e.default]
        return (defaults or candidates or [None])[0]

    def by_name(self, name: str) -> WeightsEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def by_path(self, path: Path) -> WeightsEntry | None:
        resolved = Path(path).resolve()
        return next((e for e in self.entries if self.file_of(e) == resolved), None)

    def of_task(self, task: str) -> list[WeightsEntry]:
        return [e for e in self.entries if e.task == task]

    def exports_of(self, sha256: str, task: str) -> list[ExportEntry]:
        """The exports made from the weights with this sha256."""
        return [e for e in self.exports if e.parent_sha256 == sha256 and e.task == task]

    def add_export(self, export: ExportEntry) -> None:
        """List `export`, replacing an export of the same parent weights and format."""
        self.exports = [e for e in self.exports
                        if not (e.parent_sha256 == export.parent_sha256 and e.format == export.format)
                        and e.name != export.name]
        self.exports.append(export)


def resolve_weights(spec: str | Path | None, task: str, manifest: Manifest | None = None) -> ResolvedWeights:
    """`spec` is None (the manifest's default for `task`), a manifest entry name, or a path to a weight file.
    Listed files are checked against their sha256; unlisted user files are accepted (their classes are checked
    when the model loads)."""
    manifest = manifest or Manifest.load()
    what = "detector" if task == "detect" else "classifier"
    if spec is None or str(spec) == "":
        entry = manifest.default(task)
        if entry is None:
            raise WeightsError(f"no default {what} weights in {manifest.path}; pass --{what} PATH")
        path = manifest.file_of(entry)
    elif manifest.by_name(str(spec)) is not None and not Path(spec).exists():
        entry = manifest.by_name(str(spec))
        path = manifest.file_of(entry)
    else:
        path = Path(spec).expanduser()
        entry = manifest.by_path(path) if path.exists() else None
    if not path.is_file():
        raise WeightsError(f"{what} weights not found: {path}")
    if entry is not None and entry.task != task:
        raise WeightsError(f"{path.name} is listed as a '{entry.task}' model, not a {what}")
    digest = sha256_file(path)
    if entry is not None and entry.sha256 and digest != entry.sha256:
        raise WeightsError(f"{what} weights {path.name} do not match the manifest (sha256 {digest[:12]}... != "
                           f"{entry.sha256[:12]}...): the file was changed or damaged")
    return ResolvedWeights(path=path, entry=entry, sha256=digest)


def check_class_names(resolved: ResolvedWeights, model_class_names: list[str]) -> None:
    """A listed file's model must have exactly the manifest's classes, in order (ids are never renumbered)."""
    if resolved.entry is None:
        return
    if [c.lower() for c in model_class_names] != [c.lower() for c in resolved.entry.class_names]:
        raise WeightsError(f"{resolved.path.name} has classes {model_class_names} but the manifest lists "
                           f"{resolved.entry.class_names}")
