"""How far the default classifier's p(blast) moves when a cell's box moves by one pixel, on analysed images.

For every cell of one or more `results.json` runs (`workbench analyze` or `workbench eval pipeline --out RUN`), the
crop is cut again, as the analysis cuts it (same pixel size), from the box moved by 1 px in each of the 8 directions,
and classified; the spread is the largest minus the smallest p(blast) of those 8. A one-pixel move shifts the
fixed-field crop window by at most one pixel; a classifier that sees cells should hardly notice it.

    .venv/bin/python scripts/classifier_shift_stability.py RUN [RUN ...] [--px 1] [--d4]

`--d4` measures a candidate remedy instead: p(blast) averaged over the 8 flips and quarter turns of each crop (a
cell has no up or left), which the analysis does not do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders holding a results.json")
    parser.add_argument("--px", type=float, default=1.0, help="how far each box is moved (default 1 px)")
    parser.add_argument("--d4", action="store_true", help="average p(blast) over the 8 flips / quarter turns")
    args = parser.parse_args(argv)

    from workbench.app.config import load_config
    from workbench.app.pipeline import SmearAnalyzer
    from workbench.core.images import load_image

    classifier = SmearAnalyzer.from_config(load_config()).classifier
    moves = [(dx * args.px, dy * args.px) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    for run in args.runs:
        spreads, flips, cells = [], 0, 0
        for image in json.loads((run / "results.json").read_text())["images"]:
            if not image["cells"]:
                continue
            rgb = load_image(image["image_path"])
            um_per_px = (image.get("scale") or {}).get("um_per_px")
            for cell in image["cells"]:
                x1, y1, x2, y2 = cell["xyxy"]
                boxes = [(x1 + dx, y1 + dy, x2 + dx, y2 + dy) for dx, dy in moves]
                p = _p_blast(classifier, classifier.crops(rgb, boxes, um_per_px), args.d4)
                spreads.append(float(p.max() - p.min()))
                flips += int((p >= classifier.threshold).any() and (p < classifier.threshold).any())
                cells += 1
        if not cells:
            print(f"{run}: no cells")
            continue
        spread = np.array(spreads)
        what = " (d4 average)" if args.d4 else ""
        print(f"{run}{what}: {cells} cells; p(blast) spread over the boxes moved by {args.px:g} px: median "
              f"{np.median(spread):.3f}, 90th percentile {np.percentile(spread, 90):.3f}, max {spread.max():.3f}; "
              f"cells whose call changes at the threshold {classifier.threshold:g}: {flips}")
    return 0


def _p_blast(classifier, crops, d4: bool) -> np.ndarray:
    """p(blast) of each crop, or with `d4` its mean over the crop's 8 flips and quarter turns."""
    if not d4:
        return np.array([classifier.label(row).p_blast for row in classifier.predict_proba(crops)])
    turned = [np.ascontiguousarray(view) for crop in crops for k in range(4)
              for view in (np.rot90(crop, k), np.rot90(crop, k)[:, ::-1])]
    rows = classifier.predict_proba(turned)
    return np.array([classifier.label(row).p_blast for row in rows]).reshape(len(crops), 8).mean(axis=1)


if __name__ == "__main__":
    sys.exit(main())
