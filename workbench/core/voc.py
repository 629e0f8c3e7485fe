"""Pascal VOC XML annotations: parsing into plain records, and writing them back (atomically).

Coordinates are kept as the file gives them (VOC pixel coordinates, x to the right, y down, `xmin ymin xmax ymax`),
as floats; no 1-based shift is applied. Nothing is validated geometrically here: a box that is empty, inverted or
outside the image parses fine, so that a converter can count and report such defects (see workbench.builders.bccd).
Structural problems (not XML, missing or non-numeric fields) raise LabelFileError naming the file.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from workbench.core.errors import LabelFileError
from workbench.core.fileio import write_atomic

__all__ = ["VocAnnotation", "VocObject", "parse_voc", "write_voc"]

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
_ENTITY = "<!ENTITY"


@dataclass(frozen=True)
class VocObject:
    """One labelled box: the class name exactly as written in the file, and (xmin, ymin, xmax, ymax) in pixels."""

    name: str
    xyxy: tuple[float, float, float, float]


@dataclass
class VocAnnotation:
    """One VOC annotation file: the image file name, the image size in pixels and its boxes in file order."""

    filename: str
    width: int
    height: int
    objects: list[VocObject] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# parsing


def parse_voc(path: str | os.PathLike) -> VocAnnotation:
    """Read a Pascal VOC XML file. Raises LabelFileError (a ValueError) naming `path` if the file cannot be read, is
    not well-formed XML, is not an <annotation>, or lacks filename, size/width, size/height, an object's name or
    one of its bndbox coordinates, or if a number is not a finite number (or the size not a positive integer)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot read VOC annotation ({exc.strerror or exc})") from exc
    # annotation files never need entities; refusing them rules out entity-expansion bombs (also spelt in UTF-16/32)
    if any(_ENTITY.encode(codec) in data for codec in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")):
        raise LabelFileError(f"{path}: VOC annotation declares XML entities, which are not accepted")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise LabelFileError(f"{path}: not well-formed XML ({_one_line(exc)})") from None
    except (LookupError, ValueError) as exc:  # an unknown encoding="..." (LookupError), bytes it cannot decode
        raise LabelFileError(f"{path}: unreadable XML: {_one_line(exc)}") from None
    except RecursionError:
        raise LabelFileError(f"{path}: XML nested too deeply") from None
    if root.tag != "annotation":
        raise LabelFileError(f"{path}: root element is <{_clip(root.tag)}>, expected <annotation> (Pascal VOC)")

    filename = _text(root, "filename", path)
    width = _size(root, "size/width", path)
    height = _size(root, "size/height", path)
    objects = []
    for index, obj in enumerate(root.findall("object")):
        where = f"object {index + 1}"
        name = _text(obj, "name", path, where)
        where = f"{where} ({_clip(name)})"
        box = obj.find("bndbox")
        if box is None:
            raise LabelFileError(f"{path}: {where} has no <bndbox>")
        xyxy = tuple(_number(box, key, path, f"{where} bndbox") for key in _BOX_KEYS)
        objects.append(VocObject(name=name, xyxy=xyxy))  # type: ignore[arg-type]
    return VocAnnotation(filename=filename, width=width, height=height, objects=objects)


def _clip(text: str, limit: int = 60) -> str:
    """`text` for an error message: on one line, at most `limit` characters (messages must fit on one line, whatever
    the file holds)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _one_line(exc: BaseException, limit: int = 160) -> str:
    return _clip(str(exc), limit)


def _text(element: ET.Element, key: str, path: Path, where: str = "") -> str:
    value = element.findtext(key)
    if value is None or not value.strip():
        what = f"{where} " if where else ""
        raise LabelFileError(f"{path}: {what}missing or empty <{key}>")
    return value.strip()


def _number(element: ET.Element, key: str, path: Path, where: str = "") -> float:
    text = _text(element, key, path, where)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        what = f"{where} " if where else ""
        raise LabelFileError(f"{path}: {what}<{key}> is {_clip(text)!r}, not a finite number")
    return value


def _size(element: ET.Element, key: str, path: Path) -> int:
    value = _number(element, key, path)
    if value <= 0 or not value.is_integer():
        raise LabelFileError(f"{path}: <{key}> is {value:g}, expected a positive whole number of pixels")
    return int(value)


# --------------------------------------------------------------------------------------------------------------------
# writing


def write_voc(path: str | os.PathLike, annotation: VocAnnotation) -> Path:
    """Write `annotation` as Pascal VOC XML to `path` atomically (a temporary file in the same folder, then
    os.replace), creating the folder if needed. Whole-number coordinates are written as integers, others with
    enough digits to read back exactly. Raises ValueError for an annotation that cannot be written as valid VOC."""
    path = Path(path)
    _check_writable(annotation)
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = annotation.filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(annotation.width)
    ET.SubElement(size, "height").text = str(annotation.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = obj.name
        ET.SubElement(element, "pose").text = "Unspecified"
        ET.SubElement(element, "truncated").text = "0"
        ET.SubElement(element, "difficult").text = "0"
        box = ET.SubElement(element, "bndbox")
        for key, value in zip(_BOX_KEYS, obj.xyxy):
            ET.SubElement(box, key).text = _format_number(value)
    ET.indent(root, space="\t")
    payload = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"

    write_atomic(path, payload)
    return path


def _check_writable(annotation: VocAnnotation) -> None:
    if not annotation.filename or not annotation.filename.strip():
        raise ValueError("VOC annotation needs a non-empty filename")
    for key in ("width", "height"):
        value = getattr(annotation, key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"VOC annotation {key} must be a positive int, got {value!r}")
    for index, obj in enumerate(annotation.objects):
        if not obj.name or not obj.name.strip():
            raise ValueError(f"VOC object {index + 1} needs a non-empty name")
        if len(obj.xyxy) != 4 or not all(math.isfinite(float(v)) for v in obj.xyxy):
            raise ValueError(f"VOC object {index + 1} ({obj.name}) needs four finite coordinates, got {obj.xyxy!r}")


def _format_number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
