"""Every exporter treats a box outside its image the same way (issue 16, item 7): cut at the border when part of it
is inside, left out when none of it is. A project written by an older version (or another program) can hold such
boxes; before, COCO wrote a negative bbox, VOC negative coordinates, the classifier export a blank crop and YOLO
silently dropped it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from workbench.app.annotation import exporters
from workbench.app.annotation.store import ProjectStore
from workbench.app.results import CellDetection

W, H = 200, 150
INSIDE = (50.0, 40.0, 90.0, 80.0)
PARTLY = (-20.0, 100.0, 30.0, 170.0)       # cut to (0, 100, 30, 150)
OUTSIDE = (-149.9, -129.4, -20.7, -19.7)   # the box: nothing of it inside


@pytest.fixture()
def project(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(60, 200, (H, W, 3), dtype=np.uint8)).save(tmp_path / "smear.png")
    with ProjectStore.open(tmp_path, operator="t") as store:
        entry = store.add_image(tmp_path / "smear.png", W, H)
        store.replace_cells(entry.id, [CellDetection(i, box, 1.0, label, 1.0, 1.0 if label == "blast" else 0.0)
                                       for i, (box, label) in enumerate(((INSIDE, "normal"), (PARTLY, "blast"),
                                                                         (OUTSIDE, "blast")))],
                            "import", "import")
        store.mark_reviewed(entry.id)
        yield store


def test_coco_voc_yolo_and_crops_agree_on_boxes_outside(project, tmp_path, caplog):
    coco = json.loads(exporters.export_coco(project, tmp_path / "coco.json").read_text())
    bboxes = sorted(tuple(a["bbox"]) for a in coco["annotations"])
    assert bboxes == sorted([(0.0, 100.0, 30.0, 50.0), (50.0, 40.0, 40.0, 40.0)])
    assert "entirely outside" in caplog.text

    voc = exporters.export_voc(project, tmp_path / "voc") / "smear.xml"
    boxes = sorted(tuple(float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
                   for o in ET.parse(voc).getroot().iter("object"))
    assert boxes == sorted([(0.0, 100.0, 30.0, 150.0), INSIDE])

    data = exporters.export_yolo(project, tmp_path / "yolo", fractions=(1, 0, 0))
    lines = (data.parent / "labels" / "train" / "smear.txt").read_text().split("\n")
    rows = sorted(float(v) for line in lines if line for v in line.split()[1:])
    assert rows == pytest.approx(sorted([15 / W, 125 / H, 30 / W, 50 / H, 70 / W, 60 / H, 40 / W, 40 / H]),
                                 abs=1e-6)
    assert len([line for line in lines if line]) == 2

    split = exporters.export_crops(project, tmp_path / "crops", size=32, fractions=(1, 0, 0))
    crops = sorted((split.parent).rglob("*.png"))
    assert len(crops) == 2                                    # no crop for the box outside the image
    for crop in crops:                                        # and none of them blank (all fill colour)
        assert np.asarray(Image.open(crop)).std() > 5
