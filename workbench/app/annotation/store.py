"""The annotation project: one SQLite file (`project.sqlite`, next to the images or in a chosen folder).

Tables: `meta` (schema version, the project's label list), `images` (path, size, review status, who reviewed it
and when), `cells` (the current labels of each image, one row per box in the one results schema's terms: xyxy,
label, det_conf, label_conf, p_blast, the per-cell review (reviewed, analysed_label, unidentified), plus where the
box came from: "model", "import" or "manual") and `audit`
(one row per changed box: time, operator, image, action, the box before and after as JSON; None = absent).

Every change is one SQLite transaction (WAL journal, synchronous=FULL): a crash or kill during a save leaves the
previous labels exactly as they were, never half of a change. Image paths are stored relative to the project
folder when they lie under it, so a project folder can be moved with its images.

Several windows or processes may write one project. Each change checks, inside its write transaction (BEGIN
IMMEDIATE: one writer at a time), that the boxes it edits are still what the caller loaded (`before`), and raises
ConcurrentEditError if another writer changed them meanwhile; new boxes get their ids from the database in that
transaction (`add_cells`), so two writers never hand out one id twice. Every SQLite failure (read-only folder, full
disk, a lock held too long, a file that is not a project) is a ProjectStoreError naming the project file.
"""

from __future__ import annotations

import getpass
import json
import math
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from workbench.app.results import CellDetection
from workbench.core.errors import ConcurrentEditError, ProjectStoreError

PROJECT_FILE = "project.sqlite"
STORE_SCHEMA = 2
# schema 1 -> 2: the per-cell review columns of the results schema 3 (a schema 1 file is upgraded when opened)
_CELL_REVIEW_COLUMNS = (("reviewed", "INTEGER NOT NULL DEFAULT 0"), ("analysed_label", "TEXT"),
                        ("unidentified", "INTEGER NOT NULL DEFAULT 0"))
_CELL_COLUMNS = ("image_id, cell_id, x1, y1, x2, y2, label, det_conf, label_conf, p_blast, source, reviewed, "
                 "analysed_label, unidentified")
DEFAULT_LABELS = ("blast", "normal")   # classification.dataset.CLASS_NAMES: the one class map, never renumbered
SOURCES = ("model", "import", "manual")
STATUSES = ("new", "labelled", "reviewed")
MAX_IMAGE_SIDE = 1_000_000   # px; a larger width or height is not an image size (and would overflow SQLite)
LOCK_TIMEOUT_S = 10.0        # how long a write waits for another window's write before giving up ("locked")

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
    reviewed INTEGER NOT NULL DEFAULT 0, analysed_label TEXT, unidentified INTEGER NOT NULL DEFAULT 0,
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
                       "det_conf": cell.det_conf, "label_conf": cell.label_conf, "p_blast": cell.p_blast,
                       "reviewed": bool(cell.reviewed), "analysed_label": cell.analysed_label,
                       "unidentified": bool(cell.unidentified)})


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


_REASONS = {  # SQLite's primary result codes -> what the user can do about them
    "SQLITE_READONLY": "the project file or its folder is read-only",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_BUSY": "another program holds a lock on it (try again)",
    "SQLITE_LOCKED": "another program holds a lock on it (try again)",
    "SQLITE_CANTOPEN": "cannot open it (missing folder or no permission)",
    "SQLITE_PERM": "no permission to write it",
    "SQLITE_NOTADB": "it is not an annotation project (not an SQLite file)",
    "SQLITE_CORRUPT": "the file is corrupt",
    "SQLITE_IOERR": "a disk read or write failed",
}
_MESSAGES = (  # when the error carries no code: by its message
    ("readonly", _REASONS["SQLITE_READONLY"]), ("disk is full", _REASONS["SQLITE_FULL"]),
    ("locked", _REASONS["SQLITE_BUSY"]), ("unable to open", _REASONS["SQLITE_CANTOPEN"]),
    ("not a database", _REASONS["SQLITE_NOTADB"]), ("malformed", _REASONS["SQLITE_CORRUPT"]),
    ("disk i/o", _REASONS["SQLITE_IOERR"]),
)


def _reason(exc: BaseException) -> str:
    """Why an SQLite (or file system) call failed, in words, on one short line."""
    if isinstance(exc, OSError):
        return " ".join(str(exc.strerror or exc).split())[:160]
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = "_".join(name.split("_")[:2])                       # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    text = " ".join(str(exc).split())
    reason = _REASONS.get(primary) or next((r for key, r in _MESSAGES if key in text.lower()), None)
    return f"{reason} ({text[:120]})" if reason else text[:160] or type(exc).__name__


class _Db:
    """The project's SQLite connection, whose every failure is a ProjectStoreError naming the project file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, timeout=LOCK_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise self.error("open", exc) from None

    def error(self, doing: str, exc: BaseException) -> ProjectStoreError:
        return ProjectStoreError(f"{self.path}: cannot {doing} the annotation project: {_reason(exc)}")

    def execute(self, sql: str, params: Sequence = ()) -> "_Rows":
        """Run one statement and fetch all its rows (so a failure while stepping through them is wrapped too)."""
        try:
            cursor = self.conn.execute(sql, params)
            return _Rows(cursor.fetchall(), cursor.lastrowid)
        except sqlite3.Error as exc:
            write = not sql.lstrip().upper().startswith(("SELECT", "PRAGMA"))
            raise self.error("write" if write else "read", exc) from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class _Rows:
    """The fetched rows of one statement, read like a cursor."""

    def __init__(self, rows: list, lastrowid: int | None) -> None:
        self.rows, self.lastrowid = rows, lastrowid

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


def _finite_box(cell: CellDetection) -> bool:
    values = [*cell.xyxy, cell.det_conf, cell.label_conf, cell.p_blast]
    try:
        return len(cell.xyxy) == 4 and all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError, OverflowError):
        return False


def _stored(cell: CellDetection) -> tuple:
    """A box as the cells table holds it (after the float conversions of a write)."""
    x1, y1, x2, y2 = (float(v) for v in cell.xyxy)
    return (x1, y1, x2, y2, cell.label, float(cell.det_conf), float(cell.label_conf), float(cell.p_blast),
            int(bool(cell.reviewed)), cell.analysed_label, int(bool(cell.unidentified)))


class ProjectStore:
    """One annotation project. `ProjectStore.open(folder)` opens or creates `folder/project.sqlite`.

    Raises ProjectStoreError (a WorkbenchError naming the file and the reason) when the file cannot be opened, read
    or written, and ConcurrentEditError when a change is based on boxes another window changed meanwhile."""

    def __init__(self, path: Path | str, operator: str | None = None, labels: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self.operator = operator or default_operator()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectStoreError(f"{self.path}: cannot create the project folder: {_reason(exc)}") from None
        self._db = _Db(self.path)
        try:
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
            version = self._meta("schema_version")
            if version == "1":
                self._upgrade_from_1()
                version = self._meta("schema_version")
            if version != str(STORE_SCHEMA):
                raise ProjectStoreError(f"{self.path}: project schema {version[:20]!r} is not supported "
                                        f"(expected {STORE_SCHEMA})")
        except BaseException:
            self._db.close()
            raise

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2: add the per-cell review columns (existing boxes: not reviewed, no analysed label)."""
        with self.transaction() as db:
            have = {row[1] for row in db.execute("PRAGMA table_info(cells)")}
            for name, kind in _CELL_REVIEW_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE cells ADD COLUMN {name} {kind}")
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(STORE_SCHEMA),))

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
    def transaction(self) -> Iterator["_Db"]:
        """All writes inside commit together or not at all (an exception or a kill rolls them back). BEGIN IMMEDIATE
        takes the write lock first (waiting up to LOCK_TIMEOUT_S for another writer), so what is read inside is what
        the writes change. Inside another transaction it is a savepoint: its writes roll back alone on an error, and
        reach the disk with the outer transaction's commit (many saves, one fsync)."""
        if self._db.conn.in_transaction:
            yield from self._savepoint()
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.conn.in_transaction:
                try:
                    self._db.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass   # the first error says what went wrong; SQLite rolls back a failed commit itself
            raise

    def _savepoint(self) -> Iterator["_Db"]:
        self._savepoints = getattr(self, "_savepoints", 0) + 1
        name = f"save_{self._savepoints}"
        self._db.execute(f"SAVEPOINT {name}")
        try:
            yield self._db
            self._db.execute(f"RELEASE {name}")
        except BaseException:
            try:
                self._db.conn.execute(f"ROLLBACK TO {name}")
                self._db.conn.execute(f"RELEASE {name}")
            except sqlite3.Error:
                pass
            raise

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
        with self.transaction() as db:   # read again inside: another window may have added a label meanwhile
            labels = self.labels
            if label not in labels:
                db.execute("UPDATE meta SET value=? WHERE key='labels'", (json.dumps(labels + [label]),))
                self._audit(db, None, "add_label", None, None, json.dumps({"label": label}))

    # -- images ---------------------------------------------------------------------------------------------------
    def _key(self, path: Path | str) -> str:
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def add_image(self, path: Path | str, width: int = 0, height: int = 0) -> ImageEntry:
        """Add an image (width x height px; 0 x 0: not known yet), or set the size of one already added."""
        key = self._key(path)
        for what, value in (("width", width), ("height", height)):
            try:
                ok = not isinstance(value, bool) and float(value).is_integer() and 0 <= value <= MAX_IMAGE_SIDE
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise ProjectStoreError(f"{self.path}: image {Path(path).name}: {what} {str(value)[:30]!r} is not "
                                        f"a number of pixels from 0 to {MAX_IMAGE_SIDE}")
        row = self._db.execute("SELECT id, width, height FROM images WHERE path=?", (key,)).fetchone()
        if row is None or (width and height and (row[1], row[2]) != (int(width), int(height))):
            with self.transaction() as db:   # looked up again inside: another window may have added it meanwhile
                if db.execute("SELECT id FROM images WHERE path=?", (key,)).fetchone() is None:
                    cur = db.execute("INSERT INTO images (path, width, height, added_at) VALUES (?,?,?,?)",
                                     (key, int(width), int(height), now_iso()))
                    self._audit(db, cur.lastrowid, "add_image", None, None, json.dumps({"path": key}))
                elif width and height:
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
            "SELECT cell_id, x1, y1, x2, y2, det_conf, label, label_conf, p_blast, reviewed, analysed_label, "
            "unidentified FROM cells WHERE image_id=? ORDER BY cell_id", (image_id,)).fetchall()
        return [CellDetection(cell_id=r[0], xyxy=(r[1], r[2], r[3], r[4]), det_conf=r[5], label=r[6],
                              label_conf=r[7], p_blast=r[8], reviewed=bool(r[9]), analysed_label=r[10],
                              unidentified=bool(r[11])) for r in rows]

    def sources(self, image_id: int) -> dict[int, str]:
        return dict(self._db.execute("SELECT cell_id, source FROM cells WHERE image_id=?", (image_id,)).fetchall())

    def next_cell_id(self, image_id: int) -> int:
        row = self._db.execute("SELECT MAX(cell_id) FROM cells WHERE image_id=?", (image_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def apply(self, image_id: int, before: Mapping[int, CellDetection | None],
              after: Mapping[int, CellDetection | None], action: str, source: str = "manual") -> None:
        """Change some boxes of one image in one transaction: for each cell id, `after[id]` replaces the stored box
        (None deletes it). `before` is what the caller believes is stored (an id missing from it: no box). It is
        checked against the database inside the transaction: if another window or process changed one of these
        boxes (or took the id of a new one) since the caller loaded them, nothing is written and
        ConcurrentEditError is raised (reload the image and redo the change). The audit trail records `before`."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        with self.transaction() as db:
            self._check_unchanged(db, image_id, before, after)
            self._write_cells(db, image_id, before, after, action, source)

    def add_cells(self, image_id: int, cells: Sequence[CellDetection], action: str,
                  source: str = "manual") -> list[CellDetection]:
        """Add new boxes to an image; their ids are allocated by the database inside the write transaction (one
        more than the largest stored id), so boxes added at the same time by two windows never share an id. Returns
        the boxes as stored (with their ids); the ids the caller gave them are ignored."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        with self.transaction() as db:
            row = db.execute("SELECT MAX(cell_id) FROM cells WHERE image_id=?", (image_id,)).fetchone()
            first = 0 if row[0] is None else int(row[0]) + 1
            new = [CellDetection(cell_id=first + n, xyxy=tuple(c.xyxy), det_conf=c.det_conf, label=c.label,
                                 label_conf=c.label_conf, p_blast=c.p_blast, reviewed=c.reviewed,
                                 analysed_label=c.analysed_label, unidentified=c.unidentified)
                   for n, c in enumerate(cells)]
            self._write_cells(db, image_id, {}, {c.cell_id: c for c in new}, action, source)
        return new

    def replace_cells(self, image_id: int, cells: Sequence[CellDetection], action: str, source: str) -> None:
        """Replace all boxes of an image (model predictions, an imported label file); the boxes replaced are read
        inside the write transaction, so the audit trail holds what was really there."""
        new = {c.cell_id: c for c in cells}
        with self.transaction() as db:
            old = {c.cell_id: c for c in self.cells(image_id)}
            before = {k: old.get(k) for k in old.keys() | new.keys()}
            after = {k: new.get(k) for k in before}
            self._write_cells(db, image_id, before, after, action, source)

    def _check_unchanged(self, db, image_id: int, before: Mapping[int, CellDetection | None],
                         after: Mapping[int, CellDetection | None]) -> None:
        stored = {r[0]: tuple(r[1:]) for r in db.execute(
            "SELECT cell_id, x1, y1, x2, y2, label, det_conf, label_conf, p_blast, reviewed, analysed_label, "
            "unidentified FROM cells WHERE image_id=?",
            (image_id,))}
        changed = []
        for cell_id in sorted(after):
            expected = before.get(cell_id)
            if expected is None:
                if cell_id in stored:
                    changed.append(cell_id)
            elif not _finite_box(expected) or stored.get(cell_id) != _stored(expected):
                changed.append(cell_id)
        if changed:
            ids = ", ".join(map(str, changed[:10])) + (" …" if len(changed) > 10 else "")
            raise ConcurrentEditError(f"{self.path}: box(es) {ids} of image {self._image_name(image_id)} changed "
                                      "by another window: reload the image and redo the change (nothing saved)")

    def _image_name(self, image_id: int) -> str:
        row = self._db.execute("SELECT path FROM images WHERE id=?", (image_id,)).fetchone()
        return Path(row[0]).name if row else f"#{image_id}"

    def _write_cells(self, db, image_id, before, after, action, source) -> None:
        if db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
            raise ProjectStoreError(f"{self.path}: image #{image_id} is not in the project (nothing saved)")
        for cell_id in sorted(after):
            cell = after[cell_id]
            if cell is not None and (not _finite_box(cell) or not isinstance(cell.label, str) or not cell.label):
                raise ProjectStoreError(f"{self.path}: box {cell_id} of image {self._image_name(image_id)} has a "
                                        "coordinate or score that is not a finite number, or no label "
                                        "(nothing saved)")
        for cell_id in sorted(after):
            cell = after[cell_id]
            if cell is None:
                db.execute("DELETE FROM cells WHERE image_id=? AND cell_id=?", (image_id, cell_id))
            else:
                if cell.cell_id != cell_id:
                    raise ValueError(f"cell id {cell.cell_id} stored under {cell_id}")
                x1, y1, x2, y2 = (float(v) for v in cell.xyxy)
                db.execute(f"INSERT OR REPLACE INTO cells ({_CELL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (image_id, cell_id, x1, y1, x2, y2, cell.label, float(cell.det_conf),
                            float(cell.label_conf), float(cell.p_blast), source, int(bool(cell.reviewed)),
                            cell.analysed_label, int(bool(cell.unidentified))))
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
