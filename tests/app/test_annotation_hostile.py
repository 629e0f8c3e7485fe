"""Hostile and clumsy label files: every importer refuses what cannot be a box of the image with a LabelImportError
(a WorkbenchError and a LabelFileError) whose message names the file on one short line, never a raw AttributeError,
IndexError, OverflowError, RecursionError, UnicodeDecodeError, LookupError or sqlite3 error; and the boxes that are
imported lie inside the image."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest

from workbench.app.annotation.importers import (ImportedCells, import_coco, import_label_folder, import_points,
                                                import_voc, import_yolo, read_names, read_points)
from workbench.app.annotation.store import ProjectStore
from workbench.core.errors import LabelFileError, LabelImportError, WorkbenchError

NAMES = ["blast", "normal"]
SIZE = "<size><width>100</width><height>80</height></size>"


def _voc(body: str, size: str = SIZE, declaration: str = "") -> str:
    return f"{declaration}<annotation><filename>a.png</filename>{size}{body}</annotation>"


def _obj(name: str, box: tuple) -> str:
    return (f"<object><name>{name}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
            f"<ymax>{box[3]}</ymax></bndbox></object>")


def _refused(call, path, *fragments):
    """`call()` raises LabelImportError naming `path` on one short line that holds each of `fragments`."""
    with pytest.raises(LabelImportError) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, WorkbenchError) and isinstance(info.value, LabelFileError)
    assert str(path) in message and "\n" not in message and len(message) < 400 + len(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------------------------------
# YOLO


@pytest.mark.parametrize("line", ["-1 0.5 0.5 0.1 0.1", "-2 0.5 0.5 0.1 0.1", "2 0.5 0.5 0.1 0.1",
                                  "99999999999999999999999 0.5 0.5 0.1 0.1"])
def test_yolo_negative_or_unknown_class_ids_are_refused(tmp_path, line):
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    _refused(lambda: import_yolo(path, 100, 80, NAMES), f"{path}:2", "class from 0 to 1")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309"])
def test_yolo_non_finite_numbers_are_refused(tmp_path, value):
    path = tmp_path / "a.txt"
    for line in (f"0 {value} 0.5 0.1 0.1", f"1 0.5 0.5 {value} 0.1"):
        path.write_text(line + "\n")
        _refused(lambda: import_yolo(path, 100, 80, NAMES), f"{path}:1", "finite")


@pytest.mark.parametrize("size", [(float("inf"), 80), (100, float("nan")), (1e300, 80), (0, 80), (-5, 80),
                                  (100.5, 80), ("100", 80)])
def test_yolo_needs_a_real_image_size(tmp_path, size):
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n")
    _refused(lambda: import_yolo(path, *size, NAMES), path)


def test_yolo_long_garbage_line_gives_a_short_message(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 " + "x" * 1_000_000 + "\n")
    _refused(lambda: import_yolo(path, 100, 80, NAMES), path, "…")


# --------------------------------------------------------------------------------------------------------------------
# COCO


@pytest.mark.parametrize("data, fragment", [
    ("[]", "top level is a list"),
    ('"text"', "top level is a str"),
    ('{"images": {}}', "'images' must be a list"),
    ('{"images": [], "categories": [{"id": 1, "name": 5}]}', "class name 5"),
    ('{"images": [], "categories": [{"id": 1, "name": ["WBC"]}]}', "class name"),
    ('{"images": [], "categories": [{"id": [1], "name": "WBC"}]}', "'id'"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": Infinity, "height": 10}]}', "not a finite number"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 1e999, "height": 10}]}', "not a finite number"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 1e300, "height": 10}]}', "whole number of pixels"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}], "categories": [{"id": 1, '
     '"name": "WBC"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}]}', "finite"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}], "categories": [{"id": 1, '
     '"name": "WBC"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, "2", 3]}]}', "not a number"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "WBC"}], '
     '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 3]}]}', "no width and height"),
    ('{"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}], "categories": [], '
     '"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 3]}]}', "category_id 7"),
    ("[" * 100_000, "nested too deeply"),
    ('{"a": ' * 100_000, "nested too deeply"),
])
def test_coco_malformed_files_are_refused(tmp_path, data, fragment):
    path = tmp_path / "c.json"
    path.write_text(data)
    _refused(lambda: import_coco(path), path, fragment)


# --------------------------------------------------------------------------------------------------------------------
# VOC


@pytest.mark.parametrize("text, fragment", [
    (_voc("", SIZE.replace("100", "1e300")), "whole number of pixels"),
    (_voc("", SIZE.replace("80", "1e7")), "whole number of pixels"),
    (_voc("", declaration='<?xml version="1.0" encoding="x-bogus"?>'), "unknown encoding"),
    (_voc(_obj("WBC", (1, 2, "Infinity", 4))), "finite"),
    ("<annotation>" + "<a>" * 100_000, "not well-formed"),
])
def test_voc_malformed_files_are_refused(tmp_path, text, fragment):
    path = tmp_path / "a.xml"
    path.write_text(text)
    _refused(lambda: import_voc(path), path, fragment)


def test_voc_entity_declaration_in_utf16_is_refused(tmp_path):
    path = tmp_path / "a.xml"
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "xx">]>' + _voc("&x;")
    path.write_bytes(text.encode("utf-16"))
    _refused(lambda: import_voc(path), path, "entities")


# --------------------------------------------------------------------------------------------------------------------
# files that are not UTF-8


def test_non_utf8_label_files_are_refused(tmp_path):
    from workbench.core.points import read_xyc

    for name, call in [("a.txt", lambda p: import_yolo(p, 100, 80, NAMES)), ("a.xyc", read_points),
                       ("classes.txt", read_names), ("names.yaml", read_names), ("c.json", import_coco)]:
        path = tmp_path / name
        path.write_bytes(b"0 0.5 0.5 0.1 0.1\n\xff\xfe blast\n")
        _refused(lambda: call(path), path, "not a UTF-8")
    with pytest.raises(LabelFileError, match="a.xyc.*not a UTF-8"):
        read_xyc(tmp_path / "a.xyc")


def test_point_file_with_non_finite_points_is_refused(tmp_path):
    path = tmp_path / "a.xyc"
    path.write_text("10 20\nnan 5\n")
    _refused(lambda: read_points(path), f"{path}:2", "finite")


# --------------------------------------------------------------------------------------------------------------------
# names files


def _alias_bomb(depth: int) -> str:
    lines = ["a0: &a0 [blast, normal]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"names: *a{depth}")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_in_a_names_file_is_refused_fast_and_small(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(_alias_bomb(8))      # 9**8 * 2 = 86 million names when walked
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = _refused(lambda: read_names(path), path, "aliases")
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0 and peak < 20 * 1024 ** 2 and len(message) < 300, (elapsed, peak, len(message))


@pytest.mark.parametrize("text, fragment", [
    ("names: {0: blast, 2: normal}\n", "0..N-1"),
    ("names: {.inf: blast}\n", "0..N-1"),
    ("names: [[blast], normal]\n", "not a name"),
    ("names: [blast, no]\n", "quote"),
    ("names: 5\n", "list of class names"),
    ("names: [" * 5000 + "\n", "nested too deeply"),
    ("names: " + "[" * 500_000, "nested too deeply"),     # PyYAML takes minutes on this (quadratic): refused first
    ("names: [blast, normal\n", "not valid YAML"),
    ("names: [" + ", ".join(["x"] * 10_001) + "]\n", "more than"),
    ("names: ['" + "x" * 500 + "']\n", "longer than"),
    ("", "expected a list of class names"),
    ("names: []\n", "lists no classes"),
])
def test_malformed_names_files_are_refused(tmp_path, text, fragment):
    path = tmp_path / "names.yaml"
    path.write_text(text)
    _refused(lambda: read_names(path), path, fragment)


def test_names_files_in_every_accepted_form(tmp_path):
    for name, text in [("classes.txt", "\ufeffWBC\n\nRBC\n"), ("data.yaml", "names: {1: RBC, 0: WBC}\n"),
                       ("names.yaml", "- WBC\n- RBC\n"), ("d.yml", "path: x\nnames: ['WBC', RBC]\n")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_names(tmp_path / name) == ["WBC", "RBC"], name


def test_oversized_names_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("x\n" * 1_000_000)
    _refused(lambda: read_names(path), path, "larger than 1 MB")


# --------------------------------------------------------------------------------------------------------------------
# points next to a cell (segmentation)


def _two_touching_cells():
    import cv2

    image = np.full((300, 400, 3), (230, 200, 200), np.uint8)
    for centre in [(150, 150), (215, 150)]:    # one stained blob, two cells: the point's part is split off
        cv2.circle(image, centre, 33, (120, 60, 160), -1)
        cv2.circle(image, centre, 18, (70, 20, 120), -1)
    return image


def test_single_point_just_outside_a_cell_gives_no_index_error():
    """A point a few px beyond a cell's edge (within the search radius, outside the blob's bounding box) raised
    IndexError in _label_near; now it is a point without a box, or a box inside the image."""
    image = _two_touching_cells()
    for dy in range(0, 12):
        for point in [(150, 184 + dy), (150, 116 - dy), (116 - dy, 150)]:
            cells, missed = import_points(image, [point])
            assert len(cells) + missed == 1
            for cell in cells:
                x1, y1, x2, y2 = cell.xyxy
                assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 300


def test_label_near_never_indexes_outside_the_labels():
    from workbench.core.segmentation import _label_near

    labels = np.zeros((5, 6), np.int32)
    labels[0, 5] = 7          # a negative x must not wrap around to this pixel
    labels[4, 0] = 3
    assert _label_near(labels, -1, 0, radius=0.5) == 0
    assert _label_near(labels, 6, 0, radius=1.0) == 7          # beside the array, one px from label 7
    assert _label_near(labels, 0, 7, radius=3.5) == 3          # below it
    assert _label_near(labels, 100, 100, radius=2.0) == 0
    assert _label_near(labels, 5, 0, radius=0.0) == 7


def test_points_outside_the_image_or_not_finite_give_no_box():
    image = _two_touching_cells()
    cells, missed = import_points(image, [(-5, 150), (1e9, 10), (float("nan"), 3), (150, float("inf"))])
    assert (cells, missed) == ([], 4)


# --------------------------------------------------------------------------------------------------------------------
# boxes outside the image


def test_boxes_are_clipped_to_the_image_and_those_outside_dropped(tmp_path):
    yolo = tmp_path / "a.txt"
    yolo.write_text("0 0.5 0.5 0.2 0.2\n"      # inside
                    "1 1.0 0.5 0.2 0.2\n"      # half outside on the right: clipped
                    "0 1.5 0.5 0.2 0.2\n"      # outside: dropped
                    "1 -0.5 -0.5 0.2 0.2\n")   # outside: dropped
    cells = import_yolo(yolo, 100, 80, NAMES)
    assert isinstance(cells, ImportedCells) and (cells.dropped, cells.clipped) == (2, 1)
    assert [c.cell_id for c in cells] == [0, 1]
    assert cells[0].xyxy == pytest.approx((40, 32, 60, 48)) and cells[1].xyxy == pytest.approx((90, 32, 100, 48))

    voc = tmp_path / "a.xml"
    voc.write_text(_voc(_obj("WBC", (-20, -10, 30, 40)) + _obj("WBC", (150, 10, 190, 20))
                        + _obj("WBC", (1e200, 1, 1e201, 2))))
    _, width, height, cells = import_voc(voc)
    assert (width, height, cells.dropped) == (100, 80, 2) and [c.xyxy for c in cells] == [(0.0, 0.0, 30.0, 40.0)]

    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "WBC"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [90, 70, 50, 50]},
                        {"image_id": 1, "category_id": 1, "bbox": [-90, 10, 50, 5]}]}))
    _, _, cells = import_coco(coco)["a.png"]
    assert cells.dropped == 1 and [c.xyxy for c in cells] == [(90.0, 70.0, 100.0, 80.0)]


def test_nothing_outside_the_image_enters_the_store(tmp_path):
    from PIL import Image

    images = []
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (100, 80)).save(tmp_path / name)
        images.append(tmp_path / name)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 1.0 1.0 0.5 0.5\n1 3 3 0.1 0.1\n")
    (labels / "b.xml").write_text(_voc(_obj("blast", (-50, -50, 500, 500)) + _obj("normal", (200, 1, 300, 2))))
    (labels / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "c.png", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "normal"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [95, -5, 500, 10]}]}))
    with ProjectStore.open(tmp_path, operator="t") as store:
        counts = import_label_folder(store, images, labels)
        assert counts == {"a.png": 1, "b.png": 1, "c.png": 1} and counts.dropped == {"a.png": 1, "b.png": 1}
        for entry in store.images():
            for cell in store.cells(entry.id):
                x1, y1, x2, y2 = cell.xyxy
                assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 80, (entry.name, cell)


def test_label_folder_uses_its_names_file_and_refuses_a_bad_one(tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (labels / "classes.txt").write_text("WBC\nRBC\n")
    with ProjectStore.open(tmp_path, operator="t") as store:
        counts = import_label_folder(store, [tmp_path / "a.png"], labels, label_map={"RBC": None})
        assert counts == {"a.png": 0}
        counts = import_label_folder(store, [tmp_path / "a.png"], labels, label_map={"RBC": "normal"})
        assert [c.label for c in store.cells(store.images()[0].id)] == ["normal"]
        (labels / "classes.txt").write_bytes(b"WBC\n\xffRBC\n")
        _refused(lambda: import_label_folder(store, [tmp_path / "a.png"], labels), labels / "classes.txt",
                 "not a UTF-8")
