"""`workbench eval classifier`: the classifier on labelled crops, per group, calibrated, optionally against a second
classifier (McNemar)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from workbench.app.eval_common import EvalOutcome, Progress, _dataset_error, _weights_info
from workbench.app.config import Settings, with_overrides
from workbench.app.eval_store import base_metrics, new_run_dir, save_run
from workbench.app.results import write_atomic
from workbench.core.errors import DatasetError, WorkbenchError
from workbench.core.fileio import csv_text

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# classifier


def _classifier_from(config: Settings, weights: str | None):
    from workbench.app.pipeline import load_classifier_weights  # same weights checks as analyze
    from workbench.app.weights import Manifest

    cfg = with_overrides(config, {"classifier": {"weights": weights}}) if weights is not None else config
    return load_classifier_weights(cfg, Manifest.in_folder(config.paths.weights))


def run_classifier_eval(data: Path | str, config: Settings, split: str | None = None,
                        compare: str | None = None, threshold: float | None = None, out: Path | str | None = None,
                        progress: Progress | None = None, include_extra_normal: bool = True) -> EvalOutcome:
    """Evaluate the classifier of `config` (and optionally `compare`, a second weight file or manifest name) on
    labelled crops; see classification.evaluate for the layouts. `threshold`: blast at p_blast >= it (default: the
    operating threshold stored with the weights, chosen on validation; 0.5 for weights without one). Reported
    overall, per group of crops (a crop build's group x diagnosis, and the non-blast cells of ALL images as their
    own row) and as calibration (reliability curve, ECE)."""
    from classification.calibration import plot_reliability, reliability
    from classification.evaluate import (DatasetFormatError, classifier_metrics, group_table, load_crop_dataset,
                                         mcnemar, metrics_dict, predict_crops, write_classifier_outputs)

    if threshold is not None and not 0 < threshold < 1:
        raise WorkbenchError(f"--threshold must be between 0 and 1, not {threshold}")
    if not Path(data).expanduser().exists():
        raise DatasetError(f"crop data not found: {data}")
    classifier, info = _classifier_from(config, None)
    threshold_source = "given" if threshold is not None else "weights (chosen on validation)" \
        if classifier.spec.stored_threshold is not None else "default (arg-max)"
    threshold = float(threshold) if threshold is not None else classifier.threshold
    second = _classifier_from(config, compare) if compare is not None else None
    blast = config.classifier.blast_class.lower()
    try:
        samples, used_split = load_crop_dataset(data, classifier.class_names, split, include_extra_normal)
        if second is not None:
            foreign = {s.label for s in samples} - {c.lower() for c in second[0].class_names}
            if foreign:
                raise DatasetFormatError(f"{data}: labels {sorted(foreign)} are not classes of the compared "
                                         f"classifier {second[0].class_names}")
        y = np.array([s.label == blast for s in samples])
        p = predict_crops(classifier, samples, blast, progress)
        p2 = predict_crops(second[0], samples, blast, progress) if second is not None else None
    except DatasetFormatError as exc:
        raise _dataset_error(exc) from None
    metrics = classifier_metrics(y, p, threshold)
    run_dir = new_run_dir("classifier", out, config.paths.eval_runs)
    extra: dict[str, Any] = {}
    compare_args = None
    if second is not None:
        m2 = classifier_metrics(y, p2, threshold)
        test = mcnemar((p >= threshold) == y, (p2 >= threshold) == y)
        compare_args = (second[1].name, p2, m2)
        extra["compare"] = {"weights": _weights_info(second[1]), "summary": m2.summary(),
                            "metrics": metrics_dict(m2), "mcnemar": asdict(test)}
    files = write_classifier_outputs(run_dir, samples, p, metrics, info.name, compare_args)
    groups = group_table(samples, y, p, threshold)
    if groups:
        write_atomic(run_dir / "per_group.csv", csv_text([{"group": g, **v} for g, v in groups.items()],
                                                         ["group", "n", "n_blast", "correct", "precision", "recall",
                                                          "specificity", "f1", "tp", "fp", "fn", "tn"]))
        files["tables"]["per_group"] = "per_group.csv"
    calibration = reliability(y, p)
    plot_reliability(run_dir / "reliability.png", calibration, f"{info.name}: reliability of p_blast")
    files["plots"]["reliability"] = "reliability.png"
    from classification.sheets import hardest_sheet

    # the reviewer's view of what is still confused: the most blast-like non-blasts, the least blast-like blasts
    if hardest_sheet(run_dir / "hardest_non_blasts.jpg", samples, p, blast=False):
        files["plots"]["hardest_non_blasts"] = "hardest_non_blasts.jpg"
    if hardest_sheet(run_dir / "hardest_blasts.jpg", samples, p, blast=True):
        files["plots"]["hardest_blasts"] = "hardest_blasts.jpg"
    summary = {**metrics.summary(), "ece": calibration["ece"]}
    if second is not None:
        summary["mcnemar_p"] = extra["compare"]["mcnemar"]["p_value"]
    result = base_metrics(
        "classifier", _weights_info(info), str(data), used_split,
        {"blast": threshold, "blast_from": threshold_source, "best_f1": metrics.best_f1["threshold"],
         "positive_class": blast, "extra_normal": include_extra_normal},
        summary, metrics.per_class, files["plots"], files["tables"], per_group=groups, calibration=calibration,
        ci95=metrics.ci95, bootstrap=metrics.bootstrap, best_f1=metrics.best_f1,
        confusion_matrix={"labels": metrics.labels, "matrix": metrics.confusion, "rows": "true",
                          "columns": "predicted"},
        classifier={"class_names": info.class_names, "input_size": info.input_size}, **extra,
    )
    save_run(run_dir, result, config.paths.eval_runs)
    return EvalOutcome(run_dir, result)


