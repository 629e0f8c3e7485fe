"""The one results schema: produced by the pipeline, read by the GUI, the CLI, exports and eval.

JSON layout (schema_version 3; version 1 files, without `scale`, and version 2 files, without the per-cell review, still
load) is documented in README.md ("Results schema"). Boxes are `xyxy` in original image pixels (floats, top-left
origin). A cell's `label` is its class now (the classifier's call at its operating threshold, or the reviewer's);
`analysed_label` the classifier's call as analysed; `p_blast` is the classifier's probability of the blast class.

Two counts per image: `counts` after review (what the technician signs) and `counts_as_analysed` (what the pipeline
said). A cell whose p_blast fell inside the classifier's unidentified band (`unidentified`) counts in neither blasts
nor non-blasts until someone reviews it: it is counted as `unidentified` (waiting) and left out of blast %.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from workbench.core.fileio import (csv_text, write_atomic)  # noqa: F401  (write_atomic re-exported for the app's writers)

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

CELL_CSV_COLUMNS = [
    "image", "sample_id", "cell_id", "x1", "y1", "x2", "y2", "det_conf", "label", "label_conf", "p_blast",
    "analysed_label", "unidentified", "reviewed",
]


@dataclass
class CellDetection:
    """One white blood cell: where it is, how sure the detector is, and what the classifier calls it."""

    cell_id: int
    xyxy: tuple[float, float, float, float]
    det_conf: float
    label: str
    label_conf: float
    p_blast: float
    reviewed: bool = False              # a person confirmed or changed this cell's label
    analysed_label: str | None = None   # the pipeline's label; None: a box drawn or imported by hand
    unidentified: bool = False          # p_blast fell inside the classifier's unidentified band at analysis

    @property
    def is_blast(self) -> bool:
        return self.label == "blast"

    @property
    def waiting(self) -> bool:
        """Unidentified and not reviewed yet: counted neither as blast nor as non-blast."""
        return self.unidentified and not self.reviewed


@dataclass
class CellCounts:
    """White cells, blasts, normal (non-blast) cells, unidentified cells still waiting for review, and blast % of
    the identified cells: 100 x blast / (wbc - unidentified)."""

    wbc: int = 0
    blast: int = 0
    normal: int = 0
    blast_pct: float = 0.0
    unidentified: int = 0

    @classmethod
    def _count(cls, calls: list[tuple[str, bool]]) -> "CellCounts":
        """From (label, waiting) per cell."""
        waiting = sum(w for _, w in calls)
        blast = sum(label == "blast" and not w for label, w in calls)
        normal = sum(label == "normal" and not w for label, w in calls)
        identified = len(calls) - waiting
        return cls(wbc=len(calls), blast=blast, normal=normal, unidentified=waiting,
                   blast_pct=round(100.0 * blast / identified, 2) if identified else 0.0)

    @classmethod
    def of(cls, cells: Iterable[CellDetection]) -> "CellCounts":
        """After review: each cell by its label now; unidentified cells wait until reviewed."""
        return cls._count([(c.label, c.waiting) for c in cells])

    @classmethod
    def as_analysed(cls, cells: Iterable[CellDetection]) -> "CellCounts":
        """As the pipeline said: each analysed cell by its analysed label, every unidentified one waiting; boxes
        drawn or imported by hand (no analysed label) are not the pipeline's and are left out."""
        return cls._count([(c.analysed_label, c.unidentified) for c in cells if c.analysed_label is not None])


@dataclass
class ModelInfo:
    """Identifies the weights that produced a result, so a result can always be traced to its model."""

    name: str
    path: str
    sha256: str
    architecture: str
    class_names: list[str]
    input_size: int
    backend: str = "torch"   # the runtime that ran it: torch, or openvino / onnxruntime on an export of these weights


@dataclass
class SmearResult:
    """Everything the workbench knows about one analysed image (or why it could not be analysed)."""

    image_path: str
    width: int = 0
    height: int = 0
    sample_id: str | None = None
    note: str | None = None            # free-text note of the technician (GUI), saved with the result
    cells: list[CellDetection] = field(default_factory=list)
    counts: CellCounts = field(default_factory=CellCounts)                  # after review
    counts_as_analysed: CellCounts = field(default_factory=CellCounts)
    detector: ModelInfo | None = None
    classifier: ModelInfo | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    tiled: bool = False
    n_tiles: int = 1
    error: str | None = None
    # the image's pixel size and where it came from: {um_per_px, source (setting | estimate | fallback | none),
    # rbc_diameter_px, n_cells, spread, confident, resample (factor the detector's input was resized by)}
    scale: dict[str, Any] = field(default_factory=dict)
    reviewed_by: str | None = None     # who marked the image reviewed in the GUI, and when (ISO 8601, UTC)
    reviewed_at: str | None = None
    # boxes the pipeline merged into another because they lay nested inside it (one cell found twice): per merged
    # box {xyxy, det_conf, label, p_blast, kept_cell_id, ios}; see workbench.app.nested
    merged_duplicates: list[dict[str, Any]] = field(default_factory=list)
    # boxes dropped before classification as too narrow to be a white cell (a platelet, a fragment): per box {xyxy,
    # short_side_um, det_conf}; see workbench.app.cell_size
    too_small: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def blast_count(self) -> int:
        return self.counts.blast

    @property
    def n_unreviewed(self) -> int:
        return sum(not c.reviewed for c in self.cells)

    def recount(self) -> None:
        self.counts = CellCounts.of(self.cells)
        self.counts_as_analysed = CellCounts.as_analysed(self.cells)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], schema_version: int = SCHEMA_VERSION) -> "SmearResult":
        """One image of a results file of `schema_version`: before version 3 (or without `counts_as_analysed`)
        cells had no review, and their label was the pipeline's (taken as the analysed label)."""
        data = dict(data)
        older = schema_version < 3 or "counts_as_analysed" not in data    # (a result saved before version 3)
        cells = []
        for c in data.get("cells", []):
            c = {**c, "xyxy": tuple(c["xyxy"])}
            if older:
                c.setdefault("analysed_label", c.get("label"))
            cells.append(CellDetection(**c))
        data["cells"] = cells
        data["counts"] = CellCounts(**data.get("counts", {}))
        data["counts_as_analysed"] = CellCounts(**data["counts_as_analysed"]) if data.get("counts_as_analysed") \
            else CellCounts.as_analysed(cells)
        for key in ("detector", "classifier"):
            if data.get(key) is not None:
                data[key] = ModelInfo(**data[key])
        return cls(**data)


@dataclass
class BatchResult:
    """One `analyze` run: the per-image results and the totals over the images that could be analysed."""

    images: list[SmearResult] = field(default_factory=list)
    created: str = ""
    workbench_version: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def failed(self) -> list[SmearResult]:
        return [r for r in self.images if not r.ok]

    @property
    def totals(self) -> CellCounts:
        return CellCounts.of(c for r in self.images if r.ok for c in r.cells)

    @property
    def totals_as_analysed(self) -> CellCounts:
        return CellCounts.as_analysed(c for r in self.images if r.ok for c in r.cells)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "workbench_version": self.workbench_version,
            "created": self.created,
            "totals": asdict(self.totals),
            "totals_as_analysed": asdict(self.totals_as_analysed),
            "n_images": len(self.images),
            "n_failed": len(self.failed),
            "failed": [{"image_path": r.image_path, "error": r.error} for r in self.failed],
            "images": [r.to_dict() for r in self.images],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchResult":
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"results schema_version {version!r} is not supported (expected one of "
                             f"{list(READABLE_VERSIONS)})")
        return cls(
            images=[SmearResult.from_dict(r, version) for r in data["images"]],
            created=data.get("created", ""),
            workbench_version=data.get("workbench_version", ""),
        )

    def to_json(self) -> str:
        # strict JSON: a non-finite number (damaged weights) becomes null rather than the invalid `NaN`, and a file
        # name that is not valid UTF-8 is written with its raw bytes escaped
        return json.dumps(_json_safe(self.to_dict()), indent=2, allow_nan=False)

    def cell_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.images:
            for c in r.cells:
                x1, y1, x2, y2 = c.xyxy
                rows.append({
                    "image": r.image_path, "sample_id": r.sample_id or "", "cell_id": c.cell_id,
                    "x1": round(x1, 2), "y1": round(y1, 2), "x2": round(x2, 2), "y2": round(y2, 2),
                    "det_conf": round(c.det_conf, 5), "label": c.label,
                    "label_conf": round(c.label_conf, 5), "p_blast": round(c.p_blast, 5),
                    "analysed_label": c.analysed_label or "", "unidentified": int(c.unidentified),
                    "reviewed": int(c.reviewed),
                })
        return rows

    def to_csv(self) -> str:
        rows = [{k: spreadsheet_safe(v) if k in TEXT_COLUMNS else v for k, v in row.items()}
                for row in self.cell_rows()]
        return csv_text(rows, CELL_CSV_COLUMNS)


TEXT_COLUMNS = ("image", "sample_id", "label", "analysed_label")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def display_text(value: str) -> str:
    """`value` writable as UTF-8: a file name holding bytes that are not UTF-8 (kept by Python as surrogate escapes)
    gets them written as \\xNN."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet will not run: one starting like a formula (=, +, -, @, tab, CR) gets a leading
    apostrophe (OWASP's advice against CSV formula injection); file names with non-UTF-8 bytes are escaped."""
    if not isinstance(value, str):
        return value
    value = display_text(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return display_text(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def load_results(path: Path) -> BatchResult:
    return BatchResult.from_dict(json.loads(Path(path).read_text()))
