"""The 3-class, one-pixel-size detector set (workbench.builders.detection_set) and its trainer's partial labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from workbench.builders.detection_set import CLASSES, RBC_PX, build_multisource_detection
from workbench.core.voc import parse_voc
from tests.conftest import need

TXL = "txl-pbc"


@pytest.fixture(scope="module")
def built(tmp_path_factory, datasets_root, census_slice):
    need(datasets_root / TXL)
    census, _ = census_slice
    out = tmp_path_factory.mktemp("det") / "det"
    report = build_multisource_detection(datasets_root, out, census, limit=1)
    return out, report


def _labels(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_class_map_and_yamls(built):
    out, report = built
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "wbc", 1: "rbc", 2: "platelet"} and list(CLASSES) == ["wbc", "rbc", "platelet"]
    assert data["partial_labels"] == {"allidb1": [0]}   # ALL-IDB1 labels white cells only
    assert data["pixel_size"]["rbc_px"] == RBC_PX
    assert set(report.sources) == {"bccd", "txl_raabin", "txl_bcd", "allidb1"}
    evals = yaml.safe_load((out / "eval.yaml").read_text())["sources"]
    assert set(evals) == set(report.sources)
    for source in report.sources:   # every source has its own data yaml with the one class map
        assert yaml.safe_load((out / source / "data.yaml").read_text())["names"] == data["names"]


def test_eval_groups_split_each_source_by_its_images_groups(built):
    """eval_groups.yaml: one eval source per group of images.csv (lab / camera / diagnosis); a group's split lists
    name exactly the source's eval images of that group, which ground truth loading reads with their labels."""
    import csv

    from detection.ground_truth import load_yolo_split

    out, _ = built
    rows = [r for r in csv.DictReader((out / "images.csv").open()) if r["split"] != "train"]
    expected = {}
    for r in rows:
        expected.setdefault(r["group"], {}).setdefault(r["split"], set()).add(r["original"].rsplit("/", 1)[-1])
    groups = yaml.safe_load((out / "eval_groups.yaml").read_text())["sources"]
    assert set(groups) == set(expected)
    for group, data_yaml in groups.items():
        for split, names in expected[group].items():
            gt = load_yolo_split(out / data_yaml, split)
            assert {image.path.name for image in gt.images} == names
            source = yaml.safe_load((out / data_yaml).read_text())["path"].rsplit("/", 1)[-1]
            whole = {im.path.name: im.boxes for im in load_yolo_split(out / "eval" / source / "data.yaml", split).images}
            assert all(image.boxes == whole[image.path.name] for image in gt.images)


def test_bccd_voc_boxes_become_three_classes_at_one_pixel_size(built, bccd_root):
    out, _ = built
    label = sorted((out / "bccd" / "labels" / "train").glob("*.txt"))[0]
    voc = parse_voc(bccd_root / "Annotations" / f"{label.stem}.xml")
    names = {"wbc": "0", "rbc": "1", "platelets": "2"}
    expected = sorted(names[o.name.lower()] for o in voc.objects)
    got = sorted(row[0] for row in _labels(label))
    assert got == expected or len(got) == len(expected) - 1   # one exact duplicate may be dropped
    import cv2

    image = cv2.imread(str(out / "bccd" / "images" / "train" / f"{label.stem}.jpg"))
    h, w = image.shape[:2]
    rbc = [(float(r[3]) * w + float(r[4]) * h) / 2 for r in _labels(label) if r[0] == "1"
           if 0.02 < float(r[1]) < 0.98 and 0.02 < float(r[2]) < 0.98]
    assert abs(np.median(rbc) / RBC_PX - 1) < 0.15   # resampled: red cells ~56 px (labelled ruler)
    assert (w, h) != (640, 480)


def test_txl_yolo_labels_keep_their_classes(built, datasets_root):
    out, _ = built
    for source in ("txl_raabin", "txl_bcd"):
        for label in (out / source / "labels").rglob("*.txt"):
            original = next((datasets_root / TXL / "TXL_PBC" / "labels").rglob(label.name))
            assert sorted(r[0] for r in _labels(label)) == sorted(r[0] for r in _labels(original))


def test_a_platelet_box_as_wide_as_a_red_cell_is_a_white_cell_hand_made():
    from workbench.builders.detection_set import PLATELET, RBC, WBC, wide_platelets_as_wbc

    red = [(RBC, (10 + 120 * i, 10.0, 110 + 120 * i, 110.0)) for i in range(3)]     # red cells 100 px
    boxes = red + [(PLATELET, (10.0, 200.0, 130.0, 300.0)),    # 120 x 100: as wide as a red cell -> wbc
                   (PLATELET, (200.0, 200.0, 299.0, 400.0)),   # 99 px wide: narrower -> still a platelet
                   (WBC, (400.0, 200.0, 430.0, 230.0))]        # other classes untouched, whatever their size
    out, n = wide_platelets_as_wbc(boxes, 640, 480)
    assert n == 1 and [c for c, _ in out] == [RBC, RBC, RBC, WBC, PLATELET, WBC]
    assert [b for _, b in out] == [b for _, b in boxes]
    # fewer than 3 labelled red cells clear of the border: no ruler, nothing changes
    edge = [(RBC, (0.0, 10.0, 100.0, 110.0))] + red[:2] + boxes[3:]
    assert wide_platelets_as_wbc(edge, 640, 480) == (edge, 0)


def test_bccd_white_cells_labelled_platelets_are_white_cells(bccd_root, datasets_root):
    """BCCD labels a monocyte (00133, train) and a neutrophil (00135, test) "Platelets"; no true platelet box of
    BCCD or TXL-PBC is as wide as its image's red cells."""
    from workbench.builders.detection_set import WBC, bccd_images, txl_images

    images = bccd_images(bccd_root)
    changed = {(i.path.stem, i.split): i.platelets_as_wbc for i in images if i.platelets_as_wbc}
    assert changed == {("BloodImage_00133", "train"): 1, ("BloodImage_00135", "test"): 1}
    neutrophil = next(i for i in images if i.path.stem == "BloodImage_00135")
    assert (WBC, (42.0, 345.0, 185.0, 480.0)) in neutrophil.boxes
    need(datasets_root / TXL)
    txl = txl_images(datasets_root / TXL)
    assert not any(i.platelets_as_wbc for i in txl)
    # the margin the rule rests on: every remaining platelet box is under 0.8 of its image's red cells
    from PIL import Image

    from workbench.builders.detection_set import PLATELET, _labelled_red_cell_side

    widest = 0.0
    for item in images + txl:
        with Image.open(item.path) as im:
            side = _labelled_red_cell_side(item.boxes, *im.size)
        for c, (x1, y1, x2, y2) in item.boxes:
            if c == PLATELET and side:
                widest = max(widest, min(x2 - x1, y2 - y1) / side)
    assert 0.7 < widest < 0.8


def test_allidb1_labels_every_census_cell_as_wbc(built, census_slice):
    out, report = built
    census, _ = census_slice
    lines = [row for label in (out / "allidb1" / "labels").rglob("*.txt") for row in _labels(label)]
    assert lines and {row[0] for row in lines} == {"0"}   # white cells only, never rbc / platelet
    cells = sum(len(c.cells) for c in census.values())
    assert len(lines) >= cells   # every cell is in some tile (a cell cut by a tile edge is in two)
    assert report.sources["allidb1"].boxes["train"]["wbc"] > 0
    for image in (out / "allidb1" / "images").rglob("*.jpg"):
        import cv2

        assert max(cv2.imread(str(image)).shape[:2]) <= 640


# --------------------------------------------------------------------------------------------------------------------
# the trainer's partial labels


def test_labelled_classes_by_path_prefix():
    from detection.trainer import labelled_classes

    partial = {"allidb1": [0]}
    assert labelled_classes("/d/allidb1/images/train/a.jpg", partial, 3) == {0}
    assert labelled_classes("/d/bccd/images/train/a.jpg", partial, 3) == {0, 1, 2}
    assert labelled_classes("/d/not_allidb1x/images/a.jpg", partial, 3) == {0, 1, 2}


def test_partial_loss_masks_negatives_but_keeps_positives():
    """A mosaic holding an ALL-IDB1 tile: rbc / platelet get no negative gradient anywhere, but an anchor inside a
    labelled rbc box (from the mosaic's BCCD part) still learns rbc; a pure BCCD sample is untouched."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    from detection.trainer import PartialLabelLoss

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.args = get_cfg()
    loss = PartialLabelLoss(model, {"allidb1": [0]})
    model.eval()
    with torch.no_grad():
        preds = model(torch.zeros(2, 3, 64, 64))
    preds = preds[1] if isinstance(preds, tuple) else preds
    batch = {
        "im_file": ["/d/allidb1/images/train/t.jpg", "/d/bccd/images/train/b.jpg"],
        "label_sources": [["/d/allidb1/images/train/t.jpg", "/d/bccd/images/train/b.jpg"],
                          ["/d/bccd/images/train/b.jpg"]],
        "batch_idx": torch.tensor([0.0, 0.0]), "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.4, 0.4]]),   # wbc top-left, rbc bottom-right
    }
    weights = loss._weights(preds, batch)
    assert weights.shape[0] == 2 and weights.shape[2] == 3
    assert torch.all(weights[1] == 1)           # fully labelled sample
    assert torch.all(weights[0, :, 0] == 1)     # wbc is labelled everywhere
    assert torch.all(weights[0, :, 2] == 0)     # platelets: no labelled box in this sample, no negatives
    inside = weights[0, :, 1] == 1              # rbc: only inside the labelled rbc box
    assert 0 < int(inside.sum()) < weights.shape[1]


def test_dataset_never_enlarges_an_image(built):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.utils import check_det_dataset

    import ultralytics.data.build as build
    from detection.trainer import SmearYOLODataset

    out, _ = built
    data = check_det_dataset(str(out / "bccd" / "data.yaml"))
    original = build.YOLODataset
    build.YOLODataset = SmearYOLODataset
    try:
        ds = build.build_yolo_dataset(get_cfg(overrides={"imgsz": 640}), data["val"], 1, data, mode="val",
                                      rect=True, stride=32)
    finally:
        build.YOLODataset = original
    image, hw0, hw = ds.load_image(0)
    assert hw == hw0 and max(hw) < 640   # a 56 px red-cell BCCD field stays ~350 px, it is not blown up to 640
