"""Lab-style review without Qt (issue 17): counts as analysed and after review with the unidentified band, the
results schema 3 (and reading versions 1-2), the band rule and where the band comes from, nested duplicate boxes,
the project store's per-cell review columns (and its upgrade from schema 1), grouping and "next unreviewed"."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from workbench.app.results import (CELL_CSV_COLUMNS, SCHEMA_VERSION, BatchResult, CellCounts, CellDetection,
                                   SmearResult)


def cell(i, label="normal", p=0.1, det=0.9, xyxy=None, **kw) -> CellDetection:
    kw.setdefault("analysed_label", label)
    return CellDetection(cell_id=i, xyxy=xyxy or (10.0 * i, 0.0, 10.0 * i + 8, 8.0), det_conf=det, label=label,
                         label_conf=max(p, 1 - p), p_blast=p, **kw)


# -- counts ---------------------------------------------------------------------------------------------------------
def test_unidentified_cells_wait_outside_the_counts_until_reviewed():
    cells = [cell(0, "blast", 0.95), cell(1, "blast", 0.6, unidentified=True), cell(2, "normal", 0.1),
             cell(3, "normal", 0.45, unidentified=True), cell(4, "blast", 0.92)]
    # after review, by hand: 2 certain blasts, 1 certain normal, 2 waiting; blast % of the 3 identified = 66.67
    assert CellCounts.of(cells) == CellCounts(wbc=5, blast=2, normal=1, blast_pct=66.67, unidentified=2)
    assert CellCounts.as_analysed(cells) == CellCounts.of(cells)
    # a person decides: cell 1 is a blast, cell 3 a blast too (relabelled), cell 0 was not one (relabelled)
    from workbench.app.cell_review import reviewed_cell

    cells[1] = reviewed_cell(cells[1])
    cells[3] = reviewed_cell(cells[3], "blast")
    cells[0] = reviewed_cell(cells[0], "normal")
    assert CellCounts.of(cells) == CellCounts(wbc=5, blast=3, normal=2, blast_pct=60.0, unidentified=0)
    # as analysed nothing moved; p_blast, box and detector confidence are the machine's still
    assert CellCounts.as_analysed(cells) == CellCounts(wbc=5, blast=2, normal=1, blast_pct=66.67, unidentified=2)
    assert (cells[3].p_blast, cells[3].analysed_label, cells[3].reviewed) == (0.45, "normal", True)
    # a box drawn by hand (no analysed label) counts after review only
    drawn = CellDetection(5, (0, 0, 5, 5), 1.0, "blast", 1.0, 1.0)
    assert CellCounts.of(cells + [drawn]).blast == 4 and CellCounts.as_analysed(cells + [drawn]).wbc == 5


def test_results_schema_3_round_trip_and_older_files(tmp_path):
    result = SmearResult(image_path="a.jpg", width=100, height=80,
                         cells=[cell(0, "blast", 0.7, unidentified=True), cell(1, "normal", 0.2, reviewed=True)])
    result.recount()
    batch = BatchResult(images=[result])
    data = json.loads(batch.to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 3
    assert data["totals"]["unidentified"] == 1 and data["totals_as_analysed"]["unidentified"] == 1
    again = BatchResult.from_dict(data).images[0]
    assert again.cells == result.cells and again.counts == result.counts
    rows = batch.to_csv().splitlines()
    assert rows[0].split(",") == CELL_CSV_COLUMNS
    assert rows[1].split(",")[-3:] == ["blast", "1", "0"] and rows[2].split(",")[-3:] == ["normal", "0", "1"]
    # a version 2 file: the labels were the pipeline's, nobody had reviewed a cell
    v2 = {"schema_version": 2, "images": [{"image_path": "a.jpg", "cells": [
        {"cell_id": 0, "xyxy": [0, 0, 5, 5], "det_conf": 0.9, "label": "blast", "label_conf": 0.8, "p_blast": 0.8}],
        "counts": {"wbc": 1, "blast": 1, "normal": 0, "blast_pct": 100.0}}]}
    old = BatchResult.from_dict(v2).images[0]
    assert old.cells[0].analysed_label == "blast" and not old.cells[0].reviewed and not old.cells[0].unidentified
    assert old.counts_as_analysed == CellCounts(wbc=1, blast=1, normal=0, blast_pct=100.0)
    with pytest.raises(ValueError):
        BatchResult.from_dict({**v2, "schema_version": 4})


# -- the band -------------------------------------------------------------------------------------------------------
def test_band_rule_on_a_hand_computed_case():
    from classification.band import band_of, choose_band, in_band

    # 10 crops. Blast calls (p >= h) reach precision 0.95 first at h = 0.76 (from 0.75 down the 0.75 non-blast is
    # called too: 2 of 3); non-blast calls (p < l) stay >= 95 % right up to l = 0.30 (0.05, 0.1, 0.2, 0.25: all
    # non-blasts; from 0.31 up the 0.3 blast is called non-blast: 4 of 5). Inside [0.30, 0.76): 0.3, 0.55, 0.6, 0.75
    truth = [0, 0, 0, 0, 1, 0, 1, 0, 1, 1]
    p = [0.05, 0.1, 0.2, 0.25, 0.3, 0.55, 0.6, 0.75, 0.8, 0.9]
    band = choose_band([bool(t) for t in truth], p, threshold=0.5, target=0.95)
    assert (band["low"], band["high"]) == (0.3, 0.76)
    assert band["precision_above"] == 1.0 and band["npv_below"] == 1.0 and band["errors_outside"] == 0
    assert band["fraction_inside"] == 0.4
    assert band_of(band) == (0.3, 0.76) and band_of({"low": 0.5, "high": 0.5}) is None and band_of(None) is None
    assert in_band(0.3, (0.3, 0.76)) and in_band(0.75, (0.3, 0.76)) and not in_band(0.76, (0.3, 0.76))


def test_where_the_band_comes_from():
    from workbench.app.band import resolve_band

    meta = {"unidentified_band": {"low": 0.4, "high": 0.8}}
    entry = {"low": 0.5, "high": 0.87}
    assert resolve_band("weights", meta, entry) == ((0.4, 0.8), "weights")
    assert resolve_band("weights", {}, entry) == ((0.5, 0.87), "manifest")
    assert resolve_band("weights", {}, None) == (None, "none")
    assert resolve_band("off", meta, entry) == (None, "off")
    assert resolve_band([0.2, 0.6], meta, entry) == ((0.2, 0.6), "setting")


def test_band_setting_is_checked():
    from workbench.app.config import load_config
    from workbench.core.errors import ConfigError

    assert load_config().classifier.unidentified_band == "weights"
    assert load_config(overrides={"classifier": {"unidentified_band": [0.3, 0.7]}}).classifier.unidentified_band \
        == [0.3, 0.7]
    for bad in ([0.7, 0.3], [0.2], "sometimes", [0.1, 1.5], None):
        with pytest.raises(ConfigError, match="unidentified_band"):
            load_config(overrides={"classifier": {"unidentified_band": bad}})
    assert load_config(overrides={"detector": {"nested_ios": None}}).detector.nested_ios is None
    with pytest.raises(ConfigError, match="nested_ios"):
        load_config(overrides={"detector": {"nested_ios": 0.0}})


def test_shipped_classifier_has_a_band_chosen_on_validation():
    """Wherever the analysis finds it (workbench.app.band.resolve_band): the checkpoint's meta (weights trained since
    the rule exists), else the weights' manifest entry."""
    from classification.model import load_classifier
    from workbench.app.band import resolve_band
    from workbench.app.weights import Manifest

    manifest = Manifest.load()
    entry = manifest.default("classify")
    _, spec = load_classifier(manifest.file_of(entry))
    resolved, source = resolve_band("weights", spec.meta, entry.unidentified_band)
    assert resolved is not None and source in ("weights", "manifest"), f"{entry.name} has no unidentified band"
    band = (spec.meta if source == "weights" else {"unidentified_band": entry.unidentified_band})["unidentified_band"]
    assert band["low"] <= band["threshold"] <= band["high"] and band["chosen_on"].startswith("val")
    assert band["precision_above"] >= band["target"] and band["npv_below"] >= band["target"]


# -- nested duplicates ----------------------------------------------------------------------------------------------
def test_a_nested_box_is_one_cell_counted_once():
    """The case of the issue: a normal cell 0.83 boxed inside a blast 0.77: one cell, said both ways."""
    from workbench.app.nested import merge_nested

    blast = cell(0, "blast", 0.77, det=0.77, xyxy=(100.0, 100.0, 220.0, 220.0))
    inner = cell(1, "normal", 0.17, det=0.83, xyxy=(120.0, 130.0, 200.0, 210.0))        # wholly inside
    neighbour = cell(2, "normal", 0.1, det=0.9, xyxy=(200.0, 100.0, 260.0, 160.0))      # 1/3 of it overlaps
    before = CellCounts.of([blast, inner, neighbour])
    assert before.wbc == 3 and before.blast == 1 and before.normal == 2
    cells, merged = merge_nested([blast, inner, neighbour], 0.8)
    assert [c.xyxy for c in cells] == [blast.xyxy, neighbour.xyxy] and [c.cell_id for c in cells] == [0, 1]
    kept = cells[0]
    assert kept.det_conf == 0.83 and kept.label == "blast" and kept.unidentified      # two calls: a person decides
    assert merged == [{"xyxy": list(inner.xyxy), "det_conf": 0.83, "label": "normal", "p_blast": 0.17,
                       "kept_cell_id": 0, "ios": 1.0}]
    assert CellCounts.of(cells) == CellCounts(wbc=2, blast=0, normal=1, blast_pct=0.0, unidentified=1)
    # the same call twice: merged, counted once, nothing to decide
    same, _ = merge_nested([blast, cell(1, "blast", 0.9, det=0.5, xyxy=inner.xyxy)], 0.8)
    assert len(same) == 1 and not same[0].unidentified and same[0].det_conf == 0.77
    assert merge_nested([blast, inner], None) == ([blast, inner], [])                   # off


# -- the project store ----------------------------------------------------------------------------------------------
def test_store_keeps_the_per_cell_review_and_upgrades_schema_1(tmp_path):
    from workbench.app.annotation.store import STORE_SCHEMA, ProjectStore

    with ProjectStore.open(tmp_path / "new", operator="tech") as store:
        entry = store.add_image(tmp_path / "a.jpg", 100, 80)
        store.replace_cells(entry.id, [cell(0, "blast", 0.7, unidentified=True)], "model predictions", "model")
        before = store.cells(entry.id)[0]
        from workbench.app.cell_review import reviewed_cell

        store.apply(entry.id, {0: before}, {0: reviewed_cell(before, "normal")}, "reclassify")
        stored = store.cells(entry.id)[0]
        assert (stored.label, stored.reviewed, stored.analysed_label, stored.unidentified) == \
            ("normal", True, "blast", True)
        row = store.audit(entry.id)[-1]
        assert row.action == "reclassify" and row.operator == "tech"
        assert row.before["label"] == "blast" and not row.before["reviewed"]
        assert row.after["label"] == "normal" and row.after["reviewed"]
    # a project written by schema 1 (no review columns) opens, upgraded, with its boxes
    old = tmp_path / "old" / "project.sqlite"
    old.parent.mkdir()
    conn = sqlite3.connect(old)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, width INTEGER NOT NULL DEFAULT 0,
            height INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'new', reviewed_by TEXT, reviewed_at TEXT,
            added_at TEXT NOT NULL);
        CREATE TABLE cells (image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE, cell_id INTEGER NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, label TEXT NOT NULL,
            det_conf REAL NOT NULL, label_conf REAL NOT NULL, p_blast REAL NOT NULL, source TEXT NOT NULL,
            PRIMARY KEY (image_id, cell_id));
        CREATE TABLE audit (id INTEGER PRIMARY KEY, time TEXT NOT NULL, operator TEXT NOT NULL, image_id INTEGER,
            action TEXT NOT NULL, cell_id INTEGER, before_json TEXT, after_json TEXT);
        INSERT INTO meta VALUES ('schema_version', '1'), ('labels', '["blast", "normal"]');
        INSERT INTO images VALUES (1, 'a.jpg', 100, 80, 'labelled', NULL, NULL, '2026-01-01');
        INSERT INTO cells VALUES (1, 0, 1, 2, 30, 40, 'blast', 0.9, 0.8, 0.8, 'manual');
    """)
    conn.close()
    with ProjectStore(old) as store:
        assert store._meta("schema_version") == str(STORE_SCHEMA) == "2"
        [kept] = store.cells(1)
        assert kept == CellDetection(0, (1.0, 2.0, 30.0, 40.0), 0.9, "blast", 0.8, 0.8)


# -- groups and "next unreviewed" -------------------------------------------------------------------------------------
def test_groups_sorting_and_next_unreviewed():
    from workbench.app.cell_review import (BLAST_GROUP, OTHER_GROUP, UNIDENTIFIED_GROUP, collect, grouped,
                                           next_unreviewed_cell, next_unreviewed_image, reviewed_cell)
    from workbench.app.session import SessionModel

    model = SessionModel(threshold=0.5)
    a = SmearResult(image_path="a.jpg", sample_id="P1", cells=[cell(0, "blast", 0.95, det=0.9),
                                                               cell(1, "normal", 0.2, det=0.6),
                                                               cell(2, "blast", 0.6, det=0.95, unidentified=True),
                                                               cell(3, "normal", 0.3, det=0.3)])
    b = SmearResult(image_path="b.jpg", sample_id="P2", cells=[cell(0, "blast", 0.99, det=0.7, reviewed=True),
                                                               cell(1, "normal", 0.05, det=0.8)])
    ra, rb = model.load_batch(BatchResult(images=[a, b]))
    entries = collect(model.records, model.threshold)
    assert [(e.record.name, e.cell.cell_id) for e in entries] == [("a.jpg", 0), ("a.jpg", 1), ("a.jpg", 2),
                                                                  ("b.jpg", 0), ("b.jpg", 1)]   # 3 is below 0.5
    groups = grouped(entries, "p_blast")
    assert [(e.record.name, e.cell.cell_id) for e in groups[BLAST_GROUP]] == [("b.jpg", 0), ("a.jpg", 0)]
    assert [e.cell.cell_id for e in groups[UNIDENTIFIED_GROUP]] == [2]
    assert [(e.record.name, e.cell.cell_id) for e in grouped(entries, "det_conf")[OTHER_GROUP]] == \
        [("b.jpg", 1), ("a.jpg", 1)]
    assert [e.record.name for e in collect(model.records, 0.5, sample_id="P2")] == ["b.jpg", "b.jpg"]
    assert [e.cell.cell_id for e in collect(model.records, 0.0, image=ra)] == [0, 1, 2, 3]
    # next unreviewed: after a #0 comes a #1; after a #2 comes b #1 (b #0 is reviewed); then round to a #0
    assert next_unreviewed_cell(model.records, 0.5, ra, 0)[1].cell_id == 1
    found = next_unreviewed_cell(model.records, 0.5, ra, 2)
    assert (found[0], found[1].cell_id) == (rb, 1)
    assert next_unreviewed_cell(model.records, 0.5, rb, 1)[1].cell_id == 0
    ra.result.cells = [reviewed_cell(c) for c in ra.result.cells]
    rb.result.cells = [reviewed_cell(c) for c in rb.result.cells]
    assert next_unreviewed_cell(model.records, 0.5, ra, -1) is None
    model.mark_reviewed(rb, True, user="x")
    assert next_unreviewed_image(model.records, rb) is ra and next_unreviewed_image(model.records, ra) is ra
