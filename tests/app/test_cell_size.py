"""The width rule (workbench.app.cell_size): a box clear of the image border narrower than `detector.min_cell_um` is
not a white cell; hand-computed boxes, the default checked by value, and the rule applied by the pipeline."""

from __future__ import annotations

import pytest

from workbench.app.cell_size import split_too_small
from workbench.app.config import load_config
from workbench.core.errors import ConfigError


def test_narrow_boxes_clear_of_the_border_are_dropped_hand_computed():
    # a 100 x 80 image at 0.5 um / px: 4.5 um = 9 px
    boxes = [(10, 10, 18, 40),      # 8 px = 4.0 um wide, inside: a platelet or a sliver -> dropped
             (0, 10, 6, 40),        # 3 um wide but touching the left border: maybe a cut cell -> kept
             (40, 30, 49, 39),      # exactly 9 px = 4.5 um: not narrower -> kept
             (50, 60, 90, 79),      # 19 px high and 1 px clear of the bottom (inside BORDER_PX): kept
             (60, 5, 80, 12)]       # 7 px high = 3.5 um, 5 px clear of every border -> dropped
    kept, dropped = split_too_small(boxes, 100, 80, 0.5, 4.5)
    assert kept == [1, 2, 3]
    assert dropped == [{"index": 0, "xyxy": [10.0, 10.0, 18.0, 40.0], "short_side_um": 4.0},
                       {"index": 4, "xyxy": [60.0, 5.0, 80.0, 12.0], "short_side_um": 3.5}]
    assert split_too_small(boxes, 100, 80, None, 4.5) == ([0, 1, 2, 3, 4], [])   # no pixel size: no ruler
    assert split_too_small(boxes, 100, 80, 0.5, None) == ([0, 1, 2, 3, 4], [])   # the rule off


def test_a_weak_pixel_size_estimate_is_no_ruler_for_the_rule():
    from workbench.app.cell_size import width_ruler

    assert width_ruler({"um_per_px": 0.1, "source": "estimate"}) == 0.1
    assert width_ruler({"um_per_px": 0.1, "source": "setting"}) == 0.1
    assert width_ruler({"um_per_px": 0.1, "source": "weak_estimate"}) is None
    assert width_ruler({"um_per_px": None, "source": "none"}) is None


def test_the_default_and_its_check():
    assert load_config().detector.min_cell_um == 4.5
    assert load_config(overrides={"detector": {"min_cell_um": None}}).detector.min_cell_um is None
    with pytest.raises(ConfigError, match="min_cell_um.*a cell width"):
        load_config(overrides={"detector": {"min_cell_um": 0}})


def test_the_pipeline_drops_narrow_boxes_before_classifying(tiny_config, bccd_image, monkeypatch):
    """Boxes from the detector at a known pixel size: the one narrower than the limit and clear of the border is
    listed in `too_small` with its width and confidence, never classified or counted; the others are the cells."""
    from detection.predictor import BoxDetection, DetectionOutput
    from workbench.app.config import with_overrides
    from workbench.app.pipeline import SmearAnalyzer

    config = with_overrides(tiny_config, {"detector": {"min_cell_um": 4.5},
                                          "scale": {"um_per_px": 0.1, "estimate": False}})
    analyzer = SmearAnalyzer.from_config(config)
    found = [BoxDetection(xyxy=(100.0, 100.0, 200.0, 190.0), conf=0.9, class_name="wbc"),   # 9 um: a cell
             BoxDetection(xyxy=(300.0, 200.0, 330.0, 290.0), conf=0.4, class_name="wbc"),   # 3 um: a sliver
             BoxDetection(xyxy=(0.0, 300.0, 30.0, 400.0), conf=0.5, class_name="wbc")]      # 3 um, cut by the border
    monkeypatch.setattr(analyzer.detector, "detect", lambda image, um: DetectionOutput(boxes=list(found)))
    classified = []
    real = analyzer.classifier.classify_boxes
    monkeypatch.setattr(analyzer.classifier, "classify_boxes",
                        lambda image, boxes, um: classified.append(list(boxes)) or real(image, boxes, um))
    result = analyzer.analyze_image(bccd_image)
    assert [c.xyxy for c in result.cells] == [(100.0, 100.0, 200.0, 190.0), (0.0, 300.0, 30.0, 400.0)]
    assert [c.cell_id for c in result.cells] == [0, 1] and result.counts.wbc == 2
    assert classified == [[found[0].xyxy, found[2].xyxy]]
    assert result.too_small == [{"xyxy": [300.0, 200.0, 330.0, 290.0], "short_side_um": 3.0, "det_conf": 0.4}]
    assert result.settings["min_cell_um"] == 4.5
