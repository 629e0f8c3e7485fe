"""The outputs of an analysis, written the same way by `workbench analyze` and the GUI's export: `results.json`,
`cells.csv` and `<image name>.annotated.png` per image.

`RunWriter` writes as results arrive: each image's PNG as soon as it is analysed, and results.json / cells.csv
rewritten atomically after every image, so an interrupted folder run keeps everything it finished and a late
failure (a PNG that cannot be written, a full disk) loses nothing already done.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from workbench import __version__
from workbench.app.results import BatchResult, SmearResult, write_atomic

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
PNG_SUFFIX = ".annotated.png"
MAX_NAME_BYTES = 200   # file systems allow 255 bytes per name; the rest of the name is left for the suffix


def png_names(paths: Iterable[Path]) -> dict[Path, str]:
    """One PNG name per input: `<stem>.annotated.png`; inputs with the same file name in different folders get a
    numeric suffix, and a stem too long for the file system is cut (on a character boundary) and made unique."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem = path.stem
        while len(stem.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            stem = stem[:-1]
        base, n = f"{stem}.annotated", 1
        name = f"{base}.png"
        while name in used:
            n += 1
            name = f"{base}-{n}.png"
        used.add(name)
        names[path] = name
    return names


class RunWriter:
    """Writes one run's outputs into `out` as results arrive (see the module docstring)."""

    def __init__(self, out: Path, inputs: Iterable[Path], png: bool = True, font_scale: float = 0.6,
                 created: str | None = None) -> None:
        self.out = Path(out)
        self.png = png
        self.font_scale = font_scale
        self.names = png_names(list(inputs))
        self.batch = BatchResult(created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 workbench_version=__version__)
        self.written: list[Path] = []
        self.png_errors: list[str] = []
        self._remove_previous_pngs()

    def _remove_previous_pngs(self) -> None:
        """A run into a folder that holds an earlier run's outputs removes that run's annotated PNGs (the ones its
        results.json names), so no PNG is left beside a results.json that does not list its image. Nothing else is
        touched."""
        previous = self.out / "results.json"
        if not previous.is_file():
            return
        try:
            from workbench.app.results import load_results

            old = load_results(previous)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is not a results file of this program: leaving the folder's PNGs alone", previous)
            return
        for name in png_names([Path(r.image_path) for r in old.images]).values():
            stale = self.out / name
            if stale.is_file() and stale.name.endswith(PNG_SUFFIX):
                stale.unlink()

    def add(self, result: SmearResult, image: np.ndarray | None) -> None:
        """One finished image: its PNG (a PNG that cannot be written is recorded, not raised), then the tables."""
        if self.png and result.ok and image is not None:
            self._write_png(result, image)
        self.batch.images.append(result)
        self.flush()

    def _write_png(self, result: SmearResult, image: np.ndarray) -> None:
        from workbench.app.render import render_result, write_png

        target = self.out / self.names.get(Path(result.image_path), Path(result.image_path).stem + PNG_SUFFIX)
        try:
            write_png(target, render_result(image, result, self.font_scale))
            self.written.append(target)
        except OSError as exc:
            message = f"{result.image_path}: annotated PNG not written ({exc.strerror or exc})"
            self.png_errors.append(message)
            log.warning("%s", message)

    def flush(self) -> None:
        write_atomic(self.out / "results.json", self.batch.to_json())
        write_atomic(self.out / "cells.csv", self.batch.to_csv())


def export_batch(batch: BatchResult, out: Path, png: bool = True, font_scale: float = 0.6,
                 max_pixels: int | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> list[Path]:
    """Write an existing batch (the GUI's session) into `out` in the same layout; returns the files written. An
    image that can no longer be read gets no PNG; its reason is raised after the other files are written."""
    from workbench.core.errors import ImageLoadError, WorkbenchError
    from workbench.core.images import load_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "cells.csv"]
    write_atomic(written[0], batch.to_json())
    write_atomic(written[1], batch.to_csv())
    if not png:
        return written
    from workbench.app.render import render_result, write_png

    images = [r for r in batch.images if r.ok]
    names = png_names([Path(r.image_path) for r in batch.images])
    problems = []
    for done, result in enumerate(images, start=1):
        if cancel is not None and cancel():
            break
        try:
            image = load_image(result.image_path, max_pixels)
        except ImageLoadError as exc:
            problems.append(str(exc))
            continue
        target = out / names[Path(result.image_path)]
        write_png(target, render_result(image, result, font_scale))
        written.append(target)
        if progress is not None:
            progress(done, len(images))
    if problems:
        raise WorkbenchError(f"results written to {out}, but no PNG for {len(problems)} image(s): {problems[0]}")
    return written
