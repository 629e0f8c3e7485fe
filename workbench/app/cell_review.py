"""Reviewing cells the way a lab analyser's technician does (Qt-free): every cell of a session in three groups
(blast, non-blast, unidentified), sorted and filtered; a reclassified or confirmed cell; the next cell or image
that still waits for a person.

Groups: a cell waiting for review inside the classifier's unidentified band is "unidentified"; every other cell is
"blast" or "non-blast" by its label now (a reviewed unidentified cell has left the band's group for its class).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Callable, Iterable, Sequence

from workbench.app.results import CellDetection
from workbench.app.session import REVIEWED, ImageRecord

BLAST_GROUP, OTHER_GROUP, UNIDENTIFIED_GROUP = "blast", "non-blast", "unidentified"
GROUPS = (BLAST_GROUP, UNIDENTIFIED_GROUP, OTHER_GROUP)
GROUP_TITLES = {BLAST_GROUP: "Blasts", UNIDENTIFIED_GROUP: "Unidentified", OTHER_GROUP: "Non-blast"}
# the label a cell dropped into a group gets (the unidentified group takes no drops: a person decides, not a drag)
GROUP_LABEL = {BLAST_GROUP: "blast", OTHER_GROUP: "normal"}


def group_of(cell: CellDetection) -> str:
    if cell.waiting:
        return UNIDENTIFIED_GROUP
    return BLAST_GROUP if cell.label == "blast" else OTHER_GROUP


@dataclass(frozen=True, eq=False)
class CellEntry:
    """One cell of the session as the gallery lists it."""

    record: ImageRecord
    order: int               # the record's place in the session (ties of a sort go by image, then cell)
    cell: CellDetection

    @property
    def key(self) -> tuple[int, int]:
        return (id(self.record), self.cell.cell_id)

    @property
    def group(self) -> str:
        return group_of(self.cell)

    @cached_property
    def crop_key(self) -> tuple:
        """(image path, box rounded to 0.1 px): the crop of this cell as the gallery caches it."""
        return (str(self.record.path), tuple(round(float(v), 1) for v in self.cell.xyxy))


SORTS: dict[str, tuple[str, Callable[[CellEntry], tuple]]] = {
    "p_blast": ("p(blast), highest first", lambda e: (-e.cell.p_blast, e.order, e.cell.cell_id)),
    "p_blast_up": ("p(blast), lowest first", lambda e: (e.cell.p_blast, e.order, e.cell.cell_id)),
    "det_conf": ("Detector confidence, highest first", lambda e: (-e.cell.det_conf, e.order, e.cell.cell_id)),
    "image": ("Image, then cell", lambda e: (e.order, e.cell.cell_id)),
}


def collect(records: Sequence[ImageRecord], threshold: float, image: ImageRecord | None = None,
            sample_id: str | None = None) -> list[CellEntry]:
    """The cells shown at the display threshold of the analysed records (only `image`'s, only those of
    `sample_id` when given), in session order."""
    entries = []
    for order, record in enumerate(records):
        if (image is not None and record is not image) or (sample_id is not None and record.sample_id != sample_id):
            continue
        entries.extend(CellEntry(record, order, cell) for cell in record.cells(threshold))
    return entries


def grouped(entries: Iterable[CellEntry], sort: str = "p_blast") -> dict[str, list[CellEntry]]:
    """The entries per group, each group sorted by `sort` (a key of SORTS)."""
    key = SORTS[sort][1]
    out: dict[str, list[CellEntry]] = {group: [] for group in GROUPS}
    for entry in entries:
        out[entry.group].append(entry)
    for group in out:
        out[group].sort(key=key)
    return out


def reviewed_cell(cell: CellDetection, label: str | None = None) -> CellDetection:
    """`cell` reviewed by a person: relabelled to `label` (None: its label confirmed). Box, detector confidence and
    the classifier's p_blast stay as they were (they are what the machine said); the analysed label is kept, so
    the counts as analysed do not move."""
    return replace(cell, label=label or cell.label, reviewed=True)


def next_unreviewed_cell(records: Sequence[ImageRecord], threshold: float, start: ImageRecord | None,
                         after_cell: int = -1) -> tuple[ImageRecord, CellDetection] | None:
    """The next shown cell nobody has reviewed, after cell `after_cell` of `start` in session order (image by
    image, cell id by cell id), wrapping round; unidentified cells are not preferred: every cell is verified."""
    if not records:
        return None
    first = records.index(start) if start in records else 0
    for step in range(len(records) + 1):
        record = records[(first + step) % len(records)]
        for cell in sorted(record.cells(threshold), key=lambda c: c.cell_id):
            if cell.reviewed or (step == 0 and cell.cell_id <= after_cell) or \
                    (step == len(records) and cell.cell_id > after_cell):
                continue
            return record, cell
    return None


def next_unreviewed_image(records: Sequence[ImageRecord], start: ImageRecord | None) -> ImageRecord | None:
    """The next analysed image (after `start`, wrapping round) not marked reviewed."""
    first = records.index(start) if start in records else -1
    for step in range(1, len(records) + 1):
        record = records[(first + step) % len(records)]
        if record.analysed and record.status != REVIEWED:
            return record
    return None
