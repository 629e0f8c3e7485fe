"""Loading smear images safely: every way a file can be bad becomes one clear ImageLoadError.

Images come back as RGB uint8 arrays of shape (H, W, 3) in original pixels, turned upright by their EXIF
orientation (as every viewer and the GUI show them). 16-bit images are mapped to 8 bit by value (x / 257, so 65535
-> 255); grayscale is repeated into three channels; transparency is composited on white (the background of a smear).

Every file is treated as hostile: only regular files are opened (a FIFO or a device would block or never end),
only the formats below are decoded (Pillow would otherwise run Ghostscript on a PostScript file, whatever its
name), and the decoded size in bytes (width x height x bands x bytes per sample, from the header) is checked
against a budget before any pixel is decoded, so a small compressed file cannot take gigabytes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from workbench.core.errors import ImageLoadError
# THE list of image file types and the folder expansion live in workbench.core.inputs (no numpy / Pillow there, so
# the window starts without them); re-exported here for the callers that load images too
from workbench.core.inputs import (DEFAULT_EXTENSIONS, IMAGE_EXTENSIONS, OTHER_IMAGE_SUFFIXES,  # noqa: F401
                                   OUTPUT_SUFFIX, ImageInput, collect_inputs, not_a_file_reason)

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 1 << 30        # decoded size budget: 1 GiB (a 100 MP RGB image is 300 MB)
# The Pillow formats we decode (by content, not by extension): never EPS / PS (Ghostscript), PDF, or any plugin
# that shells out.
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
_BYTES_PER_SAMPLE = {"1": 1, "L": 1, "P": 1, "RGB": 1, "RGBA": 1, "LA": 1, "CMYK": 1, "YCbCr": 1, "LAB": 1, "HSV": 1,
                     "I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "RGBX": 1, "RGBa": 1, "La": 1,
                     "PA": 1}

# We enforce our own, configurable pixel limit before decoding; PIL's bomb check would fire first otherwise.
Image.MAX_IMAGE_PIXELS = None


def pil_open(path: Path):
    """PIL's own Image.open, restricted to ALLOWED_FORMATS, on a regular file only. (ultralytics replaces
    Image.open with a wrapper that, on an unrecognised file, tries to install and load a HEIF plugin at run time;
    a text file named .jpg must simply be refused instead.)"""
    _require_regular_file(Path(path))
    Image.init()   # registers every plugin (opening still only tries ALLOWED_FORMATS)
    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        opener = opener.__globals__.get("_image_open", opener)
    return opener(path, formats=ALLOWED_FORMATS)


def _require_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it: reading a FIFO blocks forever, /dev/zero never
    ends. Symlinks are followed (a link to a regular file is fine)."""
    reason = not_a_file_reason(path)
    if reason is not None:
        raise ImageLoadError(reason)


def decoded_bytes(image) -> int:
    """What decoding a Pillow image (opened, header read) will take in memory, in bytes."""
    bands = len(image.getbands())
    return int(image.width) * int(image.height) * bands * _BYTES_PER_SAMPLE.get(image.mode, 4)


def _check_file(path: Path) -> None:
    try:
        _check_file_unguarded(path)
    except OSError as exc:  # e.g. file name too long, I/O error while reading the folder
        raise ImageLoadError(f"{path}: cannot access file ({exc.strerror or exc})") from None


def _check_file_unguarded(path: Path) -> None:
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found")
    _require_regular_file(path)
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageLoadError(f"{path}: permission denied")


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels and width * height > max_pixels:
        raise ImageLoadError(
            f"{path}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of {max_pixels / 1e6:.1f} MP "
            "(images.max_pixels in the config)"
        )


def _check_bytes(path: Path, nbytes: int, max_bytes: int | None) -> None:
    if max_bytes and nbytes > max_bytes:
        raise ImageLoadError(f"{path}: decoding would take {nbytes / 2**20:.0f} MiB, over the budget of "
                             f"{max_bytes / 2**20:.0f} MiB (images.max_bytes in the config)")


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """Any decoded image array (gray, gray+alpha, RGB, RGBA; 8/16-bit int or float) -> RGB uint8."""
    if array.ndim not in (2, 3):
        raise ValueError(f"unsupported image array shape {array.shape}")
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar TIFF (C, H, W)
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) + 128) // 257
    elif array.dtype in (np.int16, np.int32, np.uint32):
        array = np.clip(array, 0, None).astype(np.float64) * (255.0 / max(float(array.max()), 1.0))
    elif np.issubdtype(array.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.nan_to_num(array) * scale
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)  # round, as the 16-bit mapping does, rather than truncate
    array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels in (2, 4):
        colour, alpha = array[:, :, :-1].astype(np.float32), array[:, :, -1:].astype(np.float32) / 255.0
        composited = colour * alpha + 255.0 * (1.0 - alpha)
        array = np.clip(composited + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array, 3, axis=2) if channels == 2 else np.ascontiguousarray(array)
    if channels == 3:
        return np.ascontiguousarray(array)
    raise ValueError(f"unsupported channel count {channels}")


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _load_tiff(path: Path, max_pixels: int | None, max_bytes: int | None) -> np.ndarray | None:
    """Pixels of the first page as stored, or None for PIL to convert (palette, CMYK, YCbCr, Lab, ...)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        shape = page.shape
        height, width = (shape[0], shape[1]) if page.planarconfig != 2 or len(shape) < 3 else (shape[1], shape[2])
        _check_pixels(path, width, height, max_pixels)
        # to_rgb8 works in float64 for float / 32-bit data: count that copy too
        item = max(page.dtype.itemsize if page.dtype is not None else 8, 1)
        working = 8 if item > 2 or (page.dtype is not None and page.dtype.kind == "f") else item
        _check_bytes(path, int(np.prod(shape)) * max(item, working), max_bytes)
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB: the samples are the colours
            return None
        data = page.asarray()
        if photometric == 0:  # MINISWHITE: 0 is white
            if data.dtype == np.bool_:
                return ~data
            if not np.issubdtype(data.dtype, np.unsignedinteger):
                return None
            return data.dtype.type((1 << int(page.bitspersample)) - 1) - data
        return data


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as load_image returns the image (EXIF orientation applied), from the header only."""
    with pil_open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
        return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decode an image file into RGB uint8 (H, W, 3), upright by its EXIF orientation, or raise ImageLoadError
    saying what is wrong with it."""
    path = Path(path)
    _check_file(path)
    tiff_error: Exception | None = None
    rgb = None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                raw = _load_tiff(path, max_pixels, max_bytes)
            except ImageLoadError:
                raise
            except Exception as exc:  # tifffile cannot read it: let PIL name the problem (e.g. not a TIFF at all)
                log.debug("tifffile failed on %s (%s), trying PIL", path, exc)
                tiff_error, raw = exc, None
            if raw is not None:
                rgb = to_rgb8(raw)
    except ImageLoadError:
        raise
    except Exception as exc:
        raise ImageLoadError(f"{path}: cannot decode image ({exc})") from None
    if rgb is None:
        rgb = _load_with_pil(path, max_pixels, max_bytes, tiff_error)
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageLoadError(f"{path}: image is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb


def _load_with_pil(path: Path, max_pixels: int | None, max_bytes: int | None,
                   tiff_error: Exception | None) -> np.ndarray:
    from PIL import ImageOps

    try:
        with pil_open(path) as image:
            _check_pixels(path, image.width, image.height, max_pixels)
            # a 16-bit or float image is converted through float arrays: count them (x2) in the budget
            _check_bytes(path, decoded_bytes(image) * (2 if image.mode in ("I", "F") or "16" in image.mode else 1),
                         max_bytes)
            image.load()  # decodes fully: raises on truncated or corrupt data
            image = ImageOps.exif_transpose(image)   # upright, as viewers and the GUI show it
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                raw = np.asarray(image, dtype=np.uint16)
            elif image.mode in ("I", "F"):
                raw = np.asarray(image)
            elif image.mode in ("RGB", "RGBA", "L", "LA"):
                raw = np.asarray(image)
            elif "A" in image.getbands() or image.info.get("transparency") is not None:
                raw = np.asarray(image.convert("RGBA"))
            else:
                raw = np.asarray(image.convert("RGB"))
        return to_rgb8(raw)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        if tiff_error is not None and _is_tiff(path):  # a TIFF header, but neither reader can use the file
            raise ImageLoadError(f"{path}: TIFF file is truncated or corrupt ({tiff_error})") from None
        raise ImageLoadError(f"{path}: not an image file (unrecognised format)") from None
    except OSError as exc:
        message = str(exc)
        if "truncated" in message.lower():
            raise ImageLoadError(f"{path}: image file is truncated or corrupt") from None
        raise ImageLoadError(f"{path}: cannot decode image ({message})") from None
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ImageLoadError(f"{path}: cannot decode image ({exc})") from None
    except Exception as exc:  # decoders raise IndexError, struct.error, ... on malformed data
        raise ImageLoadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
