"""Label files -> boxes in the one results schema (CellDetection), ready for ProjectStore.replace_cells.

Formats: YOLO txt (class index per the project's label list, normalised cx cy w h), Pascal VOC xml
(workbench.core.voc.parse_voc), COCO json, and ALL-IDB style point files (.xyc, one `x y` per line), which become boxes
with the dataset builder's point->box method (workbench.core.segmentation.point_to_box); class-names files (classes.txt,
names.txt: one per line; data.yaml / names.yaml: a `names:` list or mapping) with `read_names`. Class names from a
file are mapped to project labels with `label_map` (names not in the map keep their name, lower-cased; a map value
None drops the box, e.g. {"RBC": None, "Platelets": None, "WBC": "normal"} for BCCD).

Label files come from other programs and other people, so nothing in them is trusted: every problem (not UTF-8,
malformed, a negative or unknown class id, a number that is not finite, an image size that is not one, YAML aliases,
nesting too deep, a file too large to be a label file) raises LabelImportError, a WorkbenchError (and a ValueError)
whose message names the file on one short line. Boxes are clipped to the image: a box partly outside it is cut at
the image border, one entirely outside it is dropped and counted (`ImportedCells.dropped`), so nothing outside the
image enters the project.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from workbench.core.errors import LabelFileError, LabelImportError
from workbench.core.box_bounds import clip_box, ordered
from workbench.core.voc import parse_voc
from workbench.app.results import CellDetection

log = logging.getLogger(__name__)

LabelMap = Mapping[str, "str | None"]

NAMES_FILES = ("classes.txt", "names.txt", "data.yaml", "names.yaml")   # looked for in a label folder, in order
MAX_IMAGE_SIDE = 1_000_000          # px: a larger width or height in a label file is not an image size
MAX_TEXT_BYTES = 64 * 1024 ** 2     # a YOLO txt or point file larger than this is not one image's labels
MAX_COCO_BYTES = 512 * 1024 ** 2
MAX_NAMES_BYTES = 1024 ** 2         # a class-names file
MAX_CLASSES = 10_000
MAX_NAME_CHARS = 200
MAX_POINTS = 10_000                 # marked points in one image's point file
MAX_YAML_FLOW_DEPTH = 32            # [ { nesting in a names file (PyYAML's scanner is quadratic in it)


class ImportedCells(list):
    """The boxes of one image from a label file (a list of CellDetection, ids 0..n-1), with how many boxes of the
    file lay entirely outside the image (`dropped`) and how many were cut at its border (`clipped`)."""

    dropped: int = 0
    clipped: int = 0


class ImportCounts(dict):
    """{image name: boxes imported} of import_label_folder, with {image name: boxes dropped} (`dropped`: boxes
    entirely outside their image; only images that had some)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dropped: dict[str, int] = {}


# --------------------------------------------------------------------------------------------------------------------
# checks shared by the importers


def _clip(text: object, limit: int = 60) -> str:
    """`text` for an error message: on one line (line breaks become spaces), at most `limit` characters of it."""
    text = " ".join(str(text).splitlines())
    return text if len(text) <= limit else text[:limit] + "…"


def _fail(path: Path | str, what: str) -> LabelImportError:
    """The error for a bad label file: the file, then what is wrong, on one line of at most ~300 characters."""
    return LabelImportError(f"{path}: {_clip(what, 240)}")


def _read_text(path: Path, limit: int, what: str) -> str:
    """The text of a UTF-8 file (a BOM is allowed) of at most `limit` bytes. OSError if it cannot be read."""
    chunks, size = [], 0
    with open(path, "rb") as f:   # in chunks: f.read(limit) would allocate `limit` bytes whatever the file's size
        while chunk := f.read(1024 ** 2):
            size += len(chunk)
            if size > limit:
                raise _fail(path, f"larger than {limit // 1024 ** 2 or 1} MB: not a {what}")
            chunks.append(chunk)
    data = b"".join(chunks)
    del chunks
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"not a UTF-8 text file (byte {exc.start}): not a {what}") from None


def _number(value: object, path: Path | str, where: str) -> float:
    """A finite number of a parsed file (an int or float, not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(path, f"{where} is {_clip(repr(value))}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _fail(path, f"{where} is {_clip(repr(value))}, not a finite number")
    return number


def _image_size(width: object, height: object, path: Path | str, where: str = "image") -> tuple[int, int]:
    """(width, height) as whole numbers of pixels from 1 to MAX_IMAGE_SIDE."""
    out = []
    for key, value in (("width", width), ("height", height)):
        number = _number(value, path, f"{where} {key}")
        if not (number.is_integer() and 1 <= number <= MAX_IMAGE_SIDE):
            raise _fail(path, f"{where} {key} is {_clip(repr(value))}, expected a whole number of pixels "
                              f"from 1 to {MAX_IMAGE_SIDE}")
        out.append(int(number))
    return out[0], out[1]


def _cells(boxes: Iterable[tuple[Sequence[float], str]], width: int, height: int, path: Path | str) -> ImportedCells:
    """The boxes (xyxy, label) clipped to the image, numbered 0..n-1; those entirely outside dropped and counted."""
    cells = ImportedCells()
    for xyxy, label in boxes:
        box = clip_box(xyxy, width, height)
        if box is None:
            cells.dropped += 1
            continue
        if box != ordered(xyxy):
            cells.clipped += 1
        cells.append(imported_cell(len(cells), box, label))
    if cells.dropped:
        log.warning("%s: %d box(es) entirely outside the %dx%d image dropped", path, cells.dropped, width, height)
    return cells


def imported_cell(cell_id: int, xyxy: Sequence[float], label: str) -> CellDetection:
    """A box from a label file: certain (det_conf = label_conf = 1), p_blast 1 for a blast."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return CellDetection(cell_id=cell_id, xyxy=(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),
                         det_conf=1.0, label=label, label_conf=1.0, p_blast=1.0 if label == "blast" else 0.0)


def _map(name: str, label_map: LabelMap | None) -> str | None:
    if label_map is not None and name in label_map:
        return label_map[name]
    return name.strip().lower()


def _label(name: object, label_map: LabelMap | None, path: Path | str, where: str) -> str | None:
    """The project label of a class name from a file (None: the map drops it)."""
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, f"{where}: class name {_clip(repr(name))} is not a non-empty text")
    if len(name) > MAX_NAME_CHARS or any(ch in name for ch in "\n\r\t\x00"):
        raise _fail(path, f"{where}: class name {_clip(repr(name))} is longer than {MAX_NAME_CHARS} characters "
                          "or spans lines")
    return _map(name, label_map)


# --------------------------------------------------------------------------------------------------------------------
# the formats


def import_voc(path: Path | str, label_map: LabelMap | None = None) -> tuple[str, int, int, ImportedCells]:
    """(image file name, width, height, boxes) of a VOC xml file."""
    path = Path(path)
    try:
        ann = parse_voc(path)
    except LabelImportError:
        raise
    except LabelFileError as exc:
        raise LabelImportError(_clip(exc, 300)) from None
    width, height = _image_size(ann.width, ann.height, path, "<size>")
    boxes = []
    for index, obj in enumerate(ann.objects, 1):
        label = _label(obj.name, label_map, path, f"object {index}")
        if label is not None:
            boxes.append((obj.xyxy, label))
    return ann.filename, width, height, _cells(boxes, width, height, path)


def import_yolo(path: Path | str, width: int, height: int, names: Sequence[str],
                label_map: LabelMap | None = None) -> ImportedCells:
    """Boxes of a YOLO txt file (`cls cx cy w h`, normalised) for an image of width x height; `names[cls]` is
    the class name (the data yaml's names)."""
    path = Path(path)
    width, height = _image_size(width, height, path, "the image's")
    names = list(names)
    boxes = []
    for number, line in enumerate(_read_text(path, MAX_TEXT_BYTES, "YOLO label file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
            if not 0 <= cls < len(names):
                raise ValueError
            if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w < 0 or h < 0:
                raise ValueError
        except ValueError:
            raise _fail(f"{path}:{number}", f"expected 'class cx cy w h' with a class from 0 to {len(names) - 1} "
                                            f"and finite numbers (w, h >= 0), got {_clip(repr(line))}") from None
        label = _label(names[cls], label_map, path, f"class {cls}")
        if label is None:
            continue
        boxes.append((((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height),
                      label))
    return _cells(boxes, width, height, path)


def _json_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{_clip(text, 30)} is not a finite number")
    return value


def import_coco(path: Path | str, label_map: LabelMap | None = None) -> dict[str, tuple[int, int, ImportedCells]]:
    """COCO json -> {image file name: (width, height, boxes)} (bbox = x, y, w, h in pixels). An image without boxes
    may lack its size (0, 0); one with boxes needs it, to clip them."""
    path = Path(path)
    text = _read_text(path, MAX_COCO_BYTES, "COCO json file")
    try:
        data = json.loads(text, parse_constant=_json_constant, parse_float=_json_float)
    except RecursionError:
        raise _fail(path, "not a COCO detection file (JSON nested too deeply)") from None
    except ValueError as exc:
        raise _fail(path, f"not a COCO detection file (not valid JSON: {exc})") from None
    del text
    if not isinstance(data, dict):
        raise _fail(path, f"not a COCO detection file (the top level is a {type(data).__name__}, expected an object "
                          "with images, annotations and categories)")

    def records(key: str, required: bool) -> list[dict]:
        value = data.get(key, None if required else [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _fail(path, f"not a COCO detection file ('{key}' must be a list of objects)")
        return value

    def ident(record: dict, key: str, where: str):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _fail(path, f"{where}: '{key}' is {_clip(repr(value))}, expected a number or a text")
        return value

    categories = {}
    for index, category in enumerate(records("categories", False)):
        where = f"categories[{index}]"
        categories[ident(category, "id", where)] = _label(category.get("name"), label_map, path, where)
    images, out = {}, {}
    for index, image in enumerate(records("images", True)):
        where = f"images[{index}]"
        name = image.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise _fail(path, f"{where}: 'file_name' is {_clip(repr(name))}, expected a file name")
        if image.get("width") is None and image.get("height") is None:
            size = (0, 0)
        else:
            size = _image_size(image.get("width"), image.get("height"), path, f"{where} ({_clip(name)})")
        images[ident(image, "id", where)] = (name, size)
        out[name] = (*size, [])
    for index, ann in enumerate(records("annotations", False)):
        where = f"annotations[{index}]"
        image_id, category_id = ident(ann, "image_id", where), ident(ann, "category_id", where)
        if image_id not in images:
            raise _fail(path, f"{where}: image_id {_clip(repr(image_id))} is not in 'images'")
        if category_id not in categories:
            raise _fail(path, f"{where}: category_id {_clip(repr(category_id))} is not in 'categories'")
        name, (width, height) = images[image_id]
        if not width:
            raise _fail(path, f"{where}: image {_clip(name)} has boxes but no width and height")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise _fail(path, f"{where}: 'bbox' is {_clip(repr(bbox))}, expected [x, y, width, height]")
        x, y, w, h = (_number(v, path, f"{where} bbox") for v in bbox)
        if w < 0 or h < 0:
            raise _fail(path, f"{where}: bbox width and height must not be negative, got {_clip(repr(bbox))}")
        label = categories[category_id]
        if label is not None:
            out[name][2].append(((x, y, x + w, y + h), label))
    return {name: (width, height, _cells(boxes, width, height, path) if boxes else ImportedCells())
            for name, (width, height, boxes) in out.items()}


def read_points(path: Path | str) -> list[tuple[float, float]]:
    """The points of an ALL-IDB .xyc file (`x y` per line, tab, space or comma separated), at most MAX_POINTS."""
    from workbench.core.points import read_xyc

    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_TEXT_BYTES:
        raise _fail(path, f"larger than {MAX_TEXT_BYTES // 1024 ** 2} MB: not a point file")
    try:
        points = read_xyc(path)
    except LabelFileError as exc:
        raise LabelImportError(_clip(exc, 300)) from None
    if len(points) > MAX_POINTS:
        raise _fail(path, f"{len(points)} points: more than {MAX_POINTS} marked cells in one image")
    return points


def import_points(image_rgb, points: Sequence[tuple[float, float]], label: str = "blast",
                  kind: str = "blast") -> tuple[list[CellDetection], int]:
    """Boxes grown from marked points (ALL-IDB .xyc) with the dataset builder's point->box method; returns the
    boxes and how many points gave no white-cell box (platelets, failed segmentations, points outside the image or
    not finite). The boxes lie inside the image (point_to_box clips them)."""
    from workbench.core.segmentation import point_to_box, stain_map

    stain = stain_map(image_rgb)
    cells, missed = [], 0
    for i, (x, y) in enumerate(points):
        if not (math.isfinite(x) and math.isfinite(y)):
            missed += 1
            continue
        others = [p for j, p in enumerate(points) if j != i]
        box = point_to_box(image_rgb, x, y, kind=kind, neighbours=others, stain=stain)
        if box is None:
            missed += 1
            continue
        cells.append(imported_cell(len(cells), box.xyxy, label))
    return cells, missed


# --------------------------------------------------------------------------------------------------------------------
# class names


def _no_alias_loader():
    import yaml

    class NamesLoader(yaml.SafeLoader):
        """Safe YAML without anchors and aliases: a names file never needs them, and refusing them rules out alias
        bombs (a few lines that expand to gigabytes when walked)."""

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _AliasFound()
            return super().compose_node(parent, index)

    return NamesLoader


class _AliasFound(Exception):
    pass


def _flow_depth(text: str) -> int:
    """The deepest nesting of [ and { in `text` (brackets in quoted names counted too: a names file has few)."""
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def read_names(path: Path | str) -> list[str]:
    """Class names in id order from a names file: `.txt` one per line; `.yaml`/`.yml` a `names:` list or {id: name}
    mapping (ultralytics data yaml) or a bare list. Names are returned as written (stripped); label_map and the
    importers lower-case them. At most MAX_CLASSES names of at most MAX_NAME_CHARS characters, from a file of at most
    1 MB; YAML anchors and aliases are refused."""
    path = Path(path)
    text = _read_text(path, MAX_NAMES_BYTES, "class names file")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        if _flow_depth(text) > MAX_YAML_FLOW_DEPTH:
            raise _fail(path, f"not a class names file (YAML nested too deeply: more than {MAX_YAML_FLOW_DEPTH} "
                              "levels of [ or {)")
        try:
            raw = yaml.load(text, Loader=_no_alias_loader())   # noqa: S506 (a SafeLoader subclass)
        except _AliasFound:
            raise _fail(path, "YAML anchors and aliases (&name, *name) are not accepted in a class names file") \
                from None
        except RecursionError:
            raise _fail(path, "not a class names file (YAML nested too deeply)") from None
        except yaml.YAMLError as exc:
            raise _fail(path, f"not valid YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
                from None
        names = raw.get("names") if isinstance(raw, dict) else raw
        if isinstance(names, dict):
            by_id = {}
            for key, name in names.items():
                if isinstance(key, str) and key.strip().isdecimal() and len(key) <= 9:
                    by_id[int(key)] = name
                elif isinstance(key, int) and not isinstance(key, bool):
                    by_id[key] = name
                else:
                    by_id = None
                    break
            if by_id is None or sorted(by_id) != list(range(len(by_id))):
                raise _fail(path, "'names' keys must be the class ids 0..N-1")
            names = [by_id[i] for i in range(len(by_id))]
        if not isinstance(names, list):
            raise _fail(path, "expected a list of class names or a 'names:' entry")
        for index, name in enumerate(names):
            if isinstance(name, bool) or not isinstance(name, (str, int, float)):
                raise _fail(path, f"class {index} is {_clip(repr(name))}, not a name (quote names like yes/no)")
        names = [str(name).strip() for name in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise _fail(path, "lists no classes")
    if len(names) > MAX_CLASSES:
        raise _fail(path, f"lists {len(names)} classes, more than {MAX_CLASSES}")
    for index, name in enumerate(names):
        if not name or len(name) > MAX_NAME_CHARS or any(ch in name for ch in "\n\r\t\x00"):
            raise _fail(path, f"class {index} {_clip(repr(name))} is empty, longer than {MAX_NAME_CHARS} characters "
                              "or spans lines")
    return names


def find_names_file(labels_dir: Path | str) -> Path | None:
    """The first of NAMES_FILES in `labels_dir`, or None."""
    for candidate in NAMES_FILES:
        if (Path(labels_dir) / candidate).is_file():
            return Path(labels_dir) / candidate
    return None


# --------------------------------------------------------------------------------------------------------------------
# a folder


@dataclass
class LabelFileBoxes:
    """One image's boxes read from a label folder, not yet in a project: `kind` is the format they came from."""

    image: Path
    kind: str            # voc | yolo | xyc | coco
    width: int
    height: int
    cells: ImportedCells


def read_label_folder(images: Sequence[Path | str], labels_dir: Path | str, *, names: Sequence[str] | None = None,
                      label_map: LabelMap | None = None, point_label: str = "blast",
                      project_labels: Sequence[str] = ()) -> list[LabelFileBoxes]:
    """Read the label file of each image from `labels_dir` (the slow part of an import: files parsed, images opened
    for their size, points grown into boxes), touching no project, so that it can run off the UI thread. Per image
    stem the first of `<stem>.xml` (VOC), `<stem>.txt` (YOLO, classes `names`, default the folder's names file
    (NAMES_FILES), else `project_labels`) and `<stem>.xyc` (ALL-IDB points -> boxes) is used; a COCO json in
    `labels_dir` (`*.json`) covers the images it lists. Images without a label file are left out. A bad file raises
    LabelImportError naming it."""
    labels_dir = Path(labels_dir)
    coco: dict[str, tuple[int, int, ImportedCells]] = {}
    for path in sorted(labels_dir.glob("*.json")):
        coco.update(import_coco(path, label_map))
    yolo_names: list[str] | None = list(names) if names is not None else None

    def class_names() -> list[str]:   # read when a YOLO file needs them
        nonlocal yolo_names
        if yolo_names is None:
            names_file = find_names_file(labels_dir)
            yolo_names = read_names(names_file) if names_file is not None else list(project_labels)
        return yolo_names

    found: list[LabelFileBoxes] = []
    for image in map(Path, images):
        stem = image.stem
        if (labels_dir / f"{stem}.xml").is_file():
            _name, width, height, cells = import_voc(labels_dir / f"{stem}.xml", label_map)
            kind = "voc"
        elif (labels_dir / f"{stem}.txt").is_file() or (labels_dir / f"{stem}.xyc").is_file():
            from PIL import Image

            with Image.open(image) as im:
                width, height = im.size
                rgb = im.convert("RGB") if (labels_dir / f"{stem}.xyc").is_file() else None
            if (labels_dir / f"{stem}.txt").is_file():
                cells, kind = import_yolo(labels_dir / f"{stem}.txt", width, height, class_names(), label_map), "yolo"
            else:
                import numpy as np

                cells = import_points(np.asarray(rgb), read_points(labels_dir / f"{stem}.xyc"), point_label)[0]
                kind = "xyc"
        elif image.name in coco:
            width, height, cells = coco[image.name]
            kind = "coco"
        else:
            continue
        found.append(LabelFileBoxes(image, kind, width, height, cells))
    return found


def store_label_files(store, found: Sequence[LabelFileBoxes]) -> ImportCounts:
    """Put what read_label_folder found into a ProjectStore: each image's boxes replaced in one audited transaction,
    labels the project lacks added. Returns {image name: boxes imported} (with `.dropped`)."""
    out = ImportCounts()
    for item in found:
        for label in dict.fromkeys(c.label for c in item.cells):
            store.add_label(label)
        entry = store.add_image(item.image, item.width, item.height)
        store.replace_cells(entry.id, item.cells, f"import {item.kind}", "import")
        out[item.image.name] = len(item.cells)
        if getattr(item.cells, "dropped", 0):
            out.dropped[item.image.name] = item.cells.dropped
    return out


def import_label_folder(store, images: Sequence[Path | str], labels_dir: Path | str, *,
                        names: Sequence[str] | None = None, label_map: LabelMap | None = None,
                        point_label: str = "blast") -> ImportCounts:
    """Import the label file of each image from `labels_dir` into a ProjectStore (read_label_folder, then
    store_label_files; YOLO class names default to the project's labels). Returns {image name: boxes imported}
    (with `.dropped`: boxes entirely outside their image); images without a label file are left as they are."""
    found = read_label_folder(images, labels_dir, names=names, label_map=label_map, point_label=point_label,
                              project_labels=store.labels)
    return store_label_files(store, found)
