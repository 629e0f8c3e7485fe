"""Cases: where a session's work is kept, and the recorder that saves every change of the session the moment it
happens (no Save button to forget, nothing to lose on a crash or a kill).

A case is one folder holding `project.sqlite` (a `CaseStore`: the images, their states, analyses, sample IDs, notes,
reviews, boxes and the audit trail). Where it lives:

- a folder the user names ("Save case as…", "New case…"), or an annotation project next to the images (a folder
  that holds `project.sqlite`: opening that folder opens its case);
- otherwise the case of the folder the images came from, kept in the user's cases folder
  (`paths.cases_dir()`: `<user data>/cases/<folder name>-<hash of its path>/`), so opening the same folder again
  brings the work back, and image folders (often shared or read-only data) are never written to unasked.

`CaseRecorder` observes a `SessionModel` and writes each change (one transaction each): images added, a result, a
state change, an edit, a review, a sample ID or note typed. The file is made at the first change worth keeping (an
analysis, an edit, a review, a sample ID or note), not when images are only looked at. Qt-free.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from workbench.app.annotation.case_store import UNCHANGED, CaseImage, CaseStore, ImageFields
from workbench.app.annotation.store import PROJECT_FILE
from workbench.app.results import SmearResult
from workbench.app.session import NEW, QUEUED, ImageRecord, SessionModel
from workbench.core.errors import WorkbenchError

log = logging.getLogger(__name__)


# -- where cases are ------------------------------------------------------------------------------------------------
def case_file_of(path: Path | str) -> Path | None:
    """The case a path names by itself: a `project.sqlite` file, or a folder that holds one; else None."""
    path = Path(path)
    try:
        if path.is_file() and path.name == PROJECT_FILE:
            return path
        if path.is_dir() and (path / PROJECT_FILE).is_file():
            return path / PROJECT_FILE
    except OSError:
        return None
    return None


def auto_case_file(folder: Path | str, cases_root: Path | str) -> Path:
    """The case kept for a folder of images in the user's cases folder (named after the folder; the hash of its
    full path keeps two folders of one name apart)."""
    folder = Path(folder).resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.name or "images").strip("._")[:40] or "images"
    digest = hashlib.sha1(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return Path(cases_root) / f"{slug}-{digest}" / PROJECT_FILE


def image_folder(path: Path | str) -> Path:
    path = Path(path)
    return path if path.is_dir() else path.parent


def find_case(paths: Iterable[Path | str], cases_root: Path | str) -> tuple[Path | None, Path | None]:
    """(an existing case for these inputs, or None; where a new one would go). A path naming a case wins; else the
    first input's folder's kept case."""
    paths = [Path(p) for p in paths]
    for path in paths:
        named = case_file_of(path)
        if named is not None:
            return named, named
    if not paths:
        return None, None
    auto = auto_case_file(image_folder(paths[0]), cases_root)
    return (auto if auto.is_file() else None), auto


# -- a saved image <-> a session record -------------------------------------------------------------------------------
def record_of(image: CaseImage) -> ImageRecord:
    """The session record of a saved image, exactly as it was left."""
    record = ImageRecord(path=image.path, sample_id=image.sample_id, note=image.note, error=image.error,
                         reviewed_by=image.reviewed_by, reviewed_at=image.reviewed_at, edited=image.edited)
    analysis = image.analysis
    if image.edited:
        if analysis is not None:
            record.model_cells = list(analysis.cells)
            shown = analysis
            shown.cells = list(image.labels)
        else:                                   # labelled by hand, never analysed
            shown = SmearResult(image_path=str(image.path), width=image.width, height=image.height,
                                cells=list(image.labels))
        shown.recount()
        record.result = shown
    else:
        record.result = analysis
    if record.result is not None:
        record.result.sample_id, record.result.note = record.sample_id, record.note or None
        record.analysis_rev = 1
    record.status = image.state if image.state != QUEUED else record.settled_status()
    return record


def fields_of(record: ImageRecord) -> ImageFields:
    state = record.status if record.status != QUEUED else record.settled_status()
    return ImageFields(state=state, edited=record.edited, sample_id=record.sample_id, note=record.note or "",
                       error=record.error, reviewed_by=record.reviewed_by, reviewed_at=record.reviewed_at)


def restore(model: SessionModel, store: CaseStore) -> tuple[list[ImageRecord], list[int]]:
    """Open a case into the (emptied) session: every image as saved, the image that was shown, the threshold.
    Returns the records and their image ids (for a recorder to `adopt`)."""
    images = store.load()
    records = [record_of(image) for image in images]
    current, threshold = store.view()
    index = 0
    if current is not None:
        key = current.resolve()
        index = next((i for i, r in enumerate(records) if r.path.resolve() == key), 0)
    model.restore(records, index, threshold)
    return records, [image.image_id for image in images]


# -- the recorder -----------------------------------------------------------------------------------------------------
class CaseRecorder:
    """Saves every change of `model` into a case: `store` (open) or, until the first change worth keeping, none
    (`create()` makes it then). A change that cannot be saved (read-only folder, full disk) is kept in `unsaved`
    and reported to `on_error(message)`; it is saved with the image's next change."""

    def __init__(self, model: SessionModel, store: CaseStore | None = None,
                 create: Callable[[], CaseStore] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.model, self.store, self._create = model, store, create
        self.on_error = on_error or (lambda message: log.warning("%s", message))
        self._ids: dict[int, int] = {}              # id(record) -> image id in the case
        self._saved: dict[int, tuple] = {}          # id(record) -> the fields last saved
        self._analysis: dict[int, int] = {}         # id(record) -> analysis_rev last saved
        self.unsaved: dict[int, ImageRecord] = {}   # id(record) -> a record whose last change could not be saved
        self._view_dirty = False
        self._unsubscribe = model.subscribe(self._on_model)

    def detach(self) -> None:
        """Stop recording (the case is closed; everything is already saved)."""
        self._unsubscribe()
        self._ids.clear()

    def adopt(self, records: Iterable[ImageRecord], image_ids: Iterable[int]) -> None:
        """Records restored from this recorder's case: known, and saved as they are."""
        for record, image_id in zip(records, image_ids):
            self._ids[id(record)] = image_id
            self._saved[id(record)] = _signature(record)
            self._analysis[id(record)] = record.analysis_rev

    # -- events ---------------------------------------------------------------------------------------------------
    def _on_model(self, event: str, payload: Any) -> None:
        if event == "records_added":
            if self.store is not None:
                self._add(payload)
        elif event in ("record_changed", "cells_changed"):
            if payload.status != QUEUED:
                self.save(payload)
        elif event in ("current_changed", "threshold_changed"):
            self._view_dirty = True

    def _worth_a_case(self, record: ImageRecord) -> bool:
        return (record.result is not None or record.edited or record.reviewed_at is not None
                or bool(record.sample_id) or bool(record.note) or record.status not in (NEW,))

    def ensure_store(self) -> CaseStore | None:
        """Make the case file now (if it is not made yet), with every image of the session."""
        if self.store is None and self._create is not None:
            try:
                self.store = self._create()
            except WorkbenchError as exc:
                self.on_error(str(exc))
                return None
            self._add(self.model.records)
        return self.store

    def _add(self, records: list[ImageRecord]) -> None:
        new = [r for r in records if id(r) not in self._ids]
        if not new:
            return
        try:
            ids = self.store.add_images([r.path for r in new])
        except WorkbenchError as exc:
            for record in new:
                self.unsaved[id(record)] = record
            self.on_error(str(exc))
            return
        for record, image_id in zip(new, ids):
            self._ids[id(record)] = image_id
        try:
            # one commit (one fsync) for the whole batch: the session's first change makes the case with every
            # image, and a transaction per image froze the window for seconds with hundreds of images; each save
            # is still its own savepoint, so one that fails is rolled back alone and kept in `unsaved`
            with self.store.transaction():
                for record in new:
                    if self._worth_a_case(record):
                        self.save(record)
                    else:
                        self._saved[id(record)] = _signature(record)
        except WorkbenchError as exc:   # the commit itself failed: nothing of the batch is on disk
            for record in new:
                self._saved.pop(id(record), None)
                self._analysis.pop(id(record), None)
                self.unsaved[id(record)] = record
            self.on_error(str(exc))

    def save(self, record: ImageRecord) -> bool:
        """Save one record's change now; True when it is on disk."""
        if self.store is None:
            if not self._worth_a_case(record):
                return True                  # nothing to keep yet (the image was only looked at)
            if self.ensure_store() is None:
                self.unsaved[id(record)] = record
                return False
        key = id(record)
        if key not in self._ids:
            self._add([record])
            if key not in self._ids:
                return False
        signature = _signature(record)
        analysis_changed = self._analysis.get(key) != record.analysis_rev
        labels, source = self._labels(record, signature)
        if signature == self._saved.get(key) and not analysis_changed and labels is None and key not in self.unsaved:
            self._flush_view()
            return True
        try:
            self.store.save_image(self._ids[key], fields_of(record),
                                  analysis=record.analysis() if analysis_changed else UNCHANGED,
                                  labels=labels, labels_source=source, size=_size(record))
        except WorkbenchError as exc:
            self.unsaved[key] = record
            self.on_error(str(exc))
            return False
        self._saved[key], self._analysis[key] = signature, record.analysis_rev
        self.unsaved.pop(key, None)
        self._flush_view()
        return True

    def _labels(self, record: ImageRecord, signature: tuple):
        """The boxes the project should hold for this record now (None: leave them): a person's boxes of an edited
        image; the boxes shown at the display threshold when an unedited image is reviewed (what was approved);
        none once a new analysis replaced the edits."""
        if record.edited and record.result is not None:
            return list(record.result.cells), "manual"
        saved = self._saved.get(id(record))
        if record.reviewed_at and (saved is None or saved[-1] != record.reviewed_at):
            return record.cells(self.model.threshold), "model"
        if saved is not None and saved[1] and not record.edited:      # the edits were replaced by an analysis
            return [], "model"
        return None, "manual"

    # -- view state -----------------------------------------------------------------------------------------------
    def _flush_view(self) -> None:
        if self._view_dirty:
            self.flush_view()

    def flush_view(self) -> None:
        """Save which image is shown and the display threshold (they change often: the window calls this a moment
        after the last change, and on close)."""
        if self.store is None or not self._view_dirty:
            return
        current = self.model.current
        try:
            self.store.set_view(current.path if current is not None else None, self.model.threshold)
            self._view_dirty = False
        except WorkbenchError as exc:
            self.on_error(str(exc))

    def unsaved_records(self) -> list[ImageRecord]:
        return list(self.unsaved.values())

    def retry(self) -> int:
        """Save again what could not be saved; returns how many records are still unsaved."""
        for record in list(self.unsaved.values()):
            self.save(record)
        return len(self.unsaved)


def _signature(record: ImageRecord) -> tuple:
    state = record.status if record.status != QUEUED else record.settled_status()
    return (state, record.edited, record.sample_id, record.note or "", record.error, record.reviewed_by,
            record.reviewed_at)


def _size(record: ImageRecord) -> tuple[int, int] | None:
    if record.result is not None and record.result.width:
        return record.result.width, record.result.height
    return None

