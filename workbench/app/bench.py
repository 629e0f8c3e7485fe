"""`workbench bench`: how fast the analysis runs on each backend, timed as the user runs it.

Every backend gets its own `SmearAnalyzer` (the loaders `analyze` uses) and runs the same inputs through
`SmearAnalyzer.iter_analyze`, the loop behind `analyze` and the GUI: decoding, the red-cell ruler, detection (tiled
when large), crops and classification, with the folder-run stage overlap. Single images are timed `repeat` times
after a warm-up run, the backends taking turns image by image (so a machine whose load changes during the run
treats them alike); per stage the median of the pipeline's own `timings_ms`, end to end the median wall time.
A folder is run once per backend after a warm-up image: images per second, wall clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from workbench.app.config import Settings, with_overrides
from workbench.core.errors import WorkbenchError
from workbench.core.inputs import ImageInput, collect_inputs

STAGES = ("load", "scale", "detect", "classify", "total")
REFERENCE = "torch"


@dataclass
class ImageTiming:
    backend: str
    image: str
    size: str
    n_tiles: int
    cells: int
    stages_ms: dict[str, float]      # medians of the pipeline's timings_ms
    wall_ms: float                   # median wall time of iter_analyze over the one image


@dataclass
class FolderTiming:
    backend: str
    folder: str
    images: int
    failed: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BenchReport:
    backends: dict[str, str] = field(default_factory=dict)   # asked -> what ran ("auto" -> "openvino/openvino")
    load_s: dict[str, float] = field(default_factory=dict)   # model loading per backend
    images: list[ImageTiming] = field(default_factory=list)
    folders: list[FolderTiming] = field(default_factory=list)
    threads: int = 0
    skipped: dict[str, str] = field(default_factory=dict)    # backend -> why it could not be timed


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


def run_bench(paths: list[Path], backends: list[str], config: Settings, repeat: int = 3,
              progress: Callable[[str], None] | None = None) -> BenchReport:
    from workbench.app.pipeline import SmearAnalyzer

    import torch

    say = progress or (lambda _: None)
    backends = [REFERENCE] + [b for b in dict.fromkeys(backends) if b != REFERENCE]
    report = BenchReport(threads=torch.get_num_threads())
    analyzers = {}
    for backend in backends:
        t0 = time.perf_counter()
        try:
            analyzer = SmearAnalyzer.from_config(with_overrides(config, {"detector": {"backend": backend},
                                                                         "classifier": {"backend": backend}}))
        except WorkbenchError as exc:
            if backend == REFERENCE:
                raise
            report.skipped[backend] = str(exc)   # e.g. no export of one model for this runtime: time the others
            say(f"{backend}: not timed ({exc})")
            continue
        report.load_s[backend] = round(time.perf_counter() - t0, 2)
        analyzers[backend] = analyzer
        report.backends[backend] = f"{analyzer.detector_info.backend}/{analyzer.classifier_info.backend}"
        say(f"{backend}: detector on {analyzer.detector_info.backend}, classifier on "
            f"{analyzer.classifier_info.backend}, loaded in {report.load_s[backend]:.1f} s")
    for path in paths:
        if Path(path).is_dir():
            report.folders += _time_folder(Path(path), analyzers, config, say)
        else:
            report.images += _time_image(Path(path), analyzers, repeat, say)
    return report


def _run(analyzer, items: list[ImageInput]):
    analyzer.new_case()   # each run starts as a new case: no pixel size remembered from another run
    t0 = time.perf_counter()
    results = [r for r, _ in analyzer.iter_analyze(items)]
    return results, 1000 * (time.perf_counter() - t0)


def _time_image(path: Path, analyzers: dict, repeat: int, say) -> list[ImageTiming]:
    stages = {b: {s: [] for s in STAGES} for b in analyzers}
    walls: dict[str, list[float]] = {b: [] for b in analyzers}
    last = {}
    for run in range(repeat + 1):   # run 0 warms up (first calls allocate buffers, fill caches)
        for backend, analyzer in analyzers.items():
            results, wall = _run(analyzer, [ImageInput(path)])
            result = results[0]
            if result.error:
                raise WorkbenchError(f"bench: {result.error}")
            last[backend] = result
            if run:
                walls[backend].append(wall)
                for stage in STAGES:
                    stages[backend][stage].append(float(result.timings_ms.get(stage, 0.0)))
    out = []
    for backend in analyzers:
        r = last[backend]
        out.append(ImageTiming(backend, path.name, f"{r.width}x{r.height}", r.n_tiles, len(r.cells),
                               {s: _median(v) for s, v in stages[backend].items()}, _median(walls[backend])))
        say(f"{path.name} {backend}: {out[-1].wall_ms:.0f} ms")
    return out


def _time_folder(folder: Path, analyzers: dict, config: Settings, say) -> list[FolderTiming]:
    items = collect_inputs([folder], config.images.extensions)
    if not items or all(i.error for i in items):
        raise WorkbenchError(f"bench: no images in {folder}")
    out = []
    for backend, analyzer in analyzers.items():
        _run(analyzer, [next(i for i in items if i.error is None)])   # warm-up
        results, wall = _run(analyzer, items)
        out.append(FolderTiming(backend, str(folder), len(results), sum(1 for r in results if r.error),
                                wall / 1000))
        say(f"{folder} {backend}: {out[-1].images_per_s:.2f} images/s")
    return out


def speedup(reference: float, other: float) -> float:
    return reference / other if other > 0 else 0.0
