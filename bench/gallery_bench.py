"""Session gallery with >= 5,000 real cells, timed in the window the user runs: how long opening the results takes
until the gallery shows every cell, and how smoothly it scrolls.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gallery_bench.py RESULTS_JSON [--cells 5000]
    xvfb-run -a .venv/bin/python bench/gallery_bench.py RESULTS_JSON            # a real X server

RESULTS_JSON is a real analysis (e.g. `workbench analyze ../shared/datasets/all-idb/ALL_IDB1/im --out RUN`); its
images are repeated (each copy a symlink, so a distinct image of the session with real pixels) until the session
holds at least `--cells` cells, and written as one results.json. A file written before results schema 3 gets what a
current analysis adds (the classifier's unidentified band from its manifest entry, nested boxes merged), so the
three groups are as a user sees them. Everything runs in the real main window (workbench.gui.main_window, 1600 x
1000, default settings, its session gallery docked at the bottom); settings and cases go to a temporary folder,
removed at the end. Measured:

- populate: `File -> Open results` (the window's open_paths on RESULTS_JSON, as the dialog calls it) until the
  gallery's groups hold every cell, are laid out to the last crop (Qt lays them out in batches over several
  event-loop turns) and the window has painted once;
- scroll while cutting: the largest group scrolled top to bottom in 60 px steps at 60 Hz, with no crop cut yet:
  the crops are cut by the window's own background cache while it scrolls (as a user meets a fresh session). Per
  frame, the UI thread's time: the synchronous repaint of the group plus the events handled (crops arriving), as
  wall time and as the UI thread's CPU time (the work itself, apart from waiting on a machine other programs keep
  busy); median, 95th percentile, max and the share of frames over 16.7 ms;
- crops: from the first frame of that pass, the time until the window's cache holds every crop of the session
  (the rest requested after the pass; crops per second);
- scroll cached: the same pass with every crop in the cache;
- reclassify: key `1` or `2` on a selected crop of the largest group (in the window: project store, undo stack,
  counts, case autosave) until the gallery shows the cell in its new group; the session's first change (which
  makes its case file, every image saved into it) and a later one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAME_S = 1.0 / 60.0


def frame_stats(times: list[float]) -> dict:
    ms = sorted(1000.0 * t for t in times)
    return {"frames": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2),
            "over_16ms": round(sum(m > 16.7 for m in ms) / len(ms), 3)}


def as_current_analysis(result, band, nested_ios):
    """A result written before schema 3 as the pipeline now gives it: cells in the band wait as unidentified and
    nested duplicate boxes are merged (workbench.app.pipeline does both the same way)."""
    from classification.band import in_band
    from workbench.app.nested import merge_nested

    cells = [replace(c, analysed_label=c.label, unidentified=in_band(c.p_blast, band)) for c in result.cells]
    cells, merged = merge_nested(cells, nested_ios)
    upgraded = replace(result, cells=cells, merged_duplicates=merged)
    upgraded.recount()
    return upgraded


def session_results(source: Path, n_cells: int, tmp: Path) -> tuple[Path, int, int]:
    """(results.json of the repeated session, its images, its cells)."""
    from classification.band import band_of
    from workbench.app.config import load_config
    from workbench.app.results import BatchResult, load_results
    from workbench.app.weights import Manifest

    batch = load_results(source)
    written_as = json.loads(source.read_text()).get("schema_version")
    results = [r for r in batch.images if r.ok and r.cells]
    if not results:
        raise SystemExit(f"{source}: no analysed image with cells")
    if written_as is not None and written_as < 3:
        entry = Manifest.load(REPO / "weights" / "manifest.yaml").by_name(results[0].classifier.name)
        band = band_of(getattr(entry, "unidentified_band", None))
        ios = load_config().detector.nested_ios
        results = [as_current_analysis(r, band, ios) for r in results]
        print(f"(schema {written_as} results: band {band} from the manifest, nested boxes merged at "
              f"{ios})", file=sys.stderr)
    per_copy = sum(len(r.cells) for r in results)
    images = []
    for k in range(-(-n_cells // per_copy)):
        folder = tmp / "images" / f"copy{k}"
        folder.mkdir(parents=True)
        for result in results:
            link = folder / Path(result.image_path).name
            link.symlink_to(Path(result.image_path).resolve())
            images.append(replace(result, image_path=str(link), cells=list(result.cells)))
    path = tmp / "session" / "results.json"
    path.parent.mkdir()
    path.write_text(BatchResult(images=images, created=batch.created, workbench_version=batch.workbench_version
                                ).to_json())
    return path, len(images), sum(len(r.cells) for r in images)


def wait_until(app, done, timeout_s: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out waiting for the window")
        app.processEvents()
        time.sleep(0.001)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--cells", type=int, default=5000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gallery_bench_"))
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path) -> int:
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["SMEAR_CASES_DIR"] = str(tmp / "cases")          # the window's cases, never the user's
    results_json, n_images, n_cells = session_results(args.results, args.cells, tmp)

    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from workbench.gui.app import make_app
    from workbench.gui.main_window import MainWindow
    from workbench.gui.settings_dialog import GuiSettings

    app = make_app([])
    store = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=GuiSettings.defaults(), store=store, eval_root=tmp / "no-runs")
    window.resize(1600, 1000)
    window.show()
    for _ in range(20):                       # shown, the first-start dock sizes applied
        app.processEvents()
        time.sleep(0.01)
    gallery = window.review_tools.gallery

    start = time.perf_counter()
    window.open_paths([results_json])
    opened = time.perf_counter() - start
    wait_until(app, lambda: sum(len(m.entries) for m in gallery.models.values()) == n_cells and all(
        view.rectForIndex(view.model().index(view.model().rowCount() - 1)).isValid()   # laid out to the last crop
        for view in gallery.views.values() if view.model().rowCount()))
    window.repaint()
    populate = time.perf_counter() - start
    groups = {g: len(m.entries) for g, m in gallery.models.items()}
    biggest = max(gallery.views, key=lambda g: groups[g])
    view = gallery.views[biggest]
    viewport = view.viewport()

    def scroll_pass() -> dict:
        bar = view.verticalScrollBar()
        bar.setValue(0)
        app.processEvents()
        times, cpu, value = [], [], 0
        while value < bar.maximum() + 60:
            t0, c0 = time.perf_counter(), time.thread_time()
            bar.setValue(min(value, bar.maximum()))
            value += 60
            viewport.repaint()
            app.processEvents()               # crops that arrived, their repaint requests
            busy = time.perf_counter() - t0
            times.append(busy)
            cpu.append(time.thread_time() - c0)
            time.sleep(max(0.0, FRAME_S - busy))    # the rest of the frame: the crop worker runs meanwhile
        # wall time per frame, and the UI thread's own CPU time (the work, without waiting for a busy machine)
        return {"wall": frame_stats(times), "ui_thread_cpu": frame_stats(cpu)}

    cache = gallery.cache
    cache.crops.clear()                       # the current image's crops may be cut already: none at the start
    start = time.perf_counter()
    cutting = scroll_pass()
    for record in window.model.records:
        cache.request(record)
    wait_until(app, lambda: len(cache.crops) >= n_cells or (not cache.pending and not cache.running), 600.0)
    crops = time.perf_counter() - start
    n_crops = len(cache.crops)
    cached = scroll_pass()

    model = gallery.models[biggest]

    def reclassify(row: int) -> float:
        """Key 1 / 2 on the crop in `row` of the largest group: seconds until the gallery shows its new group."""
        entry = model.entries[row]
        record, cell_id = entry.record, entry.cell.cell_id
        key, label = (Qt.Key.Key_2, "normal") if entry.cell.label == "blast" else (Qt.Key.Key_1, "blast")
        view.setFocus()
        view.selectionModel().clearSelection()
        view.setCurrentIndex(model.index(row))
        app.processEvents()
        start = time.perf_counter()
        QTest.keyClick(view, key)
        wait_until(app, lambda: any(e.record is record and e.cell.cell_id == cell_id and e.cell.label == label
                                    for e in gallery.models["blast" if label == "blast" else "non-blast"].entries))
        return time.perf_counter() - start

    first_change = reclassify(len(model.entries) // 2)     # the session's first change: its case file is made
    later_change = reclassify(len(model.entries) // 3)

    report = {"cells": n_cells, "images": n_images, "groups": groups,
              "window": "1600 x 1000, gallery dock %d x %d, group view %d x %d, crops 64 px" % (
                  gallery.width(), gallery.height(), viewport.width(), viewport.height()),
              "platform": app.platformName(), "load_average": [round(v, 2) for v in os.getloadavg()],
              "open_paths_returned_s": round(opened, 3), "populate_s": round(populate, 3),
              "scroll_group": biggest, "scroll_while_cutting": cutting,
              "crops_cut_s": round(crops, 2), "crops": n_crops, "crops_per_s": round(n_crops / crops, 1),
              "scroll_cached": cached, "reclassify_first_change_s": round(first_change, 3),
              "reclassify_later_change_s": round(later_change, 3)}
    print(json.dumps(report, indent=2))
    cache.max_running = 0                     # let the last crop requests finish before Qt goes
    window.io_pool.clear()
    window.io_pool.waitForDone()
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
