"""Folder runs overlap decoding with the models, keep the input order and still stop on cancel; the cell comparison
behind the backend equivalence checks, on hand-made boxes."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from workbench.app.equivalence import compare_boxes
from workbench.app.prefetch import prepared_ahead


def test_the_next_item_is_prepared_while_the_caller_works_on_this_one():
    started = {i: threading.Event() for i in range(4)}

    def prepare(i):
        started[i].set()
        return i * 10, threading.current_thread().name

    seen = []
    for item, (value, thread) in prepared_ahead(list(range(4)), prepare):
        if item + 1 < 4:   # item + 1 is being prepared now, while item is in the caller's hands
            assert started[item + 1].wait(5), f"item {item + 1} was not prepared ahead"
        seen.append((item, value))
        assert thread.startswith("prefetch")
    assert seen == [(0, 0), (1, 10), (2, 20), (3, 30)]


def test_breaking_off_drops_what_was_prepared_ahead():
    prepared = []

    def prepare(i):
        prepared.append(i)
        time.sleep(0.05)
        return i

    stream = prepared_ahead(list(range(10)), prepare)
    assert next(stream) == (0, 0)
    stream.close()   # the caller stops (cancel, an error): at most the one item ahead was (being) prepared
    time.sleep(0.2)
    assert prepared in ([0], [0, 1])


@pytest.fixture(scope="module")
def analyzer(tiny_detector, tiny_classifier):
    from workbench.app.config import load_config
    from workbench.app.pipeline import SmearAnalyzer

    return SmearAnalyzer.from_config(load_config(overrides={
        "detector": {"weights": str(tiny_detector), "conf": 0.001, "max_det": 5},
        "classifier": {"weights": str(tiny_classifier), "batch": 8}}))


def test_a_folder_run_keeps_the_order_and_the_bad_images(analyzer, bccd_root, tmp_path):
    images = sorted((bccd_root / "JPEGImages").glob("*.jpg"))[:3]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    order = [images[0], bad, images[1], images[2]]
    out = list(analyzer.iter_analyze(order))
    assert [r.image_path for r, _ in out] == [str(p) for p in order]
    assert [r.error is None for r, _ in out] == [True, False, True, True]
    assert out[1][1] is None and out[0][1].shape == (480, 640, 3)
    for result, _ in (out[0], out[2]):
        timings = result.timings_ms
        assert set(timings) == {"load", "scale", "detect", "classify", "total"}
        assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"), abs=0.3)
    # the same image alone gives the same cells as in the folder run
    alone = analyzer.analyze_image(images[1])
    assert [c.xyxy for c in alone.cells] == [c.xyxy for c in out[2][0].cells]


def test_cancel_stops_a_folder_run_between_images(analyzer, bccd_root, tmp_path):
    for i, src in enumerate(sorted((bccd_root / "JPEGImages").glob("*.jpg"))[:4]):
        shutil.copy2(src, tmp_path / f"{i}.jpg")
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2   # two images, then stop

    results = [r for r, _ in analyzer.iter_analyze(sorted(tmp_path.glob("*.jpg")), cancel=cancel)]
    assert [r.image_path for r in results] == [str(tmp_path / "0.jpg"), str(tmp_path / "1.jpg")]


def test_compare_boxes_pairs_cells_by_iou_on_hand_made_boxes():
    ref = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [100, 100, 110, 110]], float)
    other = np.array([[20, 20, 40, 41], [0, 0, 10, 10], [100, 100, 110, 110]], float)   # reordered, one moved 1 px
    d = compare_boxes(ref, np.array([0.9, 0.8, 0.3]), other, np.array([0.801, 0.9, 0.3]),
                      np.array([0.1, 0.7, 0.5]), np.array([0.7, 0.1, 0.5005]), ["n", "b", "b"], ["b", "n", "b"])
    assert d.paired == 3 and d.counts_equal and d.labels_differ == 0
    assert d.min_iou == pytest.approx(400 / 420) and d.max_box_px == 1.0
    assert d.max_det_conf == pytest.approx(0.001) and d.max_p_blast == pytest.approx(0.0005)
    assert not d.within(min_iou=0.98) and d.within(min_iou=0.95)
    missing = compare_boxes(ref, np.array([0.9, 0.8, 0.3]), other[:2], np.array([0.8, 0.9]))
    assert missing.paired == 2 and not missing.counts_equal and not missing.within()
    assert compare_boxes(ref[:0], np.zeros(0), other[:0], np.zeros(0)).counts_equal
