"""Tests for workbench.core.voc (VOC XML in and out) and workbench.builders.bccd (BCCD -> ultralytics YOLO dataset).

The real BCCD is read from SMEAR_DATASETS (default <repo>/../shared/datasets; tests that need it are skipped with the
reason when it is absent). Hand-made BCCD-like folders, with every annotation defect the converter must repair, are
written into pytest's tmp_path. The converted dataset is checked by loading it with ultralytics itself.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image

from workbench.builders.bccd import BCCD_SPLITS, build_bccd_yolo, verify_yolo_dataset
from workbench.core.errors import LabelFileError
from workbench.core.voc import VocAnnotation, VocObject, parse_voc, write_voc

# Numbers published in <datasets>/README.md for BCCD's official split.
README_IMAGES = {"train": 205, "val": 87, "test": 72}
README_WBC_BOXES = {"train": 214, "val": 87, "test": 71}

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "datasets" / "sample"
SAMPLE_WBC = {"BloodImage_00016": 1, "BloodImage_00157": 1, "BloodImage_00293": 1, "BloodImage_00065": 2}


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple]]) -> str:
    parts = [
        "<annotation>",
        "<folder>JPEGImages</folder>",
        f"<filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _make_bccd(root: Path, splits: dict[str, dict[str, list[tuple[str, tuple]]]], size=(200, 100)) -> Path:
    """A BCCD-shaped folder: JPEGImages/, Annotations/, ImageSets/Main/{split}.txt, one small JPEG per stem."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in images))
        for stem, objects in images.items():
            Image.new("RGB", size, (230, 200, 210)).save(root / "JPEGImages" / f"{stem}.jpg", quality=90)
            (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.jpg", *size, objects))
    return root


def _label_lines(out_dir: Path, split: str) -> dict[str, list[list[str]]]:
    return {
        p.stem: [line.split() for line in p.read_text().splitlines()]
        for p in sorted((out_dir / "labels" / split).glob("*.txt"))
    }


def _voc_counts(xml: Path) -> Counter:
    return Counter(obj.name.casefold() for obj in parse_voc(xml).objects)


# Image 200x100. For the wbc class: one good box, a 1 px shifted duplicate of it (IoU 0.92), a box over the right and
# bottom border (clipped, kept), a zero-width box and a box wholly outside the image (both dropped as degenerate).
# Other classes: an RBC on exactly the good WBC's box (another class: no duplicate), an RBC pair with IoU 0.95 (one
# dropped), an inverted Platelets box (negative area: dropped) and a box of a class BCCD does not have.
DEFECT_OBJECTS = [
    ("WBC", (10, 10, 60, 60)),
    ("WBC", (11, 11, 61, 61)),
    ("WBC", (150, 50, 230, 120)),
    ("WBC", (80, 20, 80, 70)),
    ("WBC", (-30, -30, -5, -5)),
    ("RBC", (10, 10, 60, 60)),
    ("RBC", (100, 10, 140, 50)),
    ("RBC", (101, 10, 141, 50)),
    ("Platelets", (120, 60, 110, 80)),
    ("Monocyte", (0, 0, 20, 20)),
]


@pytest.fixture()
def defect_bccd(tmp_path) -> Path:
    return _make_bccd(
        tmp_path / "BCCD",
        {
            "train": {"defects": DEFECT_OBJECTS},
            "val": {"rbc_only": [("RBC", (20, 20, 70, 70))]},
            "test": {"lowercase": [(" wbc ", (40, 30, 90, 80))]},
        },
    )


@pytest.fixture(scope="module")
def full_wbc(bccd_root, tmp_path_factory):
    """The full wbc-only BCCD build (364 symlinks and label files)."""
    out = tmp_path_factory.mktemp("bccd_full") / "bccd-wbc"
    return build_bccd_yolo(bccd_root, out), out


# --------------------------------------------------------------------------------------------------------------------
# full BCCD, wbc only


def test_full_build_counts_match_the_official_split(full_wbc, bccd_root):
    report, out = full_wbc
    assert report.classes == ["wbc"]
    assert report.names == {0: "wbc"}
    for split in BCCD_SPLITS:
        sr = report.splits[split]
        assert sr.images == README_IMAGES[split]
        assert sr.boxes_in_xml == {"wbc": README_WBC_BOXES[split]}
        # Every WBC box of the XML is written, unless reported as repaired away.
        assert sr.boxes["wbc"] == README_WBC_BOXES[split] - sr.dropped_duplicates - sr.dropped_degenerate
        assert len(sr.dropped_duplicates_files) <= sr.dropped_duplicates
        assert len(sr.clipped_files) <= sr.clipped
        assert sr.unknown_class_boxes == {} and sr.size_mismatch_files == []

        official = (bccd_root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        images = sorted(p.stem for p in (out / "images" / split).iterdir())
        assert images == sorted(official)
        labels = _label_lines(out, split)
        assert sorted(labels) == images
        assert sum(len(lines) for lines in labels.values()) == sr.boxes["wbc"]
        assert sorted(sr.images_without_boxes) == sorted(s for s, lines in labels.items() if not lines)

    # The measured state of this copy of BCCD: no WBC defect at all (the README's "listed twice" are RBCs).
    assert report.totals() == {
        "images": 364, "boxes": {"wbc": 372}, "clipped": 0, "dropped_degenerate": 0, "dropped_duplicates": 0,
    }
    assert json.loads((out / "build_report.json").read_text()) == json.loads(json.dumps(report.to_dict()))


def test_full_build_no_image_in_two_splits_and_images_are_links(full_wbc, bccd_root):
    report, out = full_wbc
    seen: dict[str, str] = {}
    for split in BCCD_SPLITS:
        for image in (out / "images" / split).iterdir():
            assert image.stem not in seen, f"{image.stem} is in {seen.get(image.stem)} and {split}"
            seen[image.stem] = split
            assert image.is_symlink()
            assert image.resolve() == (bccd_root / "JPEGImages" / image.name).resolve()
    assert len(seen) == 364
    assert report.linked is True


def test_full_build_label_lines_are_valid_yolo(full_wbc):
    _, out = full_wbc
    for split in BCCD_SPLITS:
        for stem, lines in _label_lines(out, split).items():
            for fields in lines:
                assert len(fields) == 5, (stem, fields)
                assert fields[0] == "0", (stem, fields)
                assert all(len(f.split(".")[1]) == 6 for f in fields[1:]), (stem, fields)
                cx, cy, w, h = map(float, fields[1:])
                assert all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)), (stem, fields)
                assert w > 0 and h > 0, (stem, fields)
                eps = 1e-6  # 6 decimals
                assert cx - w / 2 >= -eps and cx + w / 2 <= 1 + eps, (stem, fields)
                assert cy - h / 2 >= -eps and cy + h / 2 <= 1 + eps, (stem, fields)


def test_full_build_loads_in_ultralytics(full_wbc):
    report, out = full_wbc
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {
        "path": str(out.resolve()), "train": "images/train", "val": "images/val", "test": "images/test",
        "names": {0: "wbc"},
    }
    loaded = verify_yolo_dataset(out / "data.yaml")  # imports ultralytics offline, with analytics sync off
    assert loaded["names"] == {0: "wbc"}
    from ultralytics.data.utils import check_det_dataset

    checked = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert checked["nc"] == 1 and checked["names"] == {0: "wbc"}
    for split in BCCD_SPLITS:
        # ultralytics found the label beside every symlinked image (it maps the path's /images/ to /labels/)
        assert loaded["splits"][split] == {
            "images": README_IMAGES[split], "boxes": report.splits[split].boxes["wbc"], "missing_labels": 0,
            "corrupt": 0,
        }


# --------------------------------------------------------------------------------------------------------------------
# class choice and order


def test_all_three_classes_keep_the_given_order(bccd_root, tmp_path):
    report = build_bccd_yolo(bccd_root, tmp_path / "all", classes=("wbc", "rbc", "platelets"), limit=5)
    assert report.names == {0: "wbc", 1: "rbc", 2: "platelets"}
    assert yaml.safe_load((tmp_path / "all" / "data.yaml").read_text())["names"] == {0: "wbc", 1: "rbc", 2: "platelets"}
    ids_seen = set()
    for split in BCCD_SPLITS:
        sr = report.splits[split]
        assert sr.images == 5
        repaired = set(sr.dropped_duplicates_files) | set(sr.dropped_degenerate_files)
        labels = _label_lines(tmp_path / "all", split)
        assert sum(len(lines) for lines in labels.values()) == sum(sr.boxes.values())
        for stem, lines in labels.items():
            ids = Counter(int(fields[0]) for fields in lines)
            ids_seen |= set(ids)
            xml = _voc_counts(bccd_root / "Annotations" / f"{stem}.xml")
            if stem not in repaired:
                assert ids == +Counter({0: xml["wbc"], 1: xml["rbc"], 2: xml["platelets"]}), stem
    assert ids_seen == {0, 1, 2}

    # Another order: ids follow it; a class left out is not written and nothing is renumbered.
    other = build_bccd_yolo(bccd_root, tmp_path / "pw", classes=("Platelets", "WBC"), splits=("test",), limit=5)
    assert other.names == {0: "platelets", 1: "wbc"}
    for stem, lines in _label_lines(tmp_path / "pw", "test").items():
        ids = Counter(int(fields[0]) for fields in lines)
        xml = _voc_counts(bccd_root / "Annotations" / f"{stem}.xml")
        assert ids == +Counter({0: xml["platelets"], 1: xml["wbc"]}), stem  # unary + drops zero counts


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"classes": ("wbc", "neutrophil")}, "unknown BCCD class"),
        ({"classes": ()}, "at least one"),
        ({"classes": "wbc"}, "not the string"),
        ({"classes": ("wbc", "WBC")}, "twice"),
        ({"splits": ("train", "trainval")}, "splits"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_arguments_are_rejected(defect_bccd, tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_bccd_yolo(defect_bccd, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------------------------
# defects in a hand-written VOC file


def test_defects_are_repaired_and_reported_wbc_only(defect_bccd, tmp_path):
    out = tmp_path / "out"
    report = build_bccd_yolo(defect_bccd, out)
    train = report.splits["train"]
    assert train.images == 1
    assert train.boxes_in_xml == {"wbc": 5}
    assert train.boxes == {"wbc": 2}
    assert (train.clipped, train.dropped_degenerate, train.dropped_duplicates) == (1, 2, 1)
    assert train.clipped_files == ["defects"]
    assert train.dropped_degenerate_files == ["defects"]
    assert train.dropped_duplicates_files == ["defects"]
    assert train.unknown_class_boxes == {"Monocyte": 1}
    assert train.images_without_boxes == []
    # the first of the duplicate pair is kept; the border box is clipped to the 200x100 image
    assert (out / "labels" / "train" / "defects.txt").read_text() == (
        "0 0.175000 0.350000 0.250000 0.500000\n"
        "0 0.875000 0.750000 0.250000 0.500000\n"
    )
    val = report.splits["val"]
    assert (val.images, val.boxes, val.images_without_boxes) == (1, {"wbc": 0}, ["rbc_only"])
    assert (out / "labels" / "val" / "rbc_only.txt").read_text() == ""  # empty label file, not a missing one
    assert report.splits["test"].boxes == {"wbc": 1}  # " wbc " matches WBC: trimmed, case-insensitive
    assert report.totals() == {
        "images": 3, "boxes": {"wbc": 3}, "clipped": 1, "dropped_degenerate": 2, "dropped_duplicates": 1,
    }
    saved = json.loads((out / "build_report.json").read_text())
    assert saved["splits"]["train"]["dropped_duplicates"] == 1
    assert saved["splits"]["train"]["dropped_duplicates_files"] == ["defects"]
    assert saved["names"] == {"0": "wbc"}


def test_defects_are_repaired_and_reported_all_classes(defect_bccd, tmp_path):
    report = build_bccd_yolo(defect_bccd, tmp_path / "out", classes=("wbc", "rbc", "platelets"), splits=("train",))
    train = report.splits["train"]
    assert train.boxes_in_xml == {"wbc": 5, "rbc": 3, "platelets": 1}
    assert train.boxes == {"wbc": 2, "rbc": 2, "platelets": 0}  # the RBC on the WBC's box is not a duplicate
    assert (train.clipped, train.dropped_degenerate, train.dropped_duplicates) == (1, 3, 2)
    lines = _label_lines(tmp_path / "out", "train")["defects"]
    assert [fields[0] for fields in lines] == ["0", "0", "1", "1"]
    assert list(report.splits) == ["train"]
    assert "val" not in yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())


def test_copy_mode_rebuild_and_refusal(defect_bccd, tmp_path):
    out = tmp_path / "out"
    report = build_bccd_yolo(defect_bccd, out, link=False)
    image = out / "images" / "train" / "defects.jpg"
    assert report.linked is False and image.is_file() and not image.is_symlink()

    # A rebuild into an earlier build replaces it: nothing of the first build (or ultralytics' cache) survives.
    (out / "labels" / "train.cache").write_text("stale")
    build_bccd_yolo(defect_bccd, out, splits=("val",))
    assert sorted(p.name for p in out.iterdir()) == ["build_report.json", "data.yaml", "images", "labels"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["val"]

    # A folder that is not an earlier build is never overwritten.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        build_bccd_yolo(defect_bccd, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_image_in_two_splits_is_rejected(tmp_path):
    root = _make_bccd(tmp_path / "BCCD", {"train": {"a": [], "b": []}, "val": {"b": []}})
    with pytest.raises(ValueError, match="both train and val"):
        build_bccd_yolo(root, tmp_path / "out", splits=("train", "val"))
    assert not (tmp_path / "out").exists()


def test_missing_parts_of_bccd_are_named(defect_bccd, tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        build_bccd_yolo(tmp_path / "nowhere", tmp_path / "out")
    (defect_bccd / "JPEGImages" / "rbc_only.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="rbc_only.jpg"):
        build_bccd_yolo(defect_bccd, tmp_path / "out")


# --------------------------------------------------------------------------------------------------------------------
# VOC parsing errors


GOOD_BOX = "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
GOOD_SIZE = "<size><width>640</width><height>480</height></size>"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("<annotation><filename>a.jpg</filename><size><width>640", "not well-formed"),
        ("", "not well-formed"),
        ("<root><filename>a.jpg</filename></root>", "expected <annotation>"),
        (f"<annotation>{GOOD_SIZE}</annotation>", "<filename>"),
        ("<annotation><filename>a.jpg</filename><size><height>480</height></size></annotation>", "<size/width>"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE.replace('640', '0')}</annotation>", "positive"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE.replace('480', '4.5e2x')}</annotation>", "finite"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE}<object>{GOOD_BOX}</object></annotation>", "<name>"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE}<object><name>WBC</name></object></annotation>",
         "<bndbox>"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE}<object><name>WBC</name>"
         f"{GOOD_BOX.replace('<xmax>30</xmax>', '')}</object></annotation>", "<xmax>"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE}<object><name>WBC</name>"
         f"{GOOD_BOX.replace('>2<', '>abc<')}</object></annotation>", "'abc'"),
        (f"<annotation><filename>a.jpg</filename>{GOOD_SIZE}<object><name>WBC</name>"
         f"{GOOD_BOX.replace('>2<', '>nan<')}</object></annotation>", "not a finite number"),
        ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>', "entities"),
    ],
)
def test_malformed_voc_raises_label_file_error_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad file.xml"
    path.write_text(text)
    with pytest.raises(LabelFileError) as info:
        parse_voc(path)
    message = str(info.value)
    assert str(path) in message and fragment in message, message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_missing_voc_file_raises_label_file_error(tmp_path):
    with pytest.raises(LabelFileError, match="cannot read"):
        parse_voc(tmp_path / "absent.xml")


def test_malformed_xml_stops_the_build_naming_the_file(defect_bccd, tmp_path):
    out = tmp_path / "out"
    build_bccd_yolo(defect_bccd, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    bad = defect_bccd / "Annotations" / "rbc_only.xml"
    good = bad.read_text()
    bad.write_text("<annotation><filename>rbc_only.jpg</filename")
    with pytest.raises(LabelFileError, match="rbc_only.xml"):
        build_bccd_yolo(defect_bccd, out)
    # the failed build left the earlier one untouched and no staging folder behind; after the fix it rebuilds
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BCCD", "out"]
    bad.write_text(good)
    assert build_bccd_yolo(defect_bccd, out).totals()["images"] == 3


def test_parse_real_bccd_annotation(bccd_root):
    annotation = parse_voc(bccd_root / "Annotations" / "BloodImage_00000.xml")
    assert (annotation.filename, annotation.width, annotation.height) == ("BloodImage_00000.jpg", 640, 480)
    assert annotation.objects[0] == VocObject("WBC", (260.0, 177.0, 491.0, 376.0))  # README's example
    assert {obj.name for obj in annotation.objects} <= {"WBC", "RBC", "Platelets"}


# --------------------------------------------------------------------------------------------------------------------
# VOC writing


def test_write_voc_round_trip_and_atomic_overwrite(tmp_path):
    annotation = VocAnnotation(
        filename="smear 1 & <co>.jpg",
        width=2592,
        height=1944,
        objects=[
            VocObject("WBC", (10.0, 20.0, 300.0, 400.0)),
            VocObject("blast", (0.1, 1 / 3, 2591.999, 1943.25)),
            VocObject("RBC", (-5.0, 0.0, 12.5, 7.0)),  # written as given: VOC writing does not repair geometry
        ],
    )
    path = tmp_path / "sub" / "smear.xml"
    assert write_voc(path, annotation) == path
    assert parse_voc(path) == annotation
    assert "<xmin>10</xmin>" in path.read_text()  # whole numbers as integers, like BCCD's own files

    empty = VocAnnotation(filename="smear.jpg", width=640, height=480, objects=[])
    write_voc(path, empty)
    assert parse_voc(path) == empty
    assert sorted(p.name for p in path.parent.iterdir()) == ["smear.xml"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "annotation",
    [
        VocAnnotation("", 640, 480, []),
        VocAnnotation("a.jpg", 0, 480, []),
        VocAnnotation("a.jpg", 640, 480, [VocObject("", (0, 0, 1, 1))]),
        VocAnnotation("a.jpg", 640, 480, [VocObject("WBC", (0, 0, float("inf"), 1))]),
    ],
)
def test_write_voc_rejects_invalid_annotations(tmp_path, annotation):
    path = tmp_path / "out.xml"
    path.write_text("previous")
    with pytest.raises(ValueError):
        write_voc(path, annotation)
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xml"]


# --------------------------------------------------------------------------------------------------------------------
# the committed demo sample


def test_demo_sample_is_data_with_its_licence():
    assert not list((REPO_ROOT / "datasets").rglob("*.py")), "datasets/ is data: no Python files, no __init__.py"
    assert sorted(p.stem for p in (SAMPLE_DIR / "images").iterdir()) == sorted(SAMPLE_WBC)
    assert sorted(p.stem for p in (SAMPLE_DIR / "annotations").iterdir()) == sorted(SAMPLE_WBC)
    assert "MIT License" in (SAMPLE_DIR / "LICENSE").read_text()
    for stem, wbc in SAMPLE_WBC.items():
        annotation = parse_voc(SAMPLE_DIR / "annotations" / f"{stem}.xml")
        assert annotation.filename == f"{stem}.jpg"
        with Image.open(SAMPLE_DIR / "images" / f"{stem}.jpg") as im:
            assert im.size == (annotation.width, annotation.height) == (640, 480)
        wbcs = [obj.xyxy for obj in annotation.objects if obj.name == "WBC"]
        assert len(wbcs) == wbc
        assert all(x1 >= 80 and y1 >= 80 and x2 <= 560 and y2 <= 400 for x1, y1, x2, y2 in wbcs)  # well inside


def test_demo_sample_is_unchanged_bccd_test_split(bccd_root):
    test_split = set((bccd_root / "ImageSets" / "Main" / "test.txt").read_text().split())
    for stem in SAMPLE_WBC:
        assert stem in test_split
        for sub, original, ext in (("images", "JPEGImages", "jpg"), ("annotations", "Annotations", "xml")):
            copy = (SAMPLE_DIR / sub / f"{stem}.{ext}").read_bytes()
            assert copy == (bccd_root / original / f"{stem}.{ext}").read_bytes()
