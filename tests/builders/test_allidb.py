"""Tests for the ALL-IDB builders (workbench.builders.allidb_*): ALL-IDB1 points -> white-cell boxes -> native-resolution YOLO tiles, THE split of
ALL-IDB1 source images, and the combined BCCD + ALL-IDB1 dataset.

Real data comes from SMEAR_DATASETS (skipped with the reason when absent). The tile build runs once per module on a
few images chosen from every split and both cameras, plus 3 BCCD images per split, and is loaded with ultralytics.
Nothing of ALL-IDB is written anywhere but pytest's tmp folders.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from workbench.builders.allidb_points import KINDS, MERGE_PX, read_allidb1_points
from workbench.builders.allidb_split import SPLITS, allidb1_split, read_split_csv, write_split_csv
from workbench.core.segmentation import camera_scale, point_to_box, segment_point, stain_map
from workbench.core.errors import LabelFileError
from tests.conftest import ALLIDB1, ALLIDB2, need


@pytest.fixture(scope="module")
def allidb_root() -> Path:
    for sub in ("im", "xyc", "other_points"):
        need(ALLIDB1 / sub)
    return ALLIDB1.parent


@pytest.fixture(scope="module")
def points(allidb_root):
    return read_allidb1_points(allidb_root)


@pytest.fixture(scope="module")
def split(allidb_root):
    return allidb1_split(allidb_root)


def _rgb(name: str) -> np.ndarray:
    with Image.open(ALLIDB1 / "im" / name) as im:
        return np.asarray(im.convert("RGB"))


def _lines(path: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]


def _camera(name: str) -> str:
    with Image.open(ALLIDB1 / "im" / name) as im:
        return camera_scale(*im.size).camera


def _crop_sources() -> list[dict[str, str]]:
    with (need(ALLIDB2 / "crop_sources.csv")).open(newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------------------------------
# points


def test_points_match_the_point_files(allidb_root, points):
    images = sorted(p.name for p in (ALLIDB1 / "im").glob("*.jpg"))
    assert list(points) == images and len(images) == 88
    normals = Counter(r["allidb1_source_image"] for r in _crop_sources() if r["label_blast"] == "0")
    for name, pts in points.items():
        stem = Path(name).stem
        kinds = Counter(p.kind for p in pts)
        blasts = _lines(ALLIDB1 / "xyc" / f"{stem}.xyc")
        assert kinds["blast"] == len(blasts), name  # no two expert blast marks are within MERGE_PX
        assert [(p.x, p.y) for p in pts if p.kind == "blast"] == blasts
        if name.endswith("_0.jpg"):
            assert not blasts
        assert kinds["normal"] <= normals[name]
        assert kinds["other"] <= len(_lines(ALLIDB1 / "other_points" / f"{stem}.xyc"))
        assert set(kinds) <= set(KINDS)
        xy = np.array([(p.x, p.y) for p in pts]).reshape(-1, 2)
        if len(xy) > 1:
            d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            assert d.min() >= MERGE_PX, name
    assert sum(1 for pts in points.values() for p in pts if p.kind == "blast") == 380  # README's 380 lines
    assert sum(1 for pts in points.values() for p in pts if p.kind == "normal") >= 100  # of 116 ALL-IDB2 normals


def test_allidb2_blast_centres_are_expert_blast_points(points):
    for row in _crop_sources():
        if row["label_blast"] != "1":
            continue
        x, y = float(row["cell_centre_x"]), float(row["cell_centre_y"])
        blasts = [p for p in points[row["allidb1_source_image"]] if p.kind == "blast"]
        assert min(math.hypot(p.x - x, p.y - y) for p in blasts) < MERGE_PX, row["allidb2_file"]


def test_malformed_point_file_names_the_file(tmp_path):
    root = tmp_path / "all-idb" / "ALL_IDB1"
    for sub in ("im", "xyc", "other_points"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(root / "im" / "Im001_1.jpg")
    (root / "xyc" / "Im001_1.xyc").write_text("10\t20\n30 forty\n")
    with pytest.raises(LabelFileError, match=r"Im001_1\.xyc:2"):
        read_allidb1_points(tmp_path / "all-idb")


# --------------------------------------------------------------------------------------------------------------------
# point -> box


@pytest.mark.parametrize("name, side_range", [("Im006_1.jpg", (90, 200)), ("Im048_1.jpg", (100, 240))])
def test_blast_points_become_boxes_holding_the_point(points, name, side_range):
    rgb = _rgb(need(ALLIDB1 / "im" / name).name)
    height, width = rgb.shape[:2]
    stain = stain_map(rgb)
    pts = points[name]
    blasts = [p for p in pts if p.kind == "blast"]
    sides = []
    for p in blasts:
        box = point_to_box(rgb, p.x, p.y, kind=p.kind, stain=stain,
                           neighbours=[(q.x, q.y) for q in pts if q is not p])
        assert box is not None, (name, p)
        assert box.x1 <= p.x <= box.x2 and box.y1 <= p.y <= box.y2
        assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
        if box.x1 > 0 and box.y1 > 0 and box.x2 < width and box.y2 < height:  # whole cells only
            sides.append(max(box.width, box.height))
            assert min(box.width, box.height) > 0.5 * max(box.width, box.height)
    assert len(sides) >= 10
    assert side_range[0] <= np.median(sides) <= side_range[1]
    # the box covers the whole stained cell (nucleus and cytoplasm), not just the nucleus: the stained pixels in a
    # band just outside the box are few
    p = blasts[0]
    box = point_to_box(rgb, p.x, p.y, stain=stain)
    x1, y1, x2, y2 = (int(round(v)) for v in box.xyxy)
    inside = stain.stain[y1:y2, x1:x2] > 5
    assert inside.mean() > 0.45


def test_platelets_give_no_box(points):
    # Im041_0 (Canon, healthy) marks ~40 platelets and 2 white cells in other_points; check independently of the
    # module with the colour rule of test_tiling: a point on a stained blob smaller than 800 px^2 is a platelet.
    name = "Im041_0.jpg"
    rgb = _rgb(need(ALLIDB1 / "im" / name).name)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    mask = cv2.inRange(hsv, np.array((115, 40, 0)), np.array((175, 255, 230)))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    stain = stain_map(rgb)
    tiny = boxes = 0
    for p in points[name]:
        window = labels[int(p.y) - 6:int(p.y) + 7, int(p.x) - 6:int(p.x) + 7]
        ids = window[window > 0]
        area = stats[ids, cv2.CC_STAT_AREA].max() if len(ids) else 0
        result = segment_point(rgb, p.x, p.y, kind=p.kind, stain=stain)
        if area < 800:
            tiny += 1
            assert result.box is None and result.status in ("platelet", "failed"), p
        boxes += result.box is not None
    assert tiny >= 20
    assert boxes >= 1  # its neutrophil


def test_synthetic_cells_and_platelet():
    # a beige field at Olympus size: a white cell (dark nucleus r=45 inside pale bluish cytoplasm r=60) and a
    # platelet (r=9); the box must hold the cytoplasm, the platelet gives none
    image = np.full((1368, 1712, 3), (226, 214, 200), np.uint8)
    cv2.circle(image, (600, 500), 60, (180, 175, 215), -1)
    cv2.circle(image, (600, 500), 45, (95, 50, 140), -1)
    cv2.circle(image, (1000, 800), 9, (120, 70, 150), -1)
    box = point_to_box(image, 600, 500)
    assert box is not None
    assert box.x1 <= 540 and box.y1 <= 440 and box.x2 >= 660 and box.y2 >= 560  # the whole cytoplasm
    assert box.width < 150 and box.height < 150
    assert point_to_box(image, 1000, 800) is None
    assert segment_point(image, 1000, 800).status == "platelet"
    assert segment_point(image, 200, 200).status == "failed"  # nothing stained there


# --------------------------------------------------------------------------------------------------------------------
# the split


def test_split_is_deterministic_stratified_and_complete(allidb_root, split, tmp_path):
    assert split == allidb1_split(allidb_root)
    assert split != allidb1_split(allidb_root, seed=1)
    assert list(split) == sorted(p.name for p in (ALLIDB1 / "im").glob("*.jpg"))
    counts = Counter(split.values())
    assert counts["train"] >= 55 and counts["val"] >= 10 and counts["test"] >= 10
    for s in SPLITS:
        names = [n for n, v in split.items() if v == s]
        assert {n[-5] for n in names} == {"0", "1"}, s  # ALL and healthy
        assert {"olympus", "canon"} <= {_camera(n) for n in names}, s  # both cameras
    # the classifier reuses this split for ALL-IDB2 crops: every crop's source image is in it
    assert {r["allidb1_source_image"] for r in _crop_sources()} <= set(split)
    path = tmp_path / "split.csv"
    write_split_csv(path, split)
    assert read_split_csv(path) == split
    assert path.read_text().splitlines()[0] == "image,split"
    path.write_text("image,split\nIm001_1.jpg,train\nIm001_1.jpg,test\n")
    with pytest.raises(LabelFileError, match="twice"):
        read_split_csv(path)
