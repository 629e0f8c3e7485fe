"""Loading smear images safely: every way a file can be bad becomes one clear ImageLoadError.

Images come back as RGB uint8 arrays of shape (H, W, 3) in original pixels. 16-bit images are mapped to 8 bit by
value (x / 257, so 65535 -> 255); grayscale is repeated into three channels; transparency is composited on white
(the background of a smear).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from workbench.errors import ImageLoadError

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
DEFAULT_MAX_PIXELS = 100_000_000

# We enforce our own, configurable pixel limit before decoding; PIL's bomb check would fire first otherwise.
Image.MAX_IMAGE_PIXELS = None


def _pil_open(path: Path):
    """PIL's own Image.open. ultralytics replaces it with a wrapper that, on an unrecognised file, tries to install
    and load a HEIF plugin at run time (pip, network); a text file named .jpg must simply be refused instead."""
    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        opener = opener.__globals__.get("_image_open", opener)
    return opener(path)


@dataclass(frozen=True)
class ImageInput:
    """A path given by the user, or found in a folder, with the reason it cannot be used (if any)."""

    path: Path
    error: str | None = None


def collect_inputs(paths: Iterable[Path | str], extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> list[ImageInput]:
    """Expand files and folders (sorted, non-recursive) into image inputs. Nothing is dropped silently: a folder
    that cannot be read or holds no images is returned as an input with an error, so a batch can report it."""
    extensions = tuple(e.lower() for e in extensions)
    inputs: list[ImageInput] = []
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # e.g. name too long: load_image reports it, like a missing file
            is_dir = False
            log.debug("cannot stat %s (%s)", path, exc)
        if is_dir:
            try:
                entries = sorted(p for p in (Path(e.path) for e in os.scandir(path)) if p.is_file())
            except OSError as exc:
                inputs.append(ImageInput(path, f"{path}: cannot read folder ({exc.strerror or exc})"))
                continue
            images = [p for p in entries if p.suffix.lower() in extensions]
            if not images:
                inputs.append(ImageInput(path, f"{path}: folder holds no images ({', '.join(extensions)})"))
            inputs.extend(ImageInput(p) for p in images)
        else:
            inputs.append(ImageInput(path))
    return inputs


def _check_file(path: Path) -> None:
    try:
        _check_file_unguarded(path)
    except OSError as exc:  # e.g. file name too long, I/O error while reading the folder
        raise ImageLoadError(f"{path}: cannot access file ({exc.strerror or exc})") from None


def _check_file_unguarded(path: Path) -> None:
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image")
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


def _load_tiff(path: Path, max_pixels: int | None) -> np.ndarray | None:
    """Pixels of the first page as stored, or None for PIL to convert (palette, CMYK, YCbCr, Lab, ...)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        shape = page.shape
        height, width = (shape[0], shape[1]) if page.planarconfig != 2 or len(shape) < 3 else (shape[1], shape[2])
        _check_pixels(path, width, height, max_pixels)
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
    """(width, height) from the file header, without decoding pixels."""
    with _pil_open(path) as image:
        return image.size


def load_image(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into RGB uint8 (H, W, 3), or raise ImageLoadError saying what is wrong with it."""
    path = Path(path)
    _check_file(path)
    tiff_error: Exception | None = None
    rgb = None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                raw = _load_tiff(path, max_pixels)
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
        rgb = _load_with_pil(path, max_pixels, tiff_error)
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageLoadError(f"{path}: image is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb


def _load_with_pil(path: Path, max_pixels: int | None, tiff_error: Exception | None) -> np.ndarray:
    try:
        with _pil_open(path) as image:
            _check_pixels(path, image.width, image.height, max_pixels)
            image.load()  # decodes fully: raises on truncated or corrupt data
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
