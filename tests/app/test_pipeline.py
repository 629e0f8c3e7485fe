"""The analysis pipeline on real BCCD and ALL-IDB images with tiny real models (see conftest)."""

from __future__ import annotations

import json

import pytest

from workbench.core.images import ImageInput
from workbench.app.config import with_overrides
from workbench.app.pipeline import SmearAnalyzer
from workbench.app.results import CELL_CSV_COLUMNS, SCHEMA_VERSION, BatchResult, SmearResult
from workbench.app.weights import sha256_file


@pytest.fixture()
def analyzer(tiny_config):
    return SmearAnalyzer.from_config(tiny_config)


def check_result(result: SmearResult, width: int, height: int) -> None:
    assert result.ok, result.error
    assert (result.width, result.height) == (width, height)
    assert result.cells, "the low test threshold must give the tiny detector some boxes"
    for cell in result.cells:
        x1, y1, x2, y2 = cell.xyxy
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        assert 0 <= cell.det_conf <= 1
        assert cell.label in ("blast", "normal")
        assert 0.5 <= cell.label_conf <= 1 and 0 <= cell.p_blast <= 1
        assert cell.label_conf == pytest.approx(cell.p_blast if cell.label == "blast" else 1 - cell.p_blast, abs=1e-4)
    confs = [c.det_conf for c in result.cells]
    assert confs == sorted(confs, reverse=True)
    assert [c.cell_id for c in result.cells] == list(range(len(result.cells)))
    c = result.counts
    assert c.wbc == len(result.cells) == c.blast + c.normal
    assert c.blast == sum(cell.label == "blast" for cell in result.cells) == result.blast_count
    assert c.blast_pct == pytest.approx(100 * c.blast / c.wbc, abs=0.01)


def test_bccd_image(analyzer, bccd_image, tiny_detector, tiny_classifier):
    result = analyzer.analyze_image(bccd_image, sample_id="P-001")
    check_result(result, 640, 480)
    assert not result.tiled and result.n_tiles == 1
    assert len(result.cells) <= 15  # max_det
    assert result.sample_id == "P-001"
    assert result.detector.sha256 == sha256_file(tiny_detector)
    assert result.classifier.sha256 == sha256_file(tiny_classifier)
    assert result.detector.class_names == ["wbc"] and result.classifier.class_names == ["blast", "normal"]
    assert set(result.timings_ms) == {"load", "scale", "detect", "classify", "total"}
    assert result.settings["det_conf"] == 0.0001


def test_allidb1_large_image_is_tiled(tiny_config, allidb1_canon_image):
    analyzer = SmearAnalyzer.from_config(tiny_config)
    result = analyzer.analyze_image(allidb1_canon_image)
    check_result(result, 2592, 1944)
    assert result.tiled and result.n_tiles == 24
    untiled = SmearAnalyzer.from_config(with_overrides(tiny_config, {"tiling": {"mode": "off"}})
                                        ).analyze_image(allidb1_canon_image)
    assert not untiled.tiled and untiled.n_tiles == 1


def test_allidb2_tiff_crop(analyzer, datasets_root):
    result = analyzer.analyze_image(datasets_root / "all-idb" / "ALL_IDB2" / "img" / "Im013_1.tif")
    check_result(result, 257, 257)


def test_batch_goes_on_after_a_bad_image(analyzer, bccd_root, tmp_path):
    good = bccd_root / "JPEGImages" / "BloodImage_00001.jpg"
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    seen = []
    batch = analyzer.analyze([good, bad, tmp_path / "missing.jpg", ImageInput(tmp_path, "cannot read folder: x"), good],
                             progress=lambda done, total, r: seen.append((done, total, r.ok)))
    assert [r.ok for r in batch.images] == [True, False, False, False, True]
    assert "not an image" in batch.images[1].error and "not found" in batch.images[2].error
    assert seen == [(1, 5, True), (2, 5, False), (3, 5, False), (4, 5, False), (5, 5, True)]
    assert batch.totals.wbc == sum(len(r.cells) for r in batch.images)


def test_cancel_stops_between_images(analyzer, bccd_root):
    images = [bccd_root / "JPEGImages" / f"BloodImage_0000{i}.jpg" for i in range(3)]
    done = []
    batch = analyzer.analyze(images, progress=lambda d, t, r: done.append(d), cancel=lambda: len(done) >= 1)
    assert len(batch.images) == 1


def test_json_and_csv_round_trip(analyzer, bccd_root):
    batch = analyzer.analyze([bccd_root / "JPEGImages" / "BloodImage_00002.jpg"], sample_id="S1")
    data = json.loads(batch.to_json())
    assert data["schema_version"] == SCHEMA_VERSION and data["n_images"] == 1 and data["n_failed"] == 0
    again = BatchResult.from_dict(data)
    assert again.to_dict() == batch.to_dict()
    lines = batch.to_csv().strip().splitlines()
    assert lines[0].split(",") == CELL_CSV_COLUMNS
    assert len(lines) == 1 + batch.totals.wbc


def test_settings_that_do_not_fit_are_clear(tiny_config):
    from workbench.core.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="overlap"):
        SmearAnalyzer.from_config(with_overrides(tiny_config, {"tiling": {"overlap": 0.95}}))
    with pytest.raises(WorkbenchError, match="overlap=0.9' is out of range"):   # the tiler's own bound, checked early
        SmearAnalyzer.from_config(with_overrides(tiny_config, {"tiling": {"overlap": 0.9}}))


def test_iter_analyze_yields_the_decoded_image(analyzer, bccd_image):
    got = [image.shape for _, image in analyzer.iter_analyze([bccd_image])]
    assert got == [(480, 640, 3)]


def test_detection_leaves_torch_threads_alone(analyzer, bccd_image):
    import torch

    before = torch.get_num_threads()
    analyzer.analyze_image(bccd_image)
    assert torch.get_num_threads() == before
