"""Session gallery with >= 5,000 real cells: how long it takes to fill, and how smoothly it scrolls.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gallery_bench.py RESULTS_JSON [--cells 5000] [--copies N]

RESULTS_JSON is a real analysis (e.g. `workbench analyze ../shared/datasets/all-idb/ALL_IDB1/im --out RUN`); its
images are repeated (each copy a symlink, so a distinct image of the session with real pixels) until the session
holds at least `--cells` cells. Measured, on the gallery widget the window docks (workbench.gui.session_gallery),
sized 1200 x 700:

- populate: the session's records are loaded and the three groups filled and laid out (model reset + layout);
- crops: cutting every cell's crop (each image decoded once), in the background worker's function;
- scroll: the largest group scrolled top to bottom in 60 px steps, each frame painted synchronously
  (viewport.repaint), once with no crop cut yet (placeholders + crop requests) and once with every crop cached;
  per-frame times: median, 95th percentile, max, and the share of frames over 16.7 ms (60 Hz);
- a reclassification: one cell changes label; the time until the groups show it (rows moved, not reset).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def frame_stats(times: list[float]) -> dict:
    ms = sorted(1000.0 * t for t in times)
    return {"frames": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2),
            "over_16ms": round(sum(m > 16.7 for m in ms) / len(ms), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--cells", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QThreadPool
    from PySide6.QtWidgets import QApplication

    from workbench.app.results import BatchResult, load_results
    from workbench.app.session import SessionModel
    from workbench.gui.session_gallery import CROP_PX, SessionGallery, cut_crops

    app = QApplication.instance() or QApplication([])
    source = [r for r in load_results(args.results).images if r.ok and r.cells]
    per_copy = sum(len(r.cells) for r in source)
    copies = -(-args.cells // per_copy)
    links = Path(tempfile.mkdtemp(prefix="gallery_bench_"))
    images = []
    for k in range(copies):
        folder = links / f"copy{k}"
        folder.mkdir()
        for result in source:
            link = folder / Path(result.image_path).name
            link.symlink_to(Path(result.image_path).resolve())
            images.append(replace(result, image_path=str(link), cells=list(result.cells)))
    batch = BatchResult(images=images)
    n_cells = sum(len(r.cells) for r in images)

    model = SessionModel(threshold=0.0)
    pool = QThreadPool()
    pool.setMaxThreadCount(1)
    gallery = SessionGallery(model, pool)
    gallery.resize(1200, 700)
    gallery.show()
    app.processEvents()

    start = time.perf_counter()
    model.load_batch(batch)
    gallery.refresh()
    for view in gallery.views.values():
        view.doItemsLayout()
    app.processEvents()
    populate = time.perf_counter() - start
    groups = {g: len(m.entries) for g, m in gallery.models.items()}
    biggest = max(gallery.views, key=lambda g: groups[g])
    view = gallery.views[biggest]

    def scroll_pass() -> list[float]:
        bar = view.verticalScrollBar()
        bar.setValue(0)
        times = []
        for value in range(0, bar.maximum() + 60, 60):
            t0 = time.perf_counter()
            bar.setValue(min(value, bar.maximum()))
            view.viewport().repaint()
            times.append(time.perf_counter() - t0)
        return times

    gallery.cache.max_running = 0          # placeholders only: no crop is cut during the first pass
    cold = scroll_pass()
    gallery.cache.max_running = 1
    start = time.perf_counter()
    by_path = {}
    for record in model.records:
        by_path[str(record.path)] = [tuple(c.xyxy) for c in record.result.cells]
    for path, boxes in by_path.items():
        gallery.cache.fill(cut_crops(path, boxes, CROP_PX, None))
    crops = time.perf_counter() - start
    warm = scroll_pass()

    record = model.records[len(model.records) // 2]
    target = record.result.cells[0]
    changed = replace(target, label="normal" if target.label == "blast" else "blast", reviewed=True)
    start = time.perf_counter()
    model.replace_cells(record, [changed] + record.result.cells[1:])
    gallery.refresh()
    app.processEvents()
    reclassify = time.perf_counter() - start

    report = {"cells": n_cells, "images": len(images), "groups": groups, "view": "1200 x 700, crops 64 px",
              "populate_s": round(populate, 3), "crops_cut_s": round(crops, 2),
              "crops_per_s": round(len(gallery.cache.crops) / crops, 1),
              "scroll_group": biggest, "scroll_placeholders": frame_stats(cold), "scroll_cached": frame_stats(warm),
              "reclassify_one_cell_s": round(reclassify, 4)}
    print(json.dumps(report, indent=2))
    gallery.cache.max_running = 0          # let the crop requests of the last frames finish before Qt goes
    pool.clear()
    pool.waitForDone()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
