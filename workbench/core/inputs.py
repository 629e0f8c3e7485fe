"""Which files are smear images: THE list of image file types the app opens, and the expansion of the user's files
and folders into image inputs (with the reason an input cannot be used). No numpy, no Pillow: the window lists a
folder's images before anything decodes one."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

# THE list of image file types the app opens (analyze, eval, crop builds, the GUI); cfg/default.yaml's
# images.extensions starts from it (a test keeps the two equal)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
DEFAULT_EXTENSIONS = IMAGE_EXTENSIONS


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
                entries = sorted(Path(e.path) for e in os.scandir(path))
            except OSError as exc:
                inputs.append(ImageInput(path, f"{path}: cannot read folder ({exc.strerror or exc})"))
                continue
            found = [p for p in entries if p.suffix.lower() in extensions and not p.name.endswith(OUTPUT_SUFFIX)]
            if not found:
                inputs.append(ImageInput(path, f"{path}: folder holds no images ({', '.join(extensions)})"))
            for p in found:   # an image-named entry that is not a regular file is listed, with why, never dropped
                inputs.append(ImageInput(p, not_a_file_reason(p)))
            skipped = [p for p in entries if p.suffix.lower() not in extensions and p.is_file()
                       and p.suffix.lower() in OTHER_IMAGE_SUFFIXES]
            inputs.extend(ImageInput(p, f"{p}: {p.suffix} images are not analysed (allowed: {', '.join(extensions)})")
                          for p in skipped)
        else:
            inputs.append(ImageInput(path))
    return inputs


OUTPUT_SUFFIX = ".annotated.png"   # the annotated PNGs the app writes: never taken for smears in a later run
OTHER_IMAGE_SUFFIXES = (".gif", ".heic", ".heif", ".jp2", ".ico", ".eps", ".ps", ".pdf", ".svg", ".avif", ".ppm",
                        ".pgm", ".pbm", ".tga", ".psd")


def not_a_file_reason(path: Path) -> str | None:
    """Why `path` must not be opened as an image (missing, a folder, a pipe, device or socket), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:   # a dangling link, a link loop
        return f"{path}: cannot access file ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"{path}: is a folder, not an image"
    if not stat.S_ISREG(mode):
        return f"{path}: not a regular file (a pipe, device or socket), not opened"
    return None
