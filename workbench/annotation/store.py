"""The annotation project: one SQLite file (`project.sqlite`, next to the images or in a chosen folder).

Tables: `meta` (schema version, the project's label list), `images` (path, size, review status, who reviewed it
and when), `cells` (the current labels of each image, one row per box in the one results schema's terms: xyxy,
label, det_conf, label_conf, p_blast, plus where the box came from: "model", "import" or "manual") and `audit`
(one row per changed box: time, operator, image, action, the box before and after as JSON; None = absent).

Every change is one SQLite transaction (WAL journal, synchronous=FULL): a crash or kill during a save leaves the
previous labels exactly as they were, never half of a change. Image paths are stored relative to the project
folder when they lie under it, so a project folder can be moved with its images.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from workbench.results import CellDetection

PROJECT_FILE = "project.sqlite"
STORE_SCHEMA = 1
DEFAULT_LABELS = ("blast", "normal")   # classification.dataset.CLASS_NAMES: the one class map, never renumbered
SOURCES = ("model", "import", "manual")
STATUSES = ("new", "labelled", "reviewed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'new',
    reviewed_by TEXT, reviewed_at TEXT, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, cell_id INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, label TEXT NOT NULL,
    det_conf REAL NOT NULL, label_conf REAL NOT NULL, p_blast REAL NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (image_id, cell_id));
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, operator TEXT NOT NULL, image_id INTEGER,
    action TEXT NOT NULL, cell_id INTEGER, before_json TEXT, after_json TEXT);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def cell_json(cell: CellDetection | None) -> str | None:
    if cell is None:
        return None
    return json.dumps({"cell_id": cell.cell_id, "xyxy": list(cell.xyxy), "label": cell.label,
                       "det_conf": cell.det_conf, "label_conf": cell.label_conf, "p_blast": cell.p_blast})


def manual_cell(cell_id: int, xyxy: Sequence[float], label: str) -> CellDetection:
    """A box drawn or corrected by an annotator: certain (det_conf = label_conf = 1), p_blast 1 for a blast."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return CellDetection(cell_id=int(cell_id), xyxy=(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),
                         det_conf=1.0, label=label, label_conf=1.0, p_blast=1.0 if label == "blast" else 0.0)


@dataclass
class ImageEntry:
    id: int
    path: Path               # absolute
    width: int
    height: int
    status: str
    reviewed_by: str | None
    reviewed_at: str | None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class AuditRow:
    id: int
    time: str
    operator: str
    image_id: int | None
    action: str
    cell_id: int | None
    before: dict | None
    after: dict | None


class ProjectStore:
    """One annotation project. `ProjectStore.open(folder)` opens or creates `folder/project.sqlite`."""

    def __init__(self, path: Path | str, operator: str | None = None, labels: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self.root.mkdir(parents=True, exist_ok=True)
        self.operator = operator or default_operator()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(STORE_SCHEMA),))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('labels', ?)",
                             (json.dumps(list(labels or DEFAULT_LABELS)),))
        version = int(self._meta("schema_version"))
        if version != STORE_SCHEMA:
            raise ValueError(f"{self.path}: project schema {version} is not supported (expected {STORE_SCHEMA})")

    @classmethod
    def open(cls, folder: Path | str, operator: str | None = None, labels: Sequence[str] | None = None):
        return cls(Path(folder) / PROJECT_FILE, operator=operator, labels=labels)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ProjectStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all (an exception or a kill rolls them back)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else ""

    # -- label list -----------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """The project's class list, in its fixed order (exports number classes by it; never renumbered)."""
        return json.loads(self._meta("labels"))

    def add_label(self, label: str) -> None:
        """Append a class (existing classes keep their index)."""
        label = label.strip()
        if not label or label in self.labels:
            return
        with self.transaction() as db:
            db.execute("UPDATE meta SET value=? WHERE key='labels'", (json.dumps(self.labels + [label]),))
            self._audit(db, None, "add_label", None, None, json.dumps({"label": label}))

    # -- images ---------------------------------------------------------------------------------------------------
    def _key(self, path: Path | str) -> str:
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def add_image(self, path: Path | str, width: int = 0, height: int = 0) -> ImageEntry:
        key = self._key(path)
        row = self._db.execute("SELECT id FROM images WHERE path=?", (key,)).fetchone()
        if row is None:
            with self.transaction() as db:
                cur = db.execute("INSERT INTO images (path, width, height, added_at) VALUES (?,?,?,?)",
                                 (key, int(width), int(height), now_iso()))
                self._audit(db, cur.lastrowid, "add_image", None, None, json.dumps({"path": key}))
        elif width and height:
            with self.transaction() as db:
                db.execute("UPDATE images SET width=?, height=? WHERE path=?", (int(width), int(height), key))
        return self.image(path)

    def image(self, path_or_id: Path | str | int) -> ImageEntry:
        if isinstance(path_or_id, int):
            row = self._db.execute("SELECT * FROM images WHERE id=?", (path_or_id,)).fetchone()
        else:
            row = self._db.execute("SELECT * FROM images WHERE path=?", (self._key(path_or_id),)).fetchone()
        if row is None:
            raise KeyError(f"image {path_or_id} is not in the project {self.path}")
        return self._entry(row)

    def find_image(self, path: Path | str) -> ImageEntry | None:
        try:
            return self.image(path)
        except KeyError:
            return None

    def _entry(self, row) -> ImageEntry:
        id_, path, width, height, status, by, at, _added = row
        p = Path(path)
        return ImageEntry(id_, p if p.is_absolute() else self.root / p, width, height, status, by, at)

    def images(self, status: str | None = None) -> list[ImageEntry]:
        """The project's images in path order; `status` filters ("new", "labelled", "reviewed")."""
        if status is None:
            rows = self._db.execute("SELECT * FROM images ORDER BY path").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM images WHERE status=? ORDER BY path", (status,)).fetchall()
        return [self._entry(r) for r in rows]

    # -- cells ----------------------------------------------------------------------------------------------------
    def cells(self, image_id: int) -> list[CellDetection]:
        rows = self._db.execute(
            "SELECT cell_id, x1, y1, x2, y2, det_conf, label, label_conf, p_blast FROM cells WHERE image_id=? "
            "ORDER BY cell_id", (image_id,)).fetchall()
        return [CellDetection(cell_id=r[0], xyxy=(r[1], r[2], r[3], r[4]), det_conf=r[5], label=r[6],
                              label_conf=r[7], p_blast=r[8]) for r in rows]

    def sources(self, image_id: int) -> dict[int, str]:
        return dict(self._db.execute("SELECT cell_id, source FROM cells WHERE image_id=?", (image_id,)).fetchall())

    def next_cell_id(self, image_id: int) -> int:
        row = self._db.execute("SELECT MAX(cell_id) FROM cells WHERE image_id=?", (image_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def apply(self, image_id: int, before: Mapping[int, CellDetection | None],
              after: Mapping[int, CellDetection | None], action: str, source: str = "manual") -> None:
        """Change some boxes of one image in one transaction: for each cell id, `after[id]` replaces the stored box
        (None deletes it). `before` is what the caller believes is stored (written to the audit trail)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        with self.transaction() as db:
            self._write_cells(db, image_id, before, after, action, source)

    def replace_cells(self, image_id: int, cells: Sequence[CellDetection], action: str, source: str) -> None:
        """Replace all boxes of an image (model predictions, an imported label file)."""
        old = {c.cell_id: c for c in self.cells(image_id)}
        new = {c.cell_id: c for c in cells}
        before = {k: old.get(k) for k in old.keys() | new.keys()}
        after = {k: new.get(k) for k in before}
        with self.transaction() as db:
            self._write_cells(db, image_id, before, after, action, source)
            if db.execute("SELECT status FROM images WHERE id=?", (image_id,)).fetchone()[0] == "new":
                db.execute("UPDATE images SET status='labelled' WHERE id=?", (image_id,))

    def _write_cells(self, db, image_id, before, after, action, source) -> None:
        for cell_id in sorted(after):
            cell = after[cell_id]
            if cell is None:
                db.execute("DELETE FROM cells WHERE image_id=? AND cell_id=?", (image_id, cell_id))
            else:
                if cell.cell_id != cell_id:
                    raise ValueError(f"cell id {cell.cell_id} stored under {cell_id}")
                x1, y1, x2, y2 = (float(v) for v in cell.xyxy)
                db.execute("INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (image_id, cell_id, x1, y1, x2, y2, cell.label, float(cell.det_conf),
                            float(cell.label_conf), float(cell.p_blast), source))
            self._audit(db, image_id, action, cell_id, cell_json(before.get(cell_id)), cell_json(cell))
        db.execute("UPDATE images SET status='labelled' WHERE id=? AND status='new'", (image_id,))

    # -- review ---------------------------------------------------------------------------------------------------
    def mark_reviewed(self, image_id: int, reviewed: bool = True, operator: str | None = None) -> ImageEntry:
        operator = operator or self.operator
        with self.transaction() as db:
            if reviewed:
                at = now_iso()
                db.execute("UPDATE images SET status='reviewed', reviewed_by=?, reviewed_at=? WHERE id=?",
                           (operator, at, image_id))
                self._audit(db, image_id, "review", None, None, json.dumps({"reviewed_by": operator,
                                                                              "reviewed_at": at}), operator)
            else:
                db.execute("UPDATE images SET status='labelled', reviewed_by=NULL, reviewed_at=NULL WHERE id=?",
                           (image_id,))
                self._audit(db, image_id, "unreview", None, None, None, operator)
        return self.image(image_id)

    # -- audit ----------------------------------------------------------------------------------------------------
    def _audit(self, db, image_id, action, cell_id, before_json, after_json, operator=None) -> None:
        db.execute("INSERT INTO audit (time, operator, image_id, action, cell_id, before_json, after_json) "
                   "VALUES (?,?,?,?,?,?,?)", (now_iso(), operator or self.operator, image_id, action, cell_id,
                                              before_json, after_json))

    def audit(self, image_id: int | None = None) -> list[AuditRow]:
        if image_id is None:
            rows = self._db.execute("SELECT * FROM audit ORDER BY id").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM audit WHERE image_id=? ORDER BY id", (image_id,)).fetchall()
        return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None,
                         json.loads(r[7]) if r[7] else None) for r in rows]
