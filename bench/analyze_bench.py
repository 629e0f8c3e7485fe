"""Where does `workbench analyze` spend its time? One run, same images, three timings:

1. bare ultralytics `YOLO.predict` on each whole image (no tiling, no crops) — the floor for detection;
2. EfficientNet-B3 on the crops of the detected cells (batched, as the pipeline does);
3. the whole `SmearAnalyzer.analyze_image` (load, detect with tiling when the image is large, crop, classify).

It prints per-image milliseconds and the ratio analyze / (bare predict + B3). Large images make the ratio grow,
since analyze detects them at native resolution in tiles while bare predict shrinks them to one 640 px input.

    .venv/bin/python bench/analyze_bench.py                      # shipped weights, sample + one ALL-IDB1 smear
    .venv/bin/python bench/analyze_bench.py IMG... --detector W --classifier W --conf 0.25
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workbench.app.config import load_config  # noqa: E402
from workbench.core.images import load_image  # noqa: E402
from workbench.app.pipeline import SmearAnalyzer  # noqa: E402


def default_images() -> list[Path]:
    images = sorted((REPO / "datasets" / "sample" / "images").glob("*.jpg"))
    datasets = Path(os.environ.get("SMEAR_DATASETS", REPO.parent / "shared" / "datasets"))
    large = datasets / "all-idb" / "ALL_IDB1" / "im" / "Im048_1.jpg"
    return images + ([large] if large.exists() else [])


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - t0))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--detector")
    parser.add_argument("--classifier")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median is reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    args = parser.parse_args()
    images = args.images or default_images()
    config = load_config(overrides={"detector": {"weights": args.detector, "conf": args.conf},
                                    "classifier": {"weights": args.classifier}})
    analyzer = SmearAnalyzer.from_config(config)
    yolo = analyzer.detector.model
    det = config["detector"]
    torch = __import__("torch")
    threads = args.threads
    torch.set_num_threads(threads)

    def bare_predict(bgr):  # ultralytics resets torch's thread count on CPU; put it back as the pipeline does
        yolo.predict(bgr, conf=det["conf"], iou=det["iou"], imgsz=det["imgsz"], device=det["device"], verbose=False)
        torch.set_num_threads(threads)

    print(f"detector {analyzer.detector_info.name} ({analyzer.detector_info.sha256[:12]}), classifier "
          f"{analyzer.classifier_info.name} ({analyzer.classifier_info.sha256[:12]}), conf {args.conf}, "
          f"torch threads {threads}, median of {args.repeat}")
    print(f"{'image':<22}{'size':>11}{'tiles':>6}{'cells':>6}{'bare predict':>14}{'B3 crops':>10}"
          f"{'analyze':>10}{'ratio':>7}")
    totals = [0.0, 0.0, 0.0]
    for path in images:
        image = load_image(path)
        bgr = image[:, :, ::-1].copy()
        analyzer.analyze_image(path)  # warm-up: first calls build kernels / caches
        bare = timed(lambda: bare_predict(bgr), args.repeat)
        result = analyzer.analyze_image(path)
        boxes = [c.xyxy for c in result.cells]
        crops = __import__("workbench.core.crops", fromlist=["crop_cells"]).crop_cells(
            image, boxes, config["classifier"]["margin"], analyzer.classifier.input_size)
        b3 = timed(lambda: analyzer.classifier.predict_proba(crops), args.repeat)
        whole = timed(lambda: analyzer.analyze_image(path), args.repeat)
        ratio = whole / max(bare + b3, 1e-9)
        totals = [totals[0] + bare, totals[1] + b3, totals[2] + whole]
        print(f"{path.name:<22}{result.width:>5}x{result.height:<5}{result.n_tiles:>6}{len(boxes):>6}"
              f"{bare:>12.0f}ms{b3:>8.0f}ms{whole:>8.0f}ms{ratio:>7.2f}")
    print(f"{'total':<22}{'':>11}{'':>6}{'':>6}{totals[0]:>12.0f}ms{totals[1]:>8.0f}ms{totals[2]:>8.0f}ms"
          f"{totals[2] / max(totals[0] + totals[1], 1e-9):>7.2f}")


if __name__ == "__main__":
    main()
