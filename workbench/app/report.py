"""The sample report: one PDF a lab can file and a reviewer can sign (reportlab; figures by matplotlib).

Contents, in order: the research-use disclaimer; sample / patient ID, operator, dates, software version and the
sha256 of the results it was made from; the detector and classifier (name, sha256, measured test numbers from the
weights manifest, the unidentified band); the counts (white cells, blasts, non-blasts, unidentified, blast %) as
analysed and after review; each image with its boxes; the blast cells with their Grad-CAM; the reviewer's sign-off.

A report is never edited: see workbench.app.report_inputs (versions, read-only signed files). Signing needs a
finished review: a report with unidentified cells still waiting cannot be signed.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.app import report_figures as figures
from workbench.app.report_inputs import ReportSource, file_sha256, versioned_path
from workbench.app.results import CellCounts, ModelInfo, SmearResult, display_text
from workbench.app.weights import Manifest, WeightsEntry
from workbench.core.errors import WorkbenchError

log = logging.getLogger(__name__)

DISCLAIMER = ("RESEARCH USE ONLY. Not a medical device; not for diagnosis or treatment decisions. Every count "
              "must be checked by a qualified person.")
COUNT_ROWS = (("White cells", "wbc"), ("Blasts", "blast"), ("Non-blasts", "normal"),
              ("Unidentified (waiting)", "unidentified"), ("Blast %", "blast_pct"))


@dataclass
class ReportOptions:
    operator: str
    signed_by: str | None = None          # the reviewer's name: the report is signed (and read-only)
    sample_id: str | None = None          # only the images of this sample (None: every image of the results)
    gradcam: bool = True
    max_gallery: int = 48                 # blast cells shown in the gallery (the most certain first)
    signed_at: str | None = None          # default: now (UTC)


@dataclass
class WrittenReport:
    path: Path
    previous: Path | None
    sha256: str
    results_sha256: str
    results_path: Path | None
    counts: CellCounts
    counts_as_analysed: CellCounts
    signed_by: str | None = None
    signed_at: str | None = None
    notes: list[str] = field(default_factory=list)


def write_report(source: ReportSource, out: Path, options: ReportOptions, manifest: Manifest | None = None
                 ) -> WrittenReport:
    """Write the report of `source` to `out` (or its next free version; see versioned_path) and return what was
    written."""
    images = [r for r in source.batch.images if options.sample_id is None or r.sample_id == options.sample_id]
    if not images:
        raise WorkbenchError(f"no images{f' of sample {options.sample_id!r}' if options.sample_id else ''} in "
                             f"{source.description}")
    analysed = [r for r in images if r.ok]
    counts = CellCounts.of(c for r in analysed for c in r.cells)
    as_analysed = CellCounts.as_analysed(c for r in analysed for c in r.cells)
    if options.signed_by is not None:
        if not options.signed_by.strip():
            raise WorkbenchError("the reviewer's name for the sign-off is empty")
        if counts.unidentified:
            raise WorkbenchError(f"{counts.unidentified} unidentified cell(s) still wait for review: review them "
                                 "before signing (or make an unsigned report)")
    manifest = manifest or Manifest.load()
    path, previous = versioned_path(Path(out))
    signed_at = (options.signed_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
                 if options.signed_by else None)
    results_path = source.results_path
    if results_path is None:       # merged results: kept beside the report, so the hash can be checked
        results_path = path.with_name(path.stem + ".results.json")
        _write_new(results_path, source.results_bytes)
    written = WrittenReport(path, previous, "", source.sha256, results_path, counts, as_analysed,
                            options.signed_by, signed_at)
    story = _Story(source, images, options, manifest, written)
    pdf = story.build()
    _write_new(path, pdf)
    if options.signed_by:
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)   # a signed report is not to be edited
    written.sha256 = file_sha256(path)
    return written


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`; never replaces an existing file (exclusive create)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except FileExistsError:
        raise WorkbenchError(f"{path} appeared while the report was written; nothing was replaced") from None


class _Story:
    """The report's flowables (reportlab platypus)."""

    def __init__(self, source: ReportSource, images: list[SmearResult], options: ReportOptions, manifest: Manifest,
                 written: WrittenReport) -> None:
        from reportlab.lib.styles import getSampleStyleSheet

        self.source, self.images, self.options, self.manifest, self.written = source, images, options, manifest, written
        self.styles = getSampleStyleSheet()
        self.small = self.styles["BodyText"].clone("small", fontSize=7.5, leading=9)
        self.flow: list = []
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        samples = sorted({r.sample_id for r in images if r.sample_id})
        self.sample = options.sample_id or (", ".join(samples) if samples else "(none given)")

    # -- helpers ------------------------------------------------------------------------------------------------
    def para(self, text: str, style: str = "BodyText"):
        from reportlab.platypus import Paragraph

        return Paragraph(text, self.small if style == "small" else self.styles[style])

    def table(self, rows: list[list[Any]], widths: list[float], header: bool = True):
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        cells = [[self.para(_esc(str(v)), "small") for v in row] for row in rows]
        table = Table(cells, colWidths=widths, repeatRows=1 if header else 0)
        style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8ee")))
        table.setStyle(TableStyle(style))
        return table

    def image(self, png: bytes, width: float):
        from reportlab.platypus import Image

        picture = Image(io.BytesIO(png))
        picture.drawHeight = width * picture.imageHeight / picture.imageWidth
        picture.drawWidth = width
        return picture

    # -- sections ---------------------------------------------------------------------------------------------
    def build(self) -> bytes:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import mm
        from reportlab.platypus import SimpleDocTemplate, Spacer

        self.width = A4[0] - 30 * mm
        self.flow += [self.para("Smear Workbench: sample report", "Title"), self._disclaimer(), Spacer(1, 4 * mm)]
        self._identity()
        self._models()
        self._counts()
        self._thumbnails()
        self._gallery()
        self._sign_off()
        buffer = io.BytesIO()
        doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                                bottomMargin=18 * mm, title=f"Sample report {self.sample}",
                                author=self.options.operator, creator=f"Smear Workbench {__version__}",
                                subject=f"results sha256 {self.written.results_sha256}",
                                keywords=f"signed by {self.written.signed_by} at {self.written.signed_at}"
                                if self.written.signed_by else "unsigned draft")
        doc.build(self.flow, onFirstPage=self._footer, onLaterPages=self._footer)
        return buffer.getvalue()

    def _disclaimer(self):
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        box = Table([[self.para(f"<b>{DISCLAIMER}</b>")]], colWidths=[self.width])
        box.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.0, colors.HexColor("#b00000")),
                                 ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fff0f0"))]))
        return box

    def _footer(self, canvas, doc) -> None:
        from reportlab.lib.units import mm

        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(15 * mm, 10 * mm, f"Smear Workbench {__version__} · sample {self.sample[:40]} · results "
                                            f"sha256 {self.written.results_sha256[:16]}… · page {doc.page}")
        canvas.drawString(15 * mm, 6.5 * mm, "Research use only, not for diagnosis.")
        canvas.restoreState()

    def _identity(self) -> None:
        batch = self.source.batch
        failed = [r for r in self.images if not r.ok]
        version = f"{__version__} (report); {batch.workbench_version or 'unknown'} (analysis)"
        previous = (f"{self.written.previous.name} (sha256 {file_sha256(self.written.previous)})"
                    if self.written.previous else "none (first version)")
        rows = [["Field", "Value"],
                ["Sample / patient ID", self.sample],
                ["Operator", self.options.operator],
                ["Report date (UTC)", self.created],
                ["Analysis date (UTC)", batch.created or "unknown"],
                ["Software version", version],
                ["Images", f"{len(self.images)} ({len(failed)} could not be analysed)" if failed
                 else str(len(self.images))],
                ["Made from", self.source.description],
                ["Results sha256", self.written.results_sha256],
                ["Supersedes", previous]]
        self.flow += [self.para("Sample", "Heading2"), self.table(rows, [0.25 * self.width, 0.75 * self.width])]

    def _models(self) -> None:
        first = next((r for r in self.images if r.ok), None)
        names = [["Model", "Name (architecture)", "sha256 of the weights file"]]
        numbers = [["Model", "Measured test numbers (weights manifest)"]]
        for role, info in (("Detector", first.detector if first else None),
                           ("Classifier", first.classifier if first else None)):
            if info is None:
                names.append([role, "not recorded in these results", ""])
                continue
            entry = self._entry(info)
            names.append([role, f"{info.name} ({info.architecture})", info.sha256])
            numbers.append([role, _test_numbers(entry) if entry else "not in the weights manifest: no numbers"])
        settings = first.settings if first else {}
        band = settings.get("unidentified_band")
        merged = sum(len(r.merged_duplicates) for r in self.images)
        notes = [f"Unidentified band: p(blast) in [{band[0]:.2f}, {band[1]:.2f}) waits for review "
                 f"(from {settings.get('unidentified_band_source', '?')})" if band else
                 "Unidentified band: none (every cell gets a call)",
                 f"Blast threshold: p(blast) ≥ {settings.get('blast_threshold', 0.5)}; detector confidence ≥ "
                 f"{settings.get('det_conf', '?')}",
                 f"Nested duplicate boxes merged by the pipeline: {merged}"]
        self.flow += [self.para("Models", "Heading2"),
                      self.table(names, [0.14 * self.width, 0.28 * self.width, 0.58 * self.width]),
                      self.table(numbers, [0.14 * self.width, 0.86 * self.width])]
        self.flow += [self.para(_esc(n), "small") for n in notes]

    def _entry(self, info: ModelInfo) -> WeightsEntry | None:
        return next((e for e in self.manifest.entries if e.sha256 == info.sha256), None) or \
            self.manifest.by_name(info.name)

    def _counts(self) -> None:
        after, before = self.written.counts, self.written.counts_as_analysed
        rows = [["Count", "As analysed", "After review"]]
        for title, key in COUNT_ROWS:
            fmt = (lambda c: f"{c.blast_pct:.1f} %") if key == "blast_pct" else (lambda c, k=key: str(getattr(c, k)))
            rows.append([title, fmt(before), fmt(after)])
        cells = [c for r in self.images if r.ok for c in r.cells]
        reviewed = sum(c.reviewed for c in cells)
        self.flow += [self.para("Counts", "Heading2"),
                      self.table(rows, [0.4 * self.width, 0.3 * self.width, 0.3 * self.width]),
                      self.para(f"Cells reviewed by a person: {reviewed} of {len(cells)}. Blast % is of the "
                                "identified cells (unidentified ones are left out until reviewed).", "small")]

    def _thumbnails(self) -> None:
        from reportlab.platypus import KeepTogether

        heading = [self.para("Images", "Heading2")]        # kept with the first image, never alone on a page
        for result in self.images:
            name = display_text(Path(result.image_path).name)
            if not result.ok:
                self.flow += heading + [self.para(_esc(f"{name}: not analysed ({result.error})"), "small")]
                heading = []
                continue
            c = result.counts
            review = f"reviewed by {result.reviewed_by} at {result.reviewed_at}" if result.reviewed_at else \
                "image not marked reviewed"
            caption = (f"<b>{_esc(name)}</b>: {c.wbc} white cells, {c.blast} blasts, {c.normal} non-blasts, "
                       f"{c.unidentified} unidentified · {_esc(review)}")
            png = figures.thumbnail(result, figures.load_rgb(result.image_path))
            self.flow.append(KeepTogether(heading + [self.para(caption, "small"), self.image(png, 0.62 * self.width)]))
            heading = []
        self.flow.append(self.para("Boxes: red blast, green non-blast, amber unidentified (waiting), dashed = "
                                   "reviewed by a person.", "small"))

    def _gallery(self) -> None:
        from reportlab.platypus import KeepTogether

        blasts = [(r, c) for r in self.images if r.ok for c in r.cells if c.label == "blast" and not c.waiting]
        blasts.sort(key=lambda rc: -rc[1].p_blast)
        shown = blasts[: self.options.max_gallery]
        heading = [self.para("Blast cells", "Heading2")]          # kept with the first row of cells
        if not shown:
            self.flow += heading + [self.para("No blast cells.", "small")]
            return
        items, note = _gallery_cells(shown, self.options.gradcam, self.written)
        caption = self.para(_esc(f"{len(shown)} of {len(blasts)} blast cells (most certain first); each cell beside "
                                 f"its Grad-CAM for the blast class. {note}"), "small")
        columns = 4
        for start in range(0, len(items), 16):
            chunk = items[start:start + 16]
            # (the figure is cut tight: a last page with fewer cells than a row is drawn narrower, same cell size)
            picture = self.image(figures.gallery(chunk, columns), self.width * min(len(chunk), columns) / columns)
            picture.hAlign = "LEFT"                                # (in the grid's columns, as the rows above)
            self.flow.append(KeepTogether(heading + [caption, picture]) if start == 0 else picture)

    def _sign_off(self) -> None:
        w = self.written
        rows = [["Sign-off", ""],
                ["Signed by", w.signed_by or "NOT SIGNED (draft)"],
                ["Signed at (UTC)", w.signed_at or "-"],
                ["Results sha256", w.results_sha256]]
        from reportlab.platypus import KeepTogether

        # one block: a sign-off split over two pages would leave the signature apart from what it signs off
        self.flow.append(KeepTogether([self.para("Reviewer sign-off", "Heading2"),
                                       self.table(rows, [0.25 * self.width, 0.75 * self.width]), self._disclaimer()]))


def _gallery_cells(shown, gradcam: bool, written: WrittenReport) -> tuple[list, str]:
    classifier, note = _classifier(shown[0][0].classifier) if gradcam else (None, "Grad-CAM not asked for.")
    if note:
        written.notes.append(note)
    items = []
    by_image: dict[str, list] = {}
    for result, cell in shown:
        by_image.setdefault(result.image_path, []).append((result, cell))
    for path, pairs in by_image.items():
        image = figures.load_rgb(path)
        if image is None:
            continue
        result = pairs[0][0]
        boxes = [c.xyxy for _, c in pairs]
        um_per_px = (result.scale or {}).get("um_per_px")
        name = display_text(Path(path).name)
        if classifier is not None:
            from classification.explain import cell_cams

            for (_, cell), cam in zip(pairs, cell_cams(classifier, image, boxes, "blast", um_per_px)):
                items.append(figures.GalleryCell(name, cell, cam.crop, cam.cam))
        else:
            from workbench.core.crops import crop_cells

            for (_, cell), crop in zip(pairs, crop_cells(image, boxes, 0.15, 128)):
                items.append(figures.GalleryCell(name, cell, crop, None))
    return items, note


def _classifier(info: ModelInfo | None):
    """The classifier that made the results (its file, checked by sha256), for Grad-CAM; (None, why) if absent."""
    if info is None:
        return None, "Grad-CAM not shown: the results do not name their classifier."
    path = Path(info.path)
    if not path.is_file():
        entry = Manifest.load().by_name(info.name)
        path = Manifest.load().file_of(entry) if entry else path
    if not path.is_file() or file_sha256(path) != info.sha256:
        return None, f"Grad-CAM not shown: the classifier {info.name} (sha256 {info.sha256[:12]}…) is not here."
    from classification.predictor import BlastClassifier

    return BlastClassifier(path), ""


def _test_numbers(entry: WeightsEntry) -> str:
    """The measured test numbers of a manifest entry, one line per part of the test set."""
    test = (entry.metrics or {}).get("test") or {}
    parts = {k: v for k, v in test.items() if isinstance(v, dict)} or {"test": test}
    if entry.task == "classify" and isinstance((entry.metrics or {}).get("test_allidb_only"), dict):
        parts["ALL-IDB only"] = entry.metrics["test_allidb_only"]
    keys = (("ap50", "AP50"), ("precision", "precision"), ("recall", "recall"), ("specificity", "specificity"),
            ("accuracy", "accuracy"), ("roc_auc", "ROC-AUC"), ("n", "n"), ("images", "images"))
    lines = []
    for name, numbers in list(parts.items())[:4]:
        values = [f"{label} {numbers[k]:.3f}" if isinstance(numbers[k], float) else f"{label} {numbers[k]}"
                  for k, label in keys if isinstance(numbers.get(k), (int, float))]
        if values:
            lines.append(f"{name}: " + ", ".join(values))
    computed = (entry.metrics or {}).get("computed_by")
    return "\n".join(lines + ([f"({computed})"] if isinstance(computed, str) else [])) or "no test numbers"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br/>")
