"""What a sample report is made from, and where it is written without ever changing an earlier one.

A report is made from a run (a folder with `results.json`, as `workbench analyze` or the GUI's export write it, or
the results.json itself) and/or an annotation project (a folder with `project.sqlite`): the run gives the analysis
(models, settings, scores), the project the review (its boxes carry the reviewed labels, audited). When a folder
holds both, each image the project knows takes its cells from the project. The report names the sha256 of the
results it was made from: the results.json file's bytes, or (when a project's review was merged in) the bytes of
the merged results written beside the report as `<report>.results.json`. A case (the window's project, which keeps
each image's analysis too) is a whole source by itself.

A report is never edited: writing to a path that exists writes `<stem>.v2<suffix>`, `.v3`, ... instead, and a
signed report is made read-only.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.app.annotation.store import PROJECT_FILE
from workbench.app.results import BatchResult, SmearResult, _json_safe
from workbench.app.weights import sha256_file as file_sha256      # (one sha256 of a file for the whole app)
from workbench.core.errors import WorkbenchError

RESULTS_FILE = "results.json"


@dataclass
class ReportSource:
    batch: BatchResult
    results_bytes: bytes           # the results the report is made from, as hashed
    results_path: Path | None      # the file they were read from (None: merged, written beside the report)
    project: Path | None           # the project whose review was merged in
    description: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.results_bytes).hexdigest()


def results_bytes(batch: BatchResult) -> bytes:
    return (json.dumps(_json_safe(batch.to_dict()), indent=2, allow_nan=False) + "\n").encode("utf-8")


def load_source(path: Path | str) -> ReportSource:
    """The results of a run folder, a results.json or a project folder (see the module docstring)."""
    path = Path(path)
    if path.is_file():
        results, project = path, None
    elif path.is_dir():
        results = path / RESULTS_FILE if (path / RESULTS_FILE).is_file() else None
        project = path if (path / PROJECT_FILE).is_file() else None
        if results is None and project is None:
            raise WorkbenchError(f"{path}: neither a run (no {RESULTS_FILE}) nor an annotation project "
                                 f"(no {PROJECT_FILE})")
    else:
        raise WorkbenchError(f"{path}: no such run, results file or project")
    batch, data = None, b""
    if results is not None:
        from workbench.app.results import load_results

        try:
            data = results.read_bytes()
            batch = load_results(results)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkbenchError(f"{results}: not a results file the workbench can read ({exc})") from None
    if project is None:
        return ReportSource(batch, data, results, None, str(results))
    batch = merge_project(batch or BatchResult(), project)
    return ReportSource(batch, results_bytes(batch), None, project,
                        f"{results} with the review of {project / PROJECT_FILE}" if results else
                        str(project / PROJECT_FILE))


def merge_project(batch: BatchResult, folder: Path) -> BatchResult:
    """`batch` with every image the project knows taking the project's cells and review (images only in the
    project are added, without analysis details; a case's images with the analysis the case saved)."""
    from workbench.app.annotation.store import ProjectStore

    if _is_case(Path(folder) / PROJECT_FILE):
        return merge_case(batch, folder)
    with ProjectStore(Path(folder) / PROJECT_FILE) as store:
        by_path = {Path(r.image_path).resolve(): r for r in batch.images}
        for entry in store.images():
            result = by_path.get(entry.path.resolve())
            if result is None:
                result = SmearResult(image_path=str(entry.path), width=entry.width, height=entry.height)
                batch.images.append(result)
            if result.ok:
                result.cells = store.cells(entry.id)
                result.recount()
            if entry.status == "reviewed":
                result.reviewed_by, result.reviewed_at = entry.reviewed_by, entry.reviewed_at
    return batch


def _is_case(path: Path) -> bool:
    """Whether the project file is a case (workbench.app.annotation.case_store), read without writing to it."""
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='case_images'").fetchone() \
                is not None
    except sqlite3.Error:
        return False            # (ProjectStore then says what is wrong with the file)


def merge_case(batch: BatchResult, folder: Path) -> BatchResult:
    """A case (what the window saves as a technician works): each image with the analysis the case saved (models,
    settings, merged boxes: what a report names) unless the run gives one, its sample ID, note and review; its
    cells are the person's boxes once the image was edited or reviewed, else the analysis' own."""
    from workbench.app.annotation.case_store import CaseStore

    with CaseStore(Path(folder) / PROJECT_FILE) as store:
        by_path = {Path(r.image_path).resolve(): r for r in batch.images}
        for image in store.load():
            result = by_path.get(image.path.resolve())
            if result is None:
                result = (replace(image.analysis, image_path=str(image.path)) if image.analysis is not None else
                          SmearResult(image_path=str(image.path), width=image.width, height=image.height,
                                      error=image.error))
                batch.images.append(result)
            result.sample_id = image.sample_id or result.sample_id
            result.note = image.note or result.note
            if result.ok and image.edited:
                result.cells = list(image.labels)
            if result.ok:
                result.recount()
            if image.state == "reviewed":
                result.reviewed_by, result.reviewed_at = image.reviewed_by, image.reviewed_at
    return batch


_VERSION = re.compile(r"^(?P<stem>.*)\.v(?P<n>\d+)$")


def versioned_path(out: Path) -> tuple[Path, Path | None]:
    """(where to write, the newest earlier version or None): `out` if free, else the next free `.vN` name."""
    out = Path(out)
    stem = _VERSION.match(out.stem).group("stem") if _VERSION.match(out.stem) else out.stem
    base = out.with_name(stem + out.suffix)
    versions = [base] + [out.with_name(f"{stem}.v{n}{out.suffix}") for n in range(2, 10_000)]
    previous = None
    for candidate in versions:
        if not candidate.exists():
            return (out, previous) if candidate == out else (candidate, previous)
        previous = candidate
    raise WorkbenchError(f"{out}: too many report versions")
