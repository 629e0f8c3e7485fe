"""Which unidentified band an analysis uses, and how the band of weights without one is chosen on validation.

The band (classification.band) comes, in this order, from the setting `classifier.unidentified_band` when it is a
[low, high] pair (or `off`), else from the classifier checkpoint's meta (weights trained since the rule exists),
else from the weights' manifest entry (`unidentified_band`, chosen afterwards on the same validation split by
`band_from_split`), else there is none and every cell gets a call.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

from classification.band import band_of, choose_band
from workbench.core.errors import WorkbenchError

log = logging.getLogger(__name__)

Band = tuple[float, float]


def resolve_band(setting: str | Sequence[float], spec_meta: dict | None, entry_band: dict | None
                 ) -> tuple[Band | None, str]:
    """(band or None, where it came from: setting | off | weights | manifest | none)."""
    if setting == "off":
        return None, "off"
    if not isinstance(setting, str):
        low, high = (float(v) for v in setting)
        return (low, high), "setting"
    band = band_of((spec_meta or {}).get("unidentified_band"))
    if band is not None:
        return band, "weights"
    band = band_of(entry_band)
    if band is not None:
        return band, "manifest"
    return None, "none"


def classifier_band(config, classifier, info) -> tuple[Band | None, str]:
    """The band of an analysis with `config` (Settings) and a loaded classifier (its spec's meta; `info`, its
    ModelInfo, finds its manifest entry) and where it came from."""
    from workbench.app.weights import Manifest

    spec = getattr(classifier, "spec", None)
    entry = None
    if config.classifier.unidentified_band == "weights" and info is not None and info.path:
        try:
            entry = Manifest.in_folder(config.paths.weights).by_path(Path(info.path))
        except WorkbenchError as exc:       # a broken manifest is reported where the weights are resolved
            log.warning("no manifest band: %s", exc)
    return resolve_band(config.classifier.unidentified_band, getattr(spec, "meta", None),
                        getattr(entry, "unidentified_band", None))


# -- choosing the band of weights that have none, on their own validation split -----------------------------------
_SOURCES = {  # split CSV `dataset` -> the folder (under the datasets root) of its `source_image`
    "allidb1": ("all-idb", "ALL_IDB1", "im"),
    "allidb2": ("all-idb", "ALL_IDB1", "im"),     # ALL-IDB2 crops are cut from ALL-IDB1 images (crop_sources.csv)
    "bccd": ("bccd", "BCCD", "JPEGImages"),
}


def band_from_split(classifier, split_csv: Path, datasets_root: Path, split: str = "val",
                    target: float | None = None) -> dict[str, Any]:
    """The band of `classifier` (a loaded BlastClassifier) chosen on the `split` rows of a training split CSV
    (weights/splits/*.split.csv: file, label, split, dataset, source_image, x1, y1, x2, y2): each crop is cut again
    from its source image exactly as an analysis cuts it (box framing, the classifier's margin), so the band is
    chosen on the p_blast an analysis gives."""
    from classification.band import DEFAULT_TARGET
    from workbench.core.images import load_image

    rows = [r for r in _read_rows(split_csv) if r.get("split") == split]
    if not rows:
        raise WorkbenchError(f"{split_csv}: no '{split}' rows")
    by_image: dict[Path, list[dict]] = {}
    for row in rows:
        parts = _SOURCES.get(row.get("dataset", ""))
        if parts is None:
            raise WorkbenchError(f"{split_csv}: unknown dataset {row.get('dataset')!r} (known: {sorted(_SOURCES)})")
        by_image.setdefault(Path(datasets_root, *parts, row["source_image"]), []).append(row)
    truth, scores = [], []
    for path, image_rows in sorted(by_image.items()):
        image = load_image(path)
        boxes = [tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")) for r in image_rows]
        for row, label in zip(image_rows, classifier.classify_boxes(image, boxes)):
            truth.append(row["label"] == "blast")
            scores.append(label.p_blast)
    band = choose_band(truth, scores, classifier.threshold, target or DEFAULT_TARGET)
    band.update({"chosen_on": f"{split} split of {Path(split_csv).name}",
                 "crops": "cut from the source images as an analysis cuts them (box framing)"})
    log.info("band [%.2f, %.2f) on %d %s crops", band["low"], band["high"], band["n"], split)
    return band


def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WorkbenchError(f"cannot read the split file {path}: {exc}") from None
