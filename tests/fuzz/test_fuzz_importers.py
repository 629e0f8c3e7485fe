"""Fuzzing the label importers (YOLO, VOC, COCO, ALL-IDB points, class-names files) with generated hostile and clumsy
files. Property: every input either imports, giving boxes inside the image with finite coordinates and a label, or
is refused with the documented error (LabelImportError; LabelFileError for the bottom-floor readers) whose message
names the file on one short line; never another exception, never a hang (hypothesis deadline, conftest), and the
memory one input takes stays bounded (tracemalloc peak).

Budget and seed: tests/fuzz/conftest.py (small and derandomized by default, `--fuzz-long` for thousands)."""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from workbench.app.annotation.importers import (import_coco, import_points, import_voc, import_yolo, read_names,
                                                read_points)
from workbench.core.errors import LabelFileError, LabelImportError
from workbench.core.points import read_xyc
from workbench.core.voc import parse_voc

MAX_PEAK_BYTES = 64 * 2 ** 20      # what one (small) generated input may allocate at most
MAX_MESSAGE = 600

# -- building blocks --------------------------------------------------------------------------------------------------
# Each generated file is either "clean" (well-formed, sane values: it should import, and the boxes are checked) or
# hostile (junk bytes, odd numbers, odd characters, nesting, aliases, bad encodings), about a third clean.

HOSTILE_NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e309", "-1e309", "1e300", "1e-400",
                   "0", "-0", "-1", "-2", "1", "2", "0.5", "1.5", "99999999999999999999999", "1_000", "0x10", "+1",
                   ".5", "5.", "1e", "", " ", "٣", "１", "1e5000", "9" * 400]
def _mostly(sane, other, one_in: int = 6):
    """`sane`, but one time in `one_in` `other` (st.one_of would pick each branch equally often)."""
    return st.integers(1, one_in).flatmap(lambda k: other if k == one_in else sane)


hostile_number_text = st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats().map(repr), st.integers().map(str),
                                st.text(max_size=8))
unit_text = st.floats(-0.5, 1.5).map(lambda v: f"{v:.6f}")                 # YOLO's normalised numbers
number_text = _mostly(unit_text, hostile_number_text)
clean_pixel_text = st.one_of(st.integers(-50, 800).map(str), st.floats(-50, 800).map(lambda v: f"{v:.2f}"))
pixel_text = _mostly(clean_pixel_text, hostile_number_text)
junk_text = st.text(st.characters(codec="utf-8"), max_size=200)
junk_bytes = st.binary(max_size=300)
separators = _mostly(st.just(" "), st.sampled_from(["\t", "  ", ",", " \t", "\u00a0", "\x00"]), 3)
newlines = _mostly(st.just("\n"), st.sampled_from(["\r\n", "\r", "\n\n", "\x0b", "\u2028"]), 3)
plain_names = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_- ", min_size=1,
                      max_size=12).filter(lambda t: t.strip() and t.strip()[0].isalpha())


def _clean(draw) -> bool:
    return draw(st.integers(0, 2)) == 0


def _joined(draw, tokens: list[str], clean: bool) -> str:
    sep = st.just(" ") if clean else separators
    return "".join(t + (draw(sep) if i < len(tokens) - 1 else "") for i, t in enumerate(tokens))


@st.composite
def lines_file(draw, fields: int, first=number_text, clean_first=unit_text, clean_number=unit_text) -> bytes:
    """A text file of lines of `fields` number tokens (YOLO: 5, points: 2): clean, or with junk lines, odd token
    counts, separators and numbers, a flipped byte, or just junk bytes."""
    clean = _clean(draw)
    if not clean and draw(st.integers(0, 9)) == 9:
        return draw(junk_bytes)
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        if clean:
            lines.append(_joined(draw, [draw(clean_first)] + [draw(clean_number) for _ in range(fields - 1)], True))
        elif draw(st.integers(0, 7)) == 7:
            lines.append(draw(junk_text))
        else:
            n = draw(st.sampled_from([fields] * 6 + [0, 1, fields - 1, fields + 1]))
            tokens = [draw(first)] + [draw(number_text) for _ in range(n - 1)] if n else []
            lines.append(_joined(draw, tokens, False))
    text = "".join(line + (draw(newlines) if not clean else "\n") for line in lines)
    prefix = draw(st.sampled_from(["", "", "", "\ufeff"]))
    data = (prefix + text).encode("utf-8", "surrogatepass")
    if not clean and draw(st.integers(0, 7)) == 7:   # one flipped byte: maybe not UTF-8 any more
        at = draw(st.integers(0, max(0, len(data) - 1)))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=12), st.integers(-10 ** 30, 10 ** 30),
                         st.sampled_from([float("inf"), float("nan"), 1e300, -0.0]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4)), max_leaves=12)


def _coco_records(clean: bool):
    def field(sane):
        return sane if clean else _mostly(sane, json_values)

    image = st.fixed_dictionaries(
        {"id": field(st.integers(0, 3)), "file_name": field(st.sampled_from(["a.png", "b.png", "c.jpg"])),
         "width": field(st.integers(1, 3000) if clean else st.one_of(st.integers(-2, 3000), st.floats())),
         "height": field(st.integers(1, 3000))})
    category = st.fixed_dictionaries({"id": field(st.integers(0, 3)),
                                      "name": field(st.one_of(st.sampled_from(["WBC", "RBC", "blast"]), plain_names)
                                                    if clean else st.sampled_from(["WBC", "RBC", " ", ""]))})
    bbox = (st.lists(st.floats(-100, 4000), min_size=2, max_size=2)
            .flatmap(lambda xy: st.tuples(st.just(xy), st.lists(st.floats(0, 3000), min_size=2, max_size=2)))
            .map(lambda t: [*t[0], *t[1]]))
    annotation = st.fixed_dictionaries(
        {"image_id": field(st.integers(0, 3)), "category_id": field(st.integers(0, 3)),
         "bbox": field(bbox if clean else st.one_of(bbox, st.lists(st.one_of(st.floats(), st.integers()),
                                                                   min_size=3, max_size=5)))})
    return image, category, annotation


@st.composite
def coco_file(draw) -> bytes:
    clean = _clean(draw)
    kind = 0 if clean else draw(st.integers(0, 9))
    if kind == 9:
        return draw(junk_bytes)
    if kind == 8:                                   # deep nesting
        depth = draw(st.integers(1, 5000))
        return (draw(st.sampled_from(["[", '{"a":'])) * depth).encode()
    if kind == 7:
        data = draw(json_values)
    else:
        image, category, annotation = _coco_records(clean)
        images = draw(st.lists(image, min_size=1, max_size=3, unique_by=lambda i: (str(i["id"]), str(i["file_name"])))
                      if clean else st.lists(image, max_size=3))
        categories = draw(st.lists(category, min_size=1, max_size=3, unique_by=lambda c: str(c["id"])))
        annotations = draw(st.lists(annotation, max_size=5))
        if clean:   # refer to what exists
            ids, cats = [i["id"] for i in images], [c["id"] for c in categories]
            for n, ann in enumerate(annotations):
                ann["image_id"], ann["category_id"] = ids[n % len(ids)], cats[n % len(cats)]
            images = [dict(i, file_name=f"{n}_{i['file_name']}") for n, i in enumerate(images)]
        data = {"images": images, "categories": categories, "annotations": annotations}
        if not clean and draw(st.integers(0, 3)) == 3:
            del data[draw(st.sampled_from(sorted(data)))]
    text = json.dumps(data, allow_nan=True)
    if not clean and draw(st.integers(0, 5)) == 5:  # cut or spliced
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=5))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def voc_file(draw) -> bytes:
    clean = _clean(draw)
    kind = 0 if clean else draw(st.integers(0, 9))
    if kind == 9:
        return draw(junk_bytes)
    if kind == 8:
        return (b"<annotation>" + b"<a>" * draw(st.integers(1, 20000)))
    name_text = (st.one_of(st.sampled_from(["WBC", "RBC", "blast", "normal"]), plain_names) if clean else
                 st.one_of(st.sampled_from(["WBC", "RBC", "", " ", "a&amp;b", "<x/>", "&#0;"]),
                           st.text(st.characters(codec="utf-8", exclude_characters="<&"), max_size=10)))
    coord = clean_pixel_text if clean else pixel_text
    objects = ""
    for _ in range(draw(st.integers(0, 4))):
        coords = "".join(f"<{k}>{draw(coord)}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax")
                         if clean or draw(st.integers(0, 9)) < 9)
        objects += f"<object><name>{draw(name_text)}</name><bndbox>{coords}</bndbox></object>"
    side = st.integers(1, 800).map(str) if clean else pixel_text
    size = f"<size><width>{draw(side)}</width><height>{draw(side)}</height></size>"
    declaration = "" if clean else draw(st.sampled_from([
        "", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="x-bogus"?>',
        '<?xml version="1.0" encoding="utf-16"?>', '<?xml version="1.0" encoding="latin-1"?>',
        '<!DOCTYPE a [<!ENTITY e "xx">]>']))
    root = "annotation" if clean else draw(st.sampled_from(["annotation"] * 5 + ["root", "a:annotation"]))
    filename = draw(st.sampled_from(["a.png", "b.jpg"]) if clean else name_text)
    text = f"{declaration}<{root}><filename>{filename}</filename>{size}{objects}</{root}>"
    data = text.encode("utf-8" if clean else draw(st.sampled_from(["utf-8"] * 5 + ["utf-16", "latin-1"])), "replace")
    if not clean and draw(st.integers(0, 5)) == 5:
        at = draw(st.integers(0, max(0, len(data) - 1)))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at + 1:]
    return data


odd_names = st.one_of(st.sampled_from(["yes", "no", "~", "null", "1", "1.5", "'quoted'", "[x]", "{a: b}", "",
                                       "&a x", "*a", "!!binary aGk=", "!!python/object:os.system", ".inf",
                                       "2001-01-01", "a: b", "- x", "'" + "x" * 300 + "'"]),
                      st.text(max_size=10))


@st.composite
def names_file(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".txt", ".yaml", ".yml"]))
    clean = _clean(draw)
    kind = 0 if clean else draw(st.integers(0, 9))
    if kind == 9:
        return suffix, draw(junk_bytes)
    names = draw(st.lists(plain_names if clean else st.one_of(plain_names, odd_names), min_size=1 if clean else 0,
                          max_size=6))
    if suffix == ".txt" or kind == 8:
        return suffix, "\n".join(names).encode("utf-8", "surrogatepass")
    if kind == 7:                                   # alias bombs and anchors
        depth, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        lines = ["a0: &a0 [x, y]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
                                      for i in range(1, depth + 1)]
        return suffix, ("\n".join(lines) + f"\nnames: *a{depth}\n").encode()
    if kind == 6:                                   # deep nesting
        return suffix, ("names: " + draw(st.sampled_from(["[", "{a: ", "- "])) * draw(st.integers(1, 3000))).encode()
    if draw(st.booleans()):
        keys = (list(range(len(names))) if clean else
                draw(st.lists(st.one_of(st.integers(-1, 8), st.sampled_from(["0", "1", "x", ".inf", "true"])),
                              min_size=len(names), max_size=len(names))))
        if clean:
            keys = draw(st.permutations(keys))
        body = "names:\n" + "".join(f"  {k}: {n}\n" for k, n in zip(keys, names))
    else:
        body = "names: [" + ", ".join(names) + "]\n"
    if draw(st.booleans()):
        body = "path: .\ntrain: images/train\n" + body
    return suffix, body.encode("utf-8", "surrogatepass")


# -- the property ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check_cells(cells, width: float, height: float) -> None:
    assert [c.cell_id for c in cells] == list(range(len(cells)))
    for cell in cells:
        x1, y1, x2, y2 = cell.xyxy
        assert all(math.isfinite(v) for v in cell.xyxy), cell
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, (cell, width, height)
        assert isinstance(cell.label, str) and cell.label.strip(), cell


def _exercise(stats: dict, name: str, path: Path, call, allowed: tuple, check=None) -> None:
    """Run `call()` once: it imports (then `check(result)`) or raises one of `allowed`, naming `path` on one short
    line; anything else fails the test. Records the outcome, the time and the traced memory peak."""
    stat = stats.setdefault(name, {"inputs": 0, "ok": 0, "refused": Counter(), "seconds": 0.0, "slowest": 0.0,
                                   "peak": 0})
    started = time.perf_counter()
    tracemalloc.start()
    try:
        try:
            result = call()
        except allowed as exc:
            message = str(exc)
            assert "\n" not in message and "\r" not in message, repr(message[:300])
            assert len(message) < MAX_MESSAGE + len(str(path)), message[:300]
            assert str(path) in message, message
            stat["refused"][type(exc).__name__] += 1
        else:
            if check is not None:
                check(result)
            stat["ok"] += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    stat["inputs"] += 1
    stat["seconds"] += elapsed
    stat["slowest"] = max(stat["slowest"], elapsed)
    stat["peak"] = max(stat["peak"], peak)
    assert peak < MAX_PEAK_BYTES, f"one input took {peak / 2 ** 20:.0f} MiB"


# -- the importers -----------------------------------------------------------------------------------------------------

sizes = _mostly(st.integers(1, 4000), st.one_of(st.integers(-3, 2), st.floats(),
                                                st.sampled_from([1e300, 10 ** 30, 2.5, "100", None, True])), 10)
names_lists = _mostly(st.just(["blast", "normal"]),
                      st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["WBC", ""])), max_size=3), 4)
label_maps = st.one_of(st.none(), st.just({"WBC": "normal", "RBC": None, "blast": None}))


@given(data=lines_file(5, first=_mostly(st.integers(0, 1).map(str), st.one_of(st.integers(-3, 3).map(str),
                                                                              number_text)),
                       clean_first=st.integers(0, 1).map(str), clean_number=st.floats(0, 1.3).map("{:.6f}".format)),
       width=sizes, height=sizes, names=names_lists, label_map=label_maps)
def test_fuzz_yolo(work, fuzz_stats, data, width, height, names, label_map):
    path = work / "a.txt"
    path.write_bytes(data)
    _exercise(fuzz_stats, "yolo", path, lambda: import_yolo(path, width, height, names, label_map),
              (LabelImportError,), lambda cells: _check_cells(cells, float(width), float(height)))


@given(data=voc_file(), label_map=label_maps)
def test_fuzz_voc(work, fuzz_stats, data, label_map):
    path = work / "a.xml"
    path.write_bytes(data)

    def check(result):
        _name, width, height, cells = result
        assert 1 <= width <= 1_000_000 and 1 <= height <= 1_000_000
        _check_cells(cells, width, height)

    _exercise(fuzz_stats, "voc", path, lambda: import_voc(path, label_map), (LabelImportError,), check)
    _exercise(fuzz_stats, "voc (core parse_voc)", path, lambda: parse_voc(path), (LabelFileError,))


@given(data=coco_file(), label_map=label_maps)
def test_fuzz_coco(work, fuzz_stats, data, label_map):
    path = work / "c.json"
    path.write_bytes(data)

    def check(result):
        for name, (width, height, cells) in result.items():
            assert isinstance(name, str)
            if cells:
                _check_cells(cells, width, height)

    _exercise(fuzz_stats, "coco", path, lambda: import_coco(path, label_map), (LabelImportError,), check)


@given(data=lines_file(2, first=pixel_text, clean_first=clean_pixel_text, clean_number=clean_pixel_text))
def test_fuzz_points_file(work, fuzz_stats, data):
    path = work / "a.xyc"
    path.write_bytes(data)

    def check(points):
        assert all(math.isfinite(x) and math.isfinite(y) for x, y in points)

    _exercise(fuzz_stats, "xyc", path, lambda: read_points(path), (LabelImportError,), check)
    _exercise(fuzz_stats, "xyc (core read_xyc)", path, lambda: read_xyc(path), (LabelFileError,), check)


@given(file=names_file())
def test_fuzz_names_file(work, fuzz_stats, file):
    suffix, data = file
    path = work / f"names{suffix}"
    path.write_bytes(data)

    def check(names):
        assert names and all(isinstance(n, str) and n and len(n) <= 200 and "\n" not in n for n in names)

    _exercise(fuzz_stats, "names", path, lambda: read_names(path), (LabelImportError,), check)


_IMAGE = None


def _smear():
    """A small synthetic smear: two touching stained cells and a platelet on a pink background."""
    global _IMAGE
    if _IMAGE is None:
        import cv2

        image = np.full((240, 320, 3), (230, 200, 200), np.uint8)
        for centre in [(110, 120), (175, 120)]:
            cv2.circle(image, centre, 33, (120, 60, 160), -1)
            cv2.circle(image, centre, 18, (70, 20, 120), -1)
        cv2.circle(image, (260, 60), 5, (90, 40, 140), -1)
        _IMAGE = image
    return _IMAGE


coordinate = st.one_of(st.floats(-50, 400), st.floats(), st.sampled_from([0.0, 319.999, 320.0, 239.5, -0.0]),
                       st.integers(60, 230).map(float))


@given(points=st.lists(st.tuples(coordinate, coordinate), max_size=6))
def test_fuzz_points_to_boxes(fuzz_stats, points):
    assume(len(points) <= 6)

    def check(result):
        cells, missed = result
        assert len(cells) + missed == len(points)
        _check_cells(cells, 320, 240)

    _exercise(fuzz_stats, "points -> boxes", Path("(points)"), lambda: import_points(_smear(), points), (), check)
