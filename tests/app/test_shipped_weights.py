"""The shipped default weights: listed in the manifest, intact, and `workbench analyze` with no weight options finds
the white cells of BCCD test images with them."""

from __future__ import annotations

import json

import numpy as np
from workbench.core.boxes import pairwise_overlaps
from workbench.core.voc import parse_voc
from workbench.cli import main
from workbench.app.weights import Manifest, resolve_weights

N_IMAGES = 10  # the first BCCD test-split images (official list order) that have a WBC box: no hand-picking


def test_manifest_defaults_are_intact_and_documented():
    manifest = Manifest.load()
    for task in ("detect", "classify"):
        entry = manifest.default(task)
        assert entry is not None, f"no default {task} weights shipped"
        resolve_weights(None, task, manifest)  # sha256 check
        assert entry.data and entry.split and entry.metrics.get("test")
    assert manifest.default("detect").class_names[0] == "wbc"   # wbc first; red cells / platelets may follow
    assert manifest.default("detect").pixel_size_um
    assert manifest.default("classify").class_names == ["blast", "normal"]


def test_analyze_with_defaults_finds_bccd_test_wbcs(tmp_path, capsys, bccd_root):
    test_ids = (bccd_root / "ImageSets" / "Main" / "test.txt").read_text().split()
    with_wbc = [i for i in test_ids if any(o.name.lower() == "wbc"
                                           for o in parse_voc(bccd_root / "Annotations" / f"{i}.xml").objects)]
    images = [bccd_root / "JPEGImages" / f"{stem}.jpg" for stem in with_wbc[:N_IMAGES]]
    assert main(["analyze", *map(str, images), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    found = total = 0
    for result in data["images"]:
        stem = result["image_path"].rsplit("/", 1)[-1][:-4]
        truth = np.array([o.xyxy for o in parse_voc(bccd_root / "Annotations" / f"{stem}.xml").objects
                          if o.name.lower() == "wbc"], dtype=float)
        pred = np.array([c["xyxy"] for c in result["cells"]], dtype=float).reshape(-1, 4)
        total += len(truth)
        if len(pred) and len(truth):
            iou, _ = pairwise_overlaps(truth, pred)
            found += int((iou.max(axis=1) >= 0.5).sum())
    assert total >= N_IMAGES
    assert found / total >= 0.85, f"found {found} of {total} WBCs"


def test_half_size_bccd_image_gives_the_same_white_cells(bccd_root, tmp_path):
    """The pixel-size ruler makes the detector see every smear at its training scale: the same field at half the
    resolution gives the same white cells (IoU >= 0.5 after scaling back)."""
    import cv2

    from workbench.app.config import load_config
    from workbench.app.pipeline import SmearAnalyzer

    analyzer = SmearAnalyzer.from_config(load_config())
    test_ids = (bccd_root / "ImageSets" / "Main" / "test.txt").read_text().split()
    matched = total = 0
    for stem in test_ids[:8]:
        rgb = cv2.imread(str(bccd_root / "JPEGImages" / f"{stem}.jpg"))[:, :, ::-1].copy()
        half = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
        analyzer.new_case()
        full_cells = analyzer.analyze_array(rgb, stem).cells
        analyzer.new_case()
        half_result = analyzer.analyze_array(half, stem)
        a = np.array([c.xyxy for c in full_cells], dtype=float).reshape(-1, 4)
        b = np.array([c.xyxy for c in half_result.cells], dtype=float).reshape(-1, 4) * 2
        total += max(len(a), len(b))
        if len(a) and len(b):
            iou, _ = pairwise_overlaps(a, b)
            matched += int((iou.max(axis=1) >= 0.5).sum())
        assert half_result.scale["um_per_px"] is not None
    assert total and matched / total >= 0.9, f"{matched} of {total}"
