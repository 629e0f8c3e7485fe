"""A case: the annotation project (`project.sqlite`, workbench.app.annotation.store) plus the working session that
led to it, so that one file holds everything a technician did: which images, in which order, each image's state
(not analysed / analysed / edited / reviewed / failed), its analysis (the one results schema, as JSON), its sample ID
and note; the project's own tables keep the boxes a person drew or approved (`cells`), the review (`images`) and
the audit trail.

Table `case_images` (one row per image of the session; `image_id` is the project's image):
    position, state, edited (0/1), sample_id, note, error, analysis_json (the model's SmearResult; NULL: never
    analysed), updated_at
Meta keys: `case_name`, `current_image` (the image shown, as stored in `images.path`), `threshold` (display).

Every save is one SQLite transaction (WAL, synchronous=FULL, inherited from ProjectStore): a kill at any moment
leaves the last saved state of every image, never half of one. An annotation project made before cases (no
`case_images` rows) opens as a case too: its labelled images are "edited", its reviewed ones "reviewed".
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from workbench.app.annotation.store import PROJECT_FILE, ProjectStore, _reason, _stored, now_iso
from workbench.app.results import CellDetection, SmearResult
from workbench.core.errors import ProjectStoreError

_CASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_images (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, position INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'new', edited INTEGER NOT NULL DEFAULT 0, sample_id TEXT,
    note TEXT NOT NULL DEFAULT '', error TEXT, analysis_json TEXT, updated_at TEXT NOT NULL)
"""
CASE_STATES = ("new", "analysed", "edited", "reviewed", "failed")
UNCHANGED = object()     # `save_image(analysis=UNCHANGED)`: keep the stored analysis


@dataclass
class CaseImage:
    """One image of a case as saved: everything needed to show it again exactly."""

    image_id: int
    path: Path
    position: int
    state: str = "new"
    edited: bool = False
    sample_id: str | None = None
    note: str = ""
    error: str | None = None
    analysis: SmearResult | None = None       # the model's result (its cells are the model layer)
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    width: int = 0
    height: int = 0
    labels: list[CellDetection] = field(default_factory=list)   # the project's boxes (a person's layer)


@dataclass
class ImageFields:
    """What `save_image` writes about one image besides its analysis and boxes."""

    state: str
    edited: bool
    sample_id: str | None
    note: str
    error: str | None
    reviewed_by: str | None
    reviewed_at: str | None


class CaseStore(ProjectStore):
    """The project store of a case. `CaseStore.open(folder)` opens or creates `folder/project.sqlite`."""

    def __init__(self, path: Path | str, operator: str | None = None, labels: Sequence[str] | None = None,
                 name: str | None = None) -> None:
        super().__init__(path, operator=operator, labels=labels)
        try:
            with self.transaction() as db:
                db.execute(_CASE_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('case_name', ?)", (name or self.root.name,))
        except BaseException:
            self.close()
            raise

    # -- the case's name and view ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._meta("case_name") or self.root.name

    def set_name(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('case_name', ?)", (name.strip() or self.root.name,))

    def view(self) -> tuple[Path | None, float | None]:
        """The image that was shown (absolute path) and the display threshold it was left at."""
        key, threshold = self._meta("current_image"), self._meta("threshold")
        path = None
        if key:
            p = Path(key)
            path = p if p.is_absolute() else self.root / p
        try:
            value = float(threshold) if threshold else None
        except ValueError:
            value = None
        return path, value

    def set_view(self, current: Path | None, threshold: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('current_image', ?)",
                       (self._key(current) if current is not None else "",))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('threshold', ?)", (repr(float(threshold)),))

    # -- images ---------------------------------------------------------------------------------------------------
    def add_images(self, paths: Sequence[Path | str]) -> list[int]:
        """Put images into the case (after the ones it has), all in one transaction; returns their image ids in
        order (an image already in the case keeps its id and place)."""
        ids: list[int] = []
        with self.transaction() as db:
            row = db.execute("SELECT MAX(position) FROM case_images").fetchone()
            position = -1 if row[0] is None else int(row[0])
            for path in paths:
                key = self._key(path)
                found = db.execute("SELECT id FROM images WHERE path=?", (key,)).fetchone()
                if found is None:
                    image_id = db.execute("INSERT INTO images (path, width, height, added_at) VALUES (?,?,?,?)",
                                          (key, 0, 0, now_iso())).lastrowid
                    self._audit(db, image_id, "add_image", None, None, json.dumps({"path": key}))
                else:
                    image_id = found[0]
                if db.execute("SELECT 1 FROM case_images WHERE image_id=?", (image_id,)).fetchone() is None:
                    position += 1
                    db.execute("INSERT INTO case_images (image_id, position, updated_at) VALUES (?,?,?)",
                               (image_id, position, now_iso()))
                ids.append(image_id)
        return ids

    def save_image(self, image_id: int, fields: ImageFields, analysis: SmearResult | None | object = UNCHANGED,
                   labels: Sequence[CellDetection] | None = None, labels_source: str = "manual",
                   size: tuple[int, int] | None = None) -> None:
        """Save one image in one transaction: its fields, its analysis (UNCHANGED keeps the stored one) and, when
        given, its boxes (only the boxes that differ are written, each with an audit row). The review goes into the
        project's `images` row too (status, reviewed_by, reviewed_at; audited), so the training export sees it."""
        if fields.state not in CASE_STATES:
            raise ValueError(f"state must be one of {CASE_STATES}, not {fields.state!r}")
        with self.transaction() as db:
            old = db.execute("SELECT reviewed_by, reviewed_at FROM images WHERE id=?", (image_id,)).fetchone()
            if old is None:
                raise ProjectStoreError(f"{self.path}: image #{image_id} is not in the case (nothing saved)")
            columns = {"state": fields.state, "edited": int(bool(fields.edited)), "sample_id": fields.sample_id,
                       "note": fields.note or "", "error": fields.error, "updated_at": now_iso()}
            if analysis is not UNCHANGED:
                columns["analysis_json"] = None if analysis is None else json.dumps(analysis.to_dict())
            sets = ", ".join(f"{k}=?" for k in columns)
            db.execute(f"UPDATE case_images SET {sets} WHERE image_id=?", (*columns.values(), image_id))
            if size and size[0] and size[1]:
                db.execute("UPDATE images SET width=?, height=? WHERE id=? AND (width=0 OR height=0)",
                           (int(size[0]), int(size[1]), image_id))
            if labels is not None:
                self._sync_cells(db, image_id, labels, labels_source)
            self._save_review(db, image_id, tuple(old), fields)

    def _sync_cells(self, db, image_id: int, labels: Sequence[CellDetection], source: str) -> None:
        stored = {c.cell_id: c for c in self.cells(image_id)}
        wanted = {c.cell_id: c for c in labels}
        changed = [i for i in stored.keys() | wanted.keys()
                   if i not in stored or i not in wanted or _stored(stored[i]) != _stored(wanted[i])]
        if changed:
            self._write_cells(db, image_id, {i: stored.get(i) for i in changed}, {i: wanted.get(i) for i in changed},
                              "edit" if source == "manual" else f"{source} boxes", source)

    def _save_review(self, db, image_id: int, old: tuple, fields: ImageFields) -> None:
        new = (fields.reviewed_by, fields.reviewed_at)
        has_cells = db.execute("SELECT 1 FROM cells WHERE image_id=? LIMIT 1", (image_id,)).fetchone() is not None
        status = "reviewed" if fields.reviewed_at else "labelled" if has_cells or fields.edited else "new"
        db.execute("UPDATE images SET status=?, reviewed_by=?, reviewed_at=? WHERE id=?", (status, *new, image_id))
        if new != old:
            if fields.reviewed_at:
                self._audit(db, image_id, "review", None, None, json.dumps({"reviewed_by": fields.reviewed_by,
                                                                            "reviewed_at": fields.reviewed_at}),
                            fields.reviewed_by)
            else:
                self._audit(db, image_id, "unreview", None, None, None)

    def load(self) -> list[CaseImage]:
        """Every image of the case in its session order (a pre-case project's images after, by path)."""
        rows = self._db.execute(
            "SELECT i.id, i.path, i.width, i.height, i.status, i.reviewed_by, i.reviewed_at, c.position, c.state, "
            "c.edited, c.sample_id, c.note, c.error, c.analysis_json FROM images i LEFT JOIN case_images c "
            "ON c.image_id = i.id ORDER BY c.position IS NULL, c.position, i.path").fetchall()
        out = []
        for n, row in enumerate(rows):
            (image_id, key, width, height, status, by, at, position, state, edited, sample_id, note, error,
             analysis_json) = row
            labels = self.cells(image_id)
            p = Path(key)
            image = CaseImage(image_id, p if p.is_absolute() else self.root / p, n, reviewed_by=by, reviewed_at=at,
                              width=width, height=height, labels=labels)
            if position is None:            # an annotation project from before cases
                image.edited = bool(labels) or status != "new"
                image.state = "reviewed" if status == "reviewed" else "edited" if image.edited else "new"
            else:
                image.state = state if state in CASE_STATES else "new"
                image.edited, image.sample_id, image.note, image.error = bool(edited), sample_id, note or "", error
                image.analysis = self._analysis(analysis_json, key)
            out.append(image)
        return out

    def _analysis(self, text: str | None, key: str) -> SmearResult | None:
        if not text:
            return None
        try:
            return SmearResult.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ProjectStoreError(f"{self.path}: the saved analysis of {Path(key).name} cannot be read ({exc})") \
                from None

    # -- save as --------------------------------------------------------------------------------------------------
    def copy_to(self, folder: Path | str, name: str | None = None) -> Path:
        """Write this case as `folder/project.sqlite` (a consistent copy, made while it stays open) with its image
        paths rewritten for the new place; returns the new file. Refuses to overwrite another case."""
        target = Path(folder) / PROJECT_FILE
        if target.exists():
            raise ProjectStoreError(f"{target}: a case is already saved there; choose an empty folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            dest = sqlite3.connect(str(target))
            try:
                self._db.conn.backup(dest)
                for image_id, key in dest.execute("SELECT id, path FROM images").fetchall():
                    p = Path(key)
                    absolute = (p if p.is_absolute() else self.root / p).resolve()
                    try:
                        new_key = absolute.relative_to(target.parent.resolve()).as_posix()
                    except ValueError:
                        new_key = str(absolute)
                    dest.execute("UPDATE images SET path=? WHERE id=?", (new_key, image_id))
                dest.execute("INSERT OR REPLACE INTO meta VALUES ('case_name', ?)", (name or target.parent.name,))
                current = dest.execute("SELECT value FROM meta WHERE key='current_image'").fetchone()
                if current and current[0] and not Path(current[0]).is_absolute():
                    dest.execute("UPDATE meta SET value=? WHERE key='current_image'",
                                 (str((self.root / current[0]).resolve()),))
                dest.commit()
            finally:
                dest.close()
        except (OSError, sqlite3.Error) as exc:
            target.unlink(missing_ok=True)
            raise ProjectStoreError(f"{target}: cannot save the case there: {_reason(exc)}") from None
        return target

