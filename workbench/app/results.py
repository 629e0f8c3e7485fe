"""The one results schema: produced by the pipeline, read by the GUI, the CLI, exports and eval.

JSON layout (schema_version 2; version 1 files, without `scale`, still load) is documented in README.md ("Results schema"). Boxes are `xyxy` in original image
pixels (floats, top-left origin). A cell's `label` is the classifier's arg-max class; `p_blast` is the classifier's
probability of the blast class.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from workbench.core.fileio import (csv_text, write_atomic)  # noqa: F401  (write_atomic re-exported for the app's writers)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

CELL_CSV_COLUMNS = [
    "image", "sample_id", "cell_id", "x1", "y1", "x2", "y2", "det_conf", "label", "label_conf", "p_blast",
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

    @property
    def is_blast(self) -> bool:
        return self.label == "blast"


@dataclass
class CellCounts:
    wbc: int = 0
    blast: int = 0
    normal: int = 0
    blast_pct: float = 0.0

    @classmethod
    def of(cls, cells: Iterable[CellDetection]) -> "CellCounts":
        cells = list(cells)
        blast = sum(c.label == "blast" for c in cells)
        normal = sum(c.label == "normal" for c in cells)
        wbc = len(cells)
        return cls(wbc=wbc, blast=blast, normal=normal, blast_pct=round(100.0 * blast / wbc, 2) if wbc else 0.0)


@dataclass
class ModelInfo:
    """Identifies the weights that produced a result, so a result can always be traced to its model."""

    name: str
    path: str
    sha256: str
    architecture: str
    class_names: list[str]
    input_size: int


@dataclass
class SmearResult:
    """Everything the workbench knows about one analysed image (or why it could not be analysed)."""

    image_path: str
    width: int = 0
    height: int = 0
    sample_id: str | None = None
    note: str | None = None            # free-text note of the technician (GUI), saved with the result
    cells: list[CellDetection] = field(default_factory=list)
    counts: CellCounts = field(default_factory=CellCounts)
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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def blast_count(self) -> int:
        return self.counts.blast

    def recount(self) -> None:
        self.counts = CellCounts.of(self.cells)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SmearResult":
        data = dict(data)
        data["cells"] = [CellDetection(**{**c, "xyxy": tuple(c["xyxy"])}) for c in data.get("cells", [])]
        data["counts"] = CellCounts(**data.get("counts", {}))
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "workbench_version": self.workbench_version,
            "created": self.created,
            "totals": asdict(self.totals),
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
            images=[SmearResult.from_dict(r) for r in data["images"]],
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
                })
        return rows

    def to_csv(self) -> str:
        rows = [{k: spreadsheet_safe(v) if k in TEXT_COLUMNS else v for k, v in row.items()}
                for row in self.cell_rows()]
        return csv_text(rows, CELL_CSV_COLUMNS)


TEXT_COLUMNS = ("image", "sample_id", "label")
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
