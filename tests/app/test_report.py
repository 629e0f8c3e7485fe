"""A real ALL-IDB1 smear analysed with the shipped models (issue 17): its nested duplicate box is merged, not counted
twice; its sample report is parsed back (pypdf) for the counts as analysed and after review, the model hashes and
the sign-off; signing waits for the unidentified cells; a signed report is never edited (new versions)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SMEAR = "Im012_1.jpg"   # an ALL smear where the shipped detector boxes one cell twice: a cell cut by the top edge,
#                         its visible part and, inside it, a 27 px strip along the edge (of 853 boxes on ALL-IDB1, the
#                         one pair nested >= 0.8; with wbc-yolov8n-v2 it was a blast of Im008_1 and part of it)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, datasets_root):
    import torch

    from workbench.app.config import load_config
    from workbench.app.pipeline import SmearAnalyzer
    from workbench.app.results import BatchResult

    torch.set_num_threads(2)
    analyzer = SmearAnalyzer.from_config(load_config())
    result = analyzer.analyze_image(datasets_root / "all-idb" / "ALL_IDB1" / "im" / SMEAR, sample_id="ALL-IDB1-012")
    run = tmp_path_factory.mktemp("run")
    batch = BatchResult(images=[result], created="2026-11-28T09:00:00+00:00", workbench_version="0.1.0")
    (run / "results.json").write_text(batch.to_json())
    return run, batch


def ios(a, b) -> float:
    """Intersection over the smaller box, by hand."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def test_the_nested_box_on_a_real_smear_is_counted_once(analysed):
    _, batch = analysed
    result = batch.images[0]
    assert result.settings["nested_ios"] == 0.8 and result.merged_duplicates
    cells = {c.cell_id: c for c in result.cells}
    for merged in result.merged_duplicates:          # each merged box lay inside the cell it was merged into
        assert ios(merged["xyxy"], cells[merged["kept_cell_id"]].xyxy) >= 0.8
    boxes = [c.xyxy for c in result.cells]
    assert all(ios(a, b) < 0.8 for i, a in enumerate(boxes) for b in boxes[i + 1:])   # none left
    assert result.counts.wbc == len(result.cells)    # the merged boxes are not counted


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def count_row(text: str, title: str) -> tuple[str, str]:
    match = re.search(rf"{re.escape(title)}\s+([\d.]+(?: %)?)\s+([\d.]+(?: %)?)", text)
    assert match, f"no '{title}' row in the report"
    return match.group(1), match.group(2)


def test_report_of_a_real_smear_parsed_back(analysed, tmp_path, capsys):
    from workbench.app.cell_review import reviewed_cell
    from workbench.app.results import BatchResult, CellCounts
    from workbench.cli.main import main

    run, batch = analysed
    result = batch.images[0]
    assert result.counts.unidentified > 0, "the smear should have cells in the unidentified band"
    out = tmp_path / "reports" / "report.pdf"
    args = ["report", str(run), "--out", str(out), "--operator", "tech-a", "--max-gallery", "4"]
    assert main(args) == 0
    text = pdf_text(out)
    for expected in ("ALL-IDB1-012", "tech-a", result.detector.sha256, result.classifier.sha256,
                     result.detector.name, result.classifier.name, "NOT SIGNED", "RESEARCH USE ONLY",
                     hashlib.sha256((run / "results.json").read_bytes()).hexdigest()):
        assert expected in text.replace("\n", " ") or expected in text, expected
    c = result.counts
    assert count_row(text, "White cells") == (str(c.wbc), str(c.wbc))
    assert count_row(text, "Unidentified (waiting)") == (str(c.unidentified), str(c.unidentified))
    assert count_row(text, "Blast %") == (f"{c.blast_pct:.1f} %", f"{c.blast_pct:.1f} %")

    # signing waits for the unidentified cells
    assert main(args + ["--sign", "Dr A. Reviewer"]) == 2
    assert "unidentified cell(s) still wait" in capsys.readouterr().err
    assert not (tmp_path / "reports" / "report.v2.pdf").exists()

    # a person reviews: every waiting cell confirmed as called, and one blast relabelled non-blast
    cells = [reviewed_cell(cell) if cell.waiting else cell for cell in result.cells]
    first_blast = next(i for i, cell in enumerate(cells) if cell.label == "blast")
    cells[first_blast] = reviewed_cell(cells[first_blast], "normal")
    reviewed = replace(result, cells=cells)
    reviewed.recount()
    (run / "results.json").write_text(BatchResult(images=[reviewed], created=batch.created,
                                                  workbench_version="0.1.0").to_json())
    old_sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert main(args + ["--sign", "Dr A. Reviewer"]) == 0
    signed = tmp_path / "reports" / "report.v2.pdf"           # never over the first report
    assert hashlib.sha256(out.read_bytes()).hexdigest() == old_sha
    assert not os.stat(signed).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)     # read-only
    text = pdf_text(signed)
    after, before = reviewed.counts, reviewed.counts_as_analysed
    assert before == CellCounts.as_analysed(result.cells) and after.unidentified == 0
    assert count_row(text, "Blasts") == (str(before.blast), str(after.blast))
    assert count_row(text, "Non-blasts") == (str(before.normal), str(after.normal))
    assert count_row(text, "Unidentified (waiting)") == (str(before.unidentified), "0")
    assert count_row(text, "Blast %") == (f"{before.blast_pct:.1f} %", f"{after.blast_pct:.1f} %")
    assert "Dr A. Reviewer" in text and "NOT SIGNED" not in text
    assert re.search(r"Signed at \(UTC\)\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text)
    assert hashlib.sha256((run / "results.json").read_bytes()).hexdigest() in text.replace("\n", "")
    assert f"report.pdf (sha256 {old_sha})" in text.replace("\n", " ")          # what it supersedes

    # a later report is a third version; the signed one stays as it was
    signed_sha = hashlib.sha256(signed.read_bytes()).hexdigest()
    assert main(args + ["--no-gradcam"]) == 0
    assert (tmp_path / "reports" / "report.v3.pdf").is_file()
    assert hashlib.sha256(signed.read_bytes()).hexdigest() == signed_sha


def test_report_of_a_reviewed_case_alone(analysed, tmp_path):
    """The window's case (project.sqlite, each image's analysis saved with it) is a whole source: the report names
    the sample, the models' sha256 and the merged boxes from the saved analysis, and counts the person's review."""
    from workbench.app.annotation.case_store import CaseStore, ImageFields
    from workbench.app.cell_review import reviewed_cell
    from workbench.app.results import CellCounts
    from workbench.cli.main import main

    _, batch = analysed
    result = batch.images[0]
    cells = [reviewed_cell(cell) if cell.waiting else cell for cell in result.cells]     # every waiting cell confirmed
    folder = tmp_path / "case"
    folder.mkdir()
    with CaseStore(folder / "project.sqlite", operator="tech-b") as store:
        [image_id] = store.add_images([result.image_path])
        store.save_image(image_id, ImageFields("edited", True, result.sample_id, "", None, None, None),
                         analysis=result, labels=cells)
    out = tmp_path / "case-report.pdf"
    args = ["report", str(folder), "--out", str(out), "--operator", "tech-b", "--sign", "Dr B. Reviewer",
            "--no-gradcam", "--max-gallery", "4"]
    assert main(args) == 0
    text = pdf_text(out)
    flat = text.replace("\n", " ")
    for expected in ("ALL-IDB1-012", result.detector.sha256, result.classifier.sha256, "Dr B. Reviewer",
                     f"merged by the pipeline: {len(result.merged_duplicates)}"):
        assert expected in flat, expected
    assert "not recorded" not in flat and len(result.merged_duplicates) >= 1
    before, after = CellCounts.as_analysed(result.cells), CellCounts.of(cells)
    assert count_row(text, "Blasts") == (str(before.blast), str(after.blast))
    assert count_row(text, "Unidentified (waiting)") == (str(before.unidentified), "0")
