"""Exports from the GUI, in the CLI's layout and schema: `results.json`, `cells.csv` and `<image>.annotated.png`.

Qt-free, so it runs in a background task. The BatchResult comes from `SessionModel.to_batch` (what the technician
sees: display threshold, sample ID, note, review).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from workbench.results import BatchResult, write_atomic

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


def export_batch(batch: BatchResult, out: Path, png: bool = True, font_scale: float = 0.6,
                 max_pixels: int | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> list[Path]:
    """Write results.json and cells.csv (and an annotated PNG per analysed image) into `out`; returns the files
    written. An image that can no longer be read gets no PNG; its reason is raised after the other files are
    written."""
    from workbench.cli import _png_names   # the CLI's naming, so GUI and CLI exports look the same
    from workbench.images import load_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "cells.csv"]
    write_atomic(written[0], batch.to_json())
    write_atomic(written[1], batch.to_csv())
    if not png:
        return written
    from workbench.errors import ImageLoadError
    from workbench.render import render_result, write_png

    images = [r for r in batch.images if r.ok]
    names = _png_names([Path(r.image_path) for r in batch.images])
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
        from workbench.errors import WorkbenchError

        raise WorkbenchError(f"results written to {out}, but no PNG for {len(problems)} image(s): {problems[0]}")
    return written
