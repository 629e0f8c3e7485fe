"""The session a technician works on: plain Python objects the Qt widgets observe (no Qt state in here).

`SessionModel` holds one `ImageRecord` per opened image, which image is current and the live display threshold.
Every change goes through a `SessionModel` method, which notifies the observers with an event name and a payload;
widgets re-read what they need. The box editor's undo stack wraps these same methods: an edit changes the cells here
(`replace_cells`) and the viewer redraws its boxes when told so, never the other way round.

Events (`callback(event, payload)`):

- ``records_added``    payload: list of the new records
- ``records_removed``  payload: None (the session was cleared)
- ``record_changed``   payload: the record (status, result, metadata or review changed)
- ``cells_changed``    payload: the record (its cells were replaced by `replace_cells`: a box edit, imported
  labels; the result object stays the same unless the image had no usable result)

One state machine per image (`ImageRecord.status`), owned here and saved with the case (workbench.app.case):

    new (not analysed) --analyse--> analysed | failed --edit / import--> edited --review--> reviewed
    new --edit / import (labelled by hand)--> edited;  reviewed --unreview--> edited or analysed

`queued` is a job's transient state and never saved. An edit keeps the model's boxes as a separate layer
(`ImageRecord.model_cells`); a review survives edits. A new analysis of an edited or reviewed image either keeps the
shown boxes and the review (`set_result(..., keep_edits=True)`: the new analysis becomes the model layer) or replaces
them (the default: edits and review are dropped) - the window asks which. "Analyse all" only takes the images that
`needs_analysis`, so it never touches an edit or a review.
- ``current_changed``  payload: the current record or None
- ``threshold_changed`` payload: the new threshold (float)
"""

from __future__ import annotations

import copy
import getpass
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from workbench import __version__
from workbench.core.inputs import DEFAULT_EXTENSIONS, collect_inputs
from workbench.app.results import BatchResult, CellCounts, CellDetection, SmearResult

Observer = Callable[[str, Any], None]

# Record status values, and what the image list shows for them.
NEW, QUEUED, ANALYSED, EDITED, REVIEWED, FAILED = "new", "queued", "analysed", "edited", "reviewed", "failed"
STATUS_TEXT = {NEW: "not analysed", QUEUED: "queued", ANALYSED: "analysed", EDITED: "edited", REVIEWED: "reviewed",
               FAILED: "failed"}
SAVED_STATES = (NEW, ANALYSED, EDITED, REVIEWED, FAILED)   # what a case stores (QUEUED is a running job's)


class Observable:
    """A minimal observer list: `subscribe(fn)` returns a function that unsubscribes."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def notify(self, event: str, payload: Any = None) -> None:
        for observer in list(self._observers):
            observer(event, payload)


def visible_cells(result: SmearResult | None, threshold: float) -> list[CellDetection]:
    """The cells whose detector confidence reaches the display threshold."""
    if result is None or not result.ok:
        return []
    return [c for c in result.cells if c.det_conf >= threshold]


@dataclass(eq=False)
class ImageRecord:
    """One image of the session: where it is, how far it got, its result and what the technician added."""

    path: Path
    status: str = NEW
    result: SmearResult | None = None
    sample_id: str | None = None
    note: str = ""
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # room for later features (edit history, flags)
    # the cells are a person's (drawn, moved, relabelled, imported), not the model's; stays true through a review
    edited: bool = False
    # the model layer of an edited image: the last analysis's cells (None: never analysed, labelled by hand)
    model_cells: list[CellDetection] | None = None
    analysis_rev: int = 0          # +1 per analysis result taken in (a case saves the analysis again only then)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def analysed(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)

    @property
    def needs_analysis(self) -> bool:
        """Never analysed (or the analysis failed) and nothing of a person's on it: what "Analyse all" takes."""
        return self.status in (NEW, FAILED) and not self.edited and not self.reviewed_at

    @property
    def has_work(self) -> bool:
        """Edits or a review that a new analysis would replace (the window asks first)."""
        return self.edited or self.reviewed_at is not None

    def settled_status(self) -> str:
        """The state the record's fields say (what a finished job or a restored case shows)."""
        if self.reviewed_at and self.analysed:
            return REVIEWED
        if self.edited:
            return EDITED
        if self.result is None:
            return NEW
        return ANALYSED if self.result.ok else FAILED

    def analysis(self) -> SmearResult | None:
        """The model layer: the last analysis as the models gave it (an edited image's boxes are its `model_cells`);
        None when the image was never analysed."""
        if self.result is None or (self.edited and self.model_cells is None):
            return None
        if not self.edited:
            return self.result
        result = copy.copy(self.result)
        result.cells = list(self.model_cells)
        result.recount()
        return result

    def cells(self, threshold: float = 0.0) -> list[CellDetection]:
        return visible_cells(self.result, threshold)

    def counts(self, threshold: float = 0.0) -> CellCounts | None:
        """Counts of the cells shown at `threshold`; None until the image is analysed."""
        if not self.analysed:
            return None
        return CellCounts.of(self.cells(threshold))

    def export_result(self, threshold: float = 0.0) -> SmearResult:
        """The result as the technician sees it: cells at the display threshold (counts recomputed, the effective
        threshold recorded in `settings.det_conf`), with the sample ID, note and review. Cell ids are kept."""
        if self.result is None:
            return SmearResult(image_path=str(self.path), sample_id=self.sample_id, note=self.note or None,
                               error=self.error or "not analysed")
        result = copy.deepcopy(self.result)
        result.sample_id = self.sample_id
        result.note = self.note or None
        result.reviewed_by, result.reviewed_at = self.reviewed_by, self.reviewed_at
        if result.ok:
            analysed_conf = float(result.settings.get("det_conf", 0.0) or 0.0)
            if threshold > analysed_conf:
                result.cells = [c for c in result.cells if c.det_conf >= threshold]
                result.settings = {**result.settings, "det_conf": round(float(threshold), 4)}
            result.recount()
        return result


class SessionModel(Observable):
    """The images of one working session, the current one and the live confidence threshold."""

    def __init__(self, threshold: float = 0.25) -> None:
        super().__init__()
        self.records: list[ImageRecord] = []
        self.current_index: int = -1
        self.threshold: float = float(threshold)
        self.operator: str | None = None     # who reviews (None: the login name)

    # -- images ---------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    @property
    def current(self) -> ImageRecord | None:
        return self.records[self.current_index] if 0 <= self.current_index < len(self.records) else None

    def index_of(self, record_or_path: ImageRecord | Path | str) -> int:
        if isinstance(record_or_path, ImageRecord):
            return next((i for i, r in enumerate(self.records) if r is record_or_path), -1)
        key = Path(record_or_path).resolve()
        return next((i for i, r in enumerate(self.records) if r.path.resolve() == key), -1)

    def find(self, path: Path | str) -> ImageRecord | None:
        i = self.index_of(path)
        return self.records[i] if i >= 0 else None

    def add_paths(self, paths: Iterable[Path | str],
                  extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> tuple[list[ImageRecord], list[str]]:
        """Add image files and folders (a folder's images in name order). Returns the new records and one message
        per input that could not be added (a missing file, an empty or unreadable folder). Images already open are not
        added twice; bad image files are added and fail when they are loaded or analysed, with their reason."""
        added: list[ImageRecord] = []
        problems: list[str] = []
        known = {r.path.resolve() for r in self.records}
        for item in collect_inputs(paths, extensions):
            if item.error is not None:          # an unreadable folder, or one without images
                problems.append(item.error)
                continue
            if not item.path.exists():
                problems.append(f"{item.path}: file not found")
                continue
            resolved = item.path.resolve()
            if resolved in known:
                continue
            known.add(resolved)
            added.append(ImageRecord(path=item.path))
        self._append(added)
        return added, problems

    def _append(self, added: list[ImageRecord]) -> None:
        """New records at the end, said to observers; the first becomes current when none is."""
        if added:
            self.records.extend(added)
            self.notify("records_added", added)
            if self.current_index < 0:
                self.set_current(self.records.index(added[0]))

    def clear(self) -> None:
        self.records.clear()
        self.current_index = -1
        self.notify("records_removed", None)
        self.notify("current_changed", None)

    def restore(self, records: Sequence[ImageRecord], current: int = 0, threshold: float | None = None) -> None:
        """Open a saved case's records as they were (state, result, edits, review, metadata), replacing the
        session's; `current` is the image to show, `threshold` the display threshold it was left at."""
        if self.records:
            self.clear()
        if threshold is not None:
            self.set_threshold(threshold)
        self.records = list(records)
        if self.records:
            self.notify("records_added", list(self.records))
            self.set_current(min(max(int(current), 0), len(self.records) - 1))

    def analysis_plan(self, records: Iterable[ImageRecord], redo: bool = False) -> tuple[list[ImageRecord],
                                                                                          list[ImageRecord]]:
        """Which of `records` an analysis takes: (to run without asking, with a person's edits or review: ask
        first). Without `redo` only the images that need an analysis are taken (never an edited or reviewed one)."""
        records = list(dict.fromkeys(records))
        if not redo:
            return [r for r in records if r.needs_analysis], []
        return [r for r in records if not r.has_work], [r for r in records if r.has_work]

    def set_current(self, index: int) -> None:
        if not self.records:
            return
        index = max(0, min(int(index), len(self.records) - 1))
        if index != self.current_index:
            self.current_index = index
            self.notify("current_changed", self.current)

    def next(self) -> None:
        self.set_current(self.current_index + 1)

    def previous(self) -> None:
        self.set_current(self.current_index - 1)

    # -- analysis ---------------------------------------------------------------------------------------------------
    def set_status(self, record: ImageRecord, status: str) -> None:
        record.status = status
        self.notify("record_changed", record)

    def set_result(self, record: ImageRecord, result: SmearResult, keep_edits: bool = False) -> None:
        """A new analysis result. By default it replaces the old one: the edits and the review are dropped. With
        `keep_edits` an edited or reviewed image keeps its shown boxes and its review, and the new analysis becomes
        its model layer (`model_cells`); the result object stays the same, so an editor's undo history stays valid."""
        record.analysis_rev += 1
        if keep_edits and record.has_work and result.ok and record.result is not None and record.result.ok:
            shown = record.result
            for name in ("width", "height", "detector", "classifier", "settings", "timings_ms", "tiled", "n_tiles",
                         "scale"):
                setattr(shown, name, getattr(result, name))
            shown.error = record.error = None
            record.model_cells = list(result.cells)
            record.edited = True      # the shown boxes are no longer the (new) model's
            record.status = record.settled_status()
            self.notify("record_changed", record)
            return
        result.sample_id = record.sample_id
        result.note = record.note or None
        record.result = result
        record.error = result.error
        record.reviewed_by = record.reviewed_at = None
        record.edited, record.model_cells = False, None
        record.status = ANALYSED if result.ok else FAILED
        self.notify("record_changed", record)

    def replace_cells(self, record: ImageRecord, cells: Sequence[CellDetection],
                      size: tuple[int, int] | None = None) -> None:
        """A person's change of one image's cells (box edits, imported labels; in cell id order): the image becomes
        `edited` (a review stays) and the model's cells are kept as its model layer. The counts are recomputed; the
        result object is kept, so a viewer showing it updates its boxes in place. An image without a usable result
        (never analysed, or failed) gets an empty one of `size` (width, height) first: it is labelled by hand, not
        analysed. Notifies ``cells_changed``."""
        if record.result is None or not record.result.ok:
            width, height = size or (0, 0)
            record.result = SmearResult(image_path=str(record.path), width=width, height=height,
                                        sample_id=record.sample_id, note=record.note or None)
            record.error = None
            record.model_cells = None
        elif not record.edited:
            record.model_cells = list(record.result.cells)
        elif size and not record.result.width:
            record.result.width, record.result.height = size
        record.edited = True
        if record.status != QUEUED:
            record.status = record.settled_status()
        record.result.cells = list(cells)
        record.result.recount()
        self.notify("cells_changed", record)

    # -- metadata and review --------------------------------------------------------------------------------------
    def set_metadata(self, record: ImageRecord, sample_id: str | None = None, note: str | None = None) -> None:
        """Set the sample / patient ID and/or the note of one image (None leaves a field unchanged)."""
        if sample_id is not None:
            record.sample_id = sample_id.strip() or None
        if note is not None:
            record.note = note
        if record.result is not None:
            record.result.sample_id = record.sample_id
            record.result.note = record.note or None
        self.notify("record_changed", record)

    def apply_metadata_to_folder(self, source: ImageRecord) -> list[ImageRecord]:
        """Copy the sample ID and note of `source` to every image of the same folder."""
        folder = source.path.resolve().parent
        targets = [r for r in self.records if r.path.resolve().parent == folder and r is not source]
        for record in targets:
            self.set_metadata(record, sample_id=source.sample_id or "", note=source.note)
        return targets

    def mark_reviewed(self, record: ImageRecord, reviewed: bool = True, user: str | None = None,
                      at: str | None = None) -> None:
        """Mark an analysed image reviewed by `user` (default: the login name) at `at` (ISO time, default: now),
        or not reviewed."""
        if not record.analysed:
            return
        if reviewed:
            record.reviewed_by = user or self.operator or _user_name()
            record.reviewed_at = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        else:
            record.reviewed_by = record.reviewed_at = None
        record.status = record.settled_status()
        self.notify("record_changed", record)

    # -- display threshold and counts -----------------------------------------------------------------------------
    def set_threshold(self, threshold: float) -> None:
        threshold = min(max(float(threshold), 0.0), 1.0)
        if threshold != self.threshold:
            self.threshold = threshold
            self.notify("threshold_changed", threshold)

    def session_counts(self, threshold: float | None = None) -> CellCounts:
        threshold = self.threshold if threshold is None else threshold
        return CellCounts.of(c for r in self.records for c in r.cells(threshold))

    @property
    def n_analysed(self) -> int:
        return sum(r.analysed for r in self.records)

    # -- results in the one schema ---------------------------------------------------------------------------------
    def to_batch(self, records: Iterable[ImageRecord] | None = None, threshold: float | None = None) -> BatchResult:
        """The analysed (or failed) images as a BatchResult, as the technician sees them (display threshold,
        metadata, review). Images never analysed are left out."""
        threshold = self.threshold if threshold is None else threshold
        chosen = [r for r in (self.records if records is None else records) if r.result is not None]
        return BatchResult(images=[r.export_result(threshold) for r in chosen],
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           workbench_version=__version__)

    def load_batch(self, batch: BatchResult, base: Path | None = None) -> list[ImageRecord]:
        """Open saved results (e.g. a `workbench analyze` results.json): each image comes back with its result,
        sample ID, note and review. Relative image paths are taken from `base`."""
        added: list[ImageRecord] = []
        for result in batch.images:
            path = Path(result.image_path)
            if not path.is_absolute() and base is not None and not path.exists():
                path = base / path
            existing = self.find(path)
            record = existing or ImageRecord(path=path)
            record.result = result
            record.sample_id, record.note = result.sample_id, result.note or ""
            record.reviewed_by, record.reviewed_at = result.reviewed_by, result.reviewed_at
            record.error = result.error
            record.edited, record.model_cells = False, None
            record.analysis_rev += 1
            record.status = record.settled_status()
            if existing is None:
                added.append(record)
            else:
                self.notify("record_changed", record)
        self._append(added)
        return added


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
