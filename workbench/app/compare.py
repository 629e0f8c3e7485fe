"""`workbench compare --config zoo.yaml`: train each listed classifier (architecture x preprocessing x LR schedule
...) on the same split with the same seed, evaluate each on the same test crops, and write one table with 95%
intervals and McNemar's test against a reference (workbench.app.compare_table); optionally the same for detectors
(ultralytics configs, `workbench eval detection` on each).

Output folder:
- `split.csv` (+ the build's `build_report.json`): the crops every run used, when the file caps a split (`subset`);
- `runs/<name>/`: each classifier's training run (best.pt, log.csv, ...) and `run.json` (its options, timing and
  per-crop test probabilities); `detectors/<name>/`: each detector's ultralytics run and its `eval/` run;
- `comparison.md`, `comparison.csv`, `mcnemar.csv`, `predictions.csv` (one row per test crop, p_blast of each run),
  `comparison.png`, `detectors.md` / `detectors.csv`, and `metrics.json` (an eval run of kind `comparison`, listed by
  `workbench eval list` and the GUI's Evaluation tab).

Deterministic mode (the default) fixes the seeds, torch's deterministic algorithms and the thread count, so a rerun
on the same machine reproduces every metric; only the timings (ms per crop, seconds) vary.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from workbench.app.compare_config import CompareConfig
from workbench.app.compare_table import (detector_markdown, mcnemar_rows, metric_row, plot_comparison,
                                         table_markdown, write_csv)
from workbench.core.errors import DatasetError, WorkbenchError
from workbench.core.fileio import write_atomic

log = logging.getLogger(__name__)

__all__ = ["ComparisonResult", "classifier_device", "run_comparison", "subset_split"]

RUN_FILE = "run.json"
EVAL_BATCH = 32


@dataclass
class ComparisonResult:
    out: Path
    rows: list[dict[str, Any]]
    mcnemar: list[dict[str, Any]]
    detectors: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def classifier_device(device: str) -> str:
    """`--device 0` (ultralytics' spelling) as torch's `cuda:0`; cpu, cuda, cuda:N as they are."""
    return f"cuda:{device}" if device.isdigit() else device


def subset_split(split_file: Path, caps: dict[str, int], seed: int, out: Path) -> Path:
    """A copy of `split_file` with at most caps[split] crops in each capped split: up to half of them blasts, the
    rest normal cells, half ALL-IDB normals and half extra normals (BCCD / TXL / PBC) where both have enough; rows
    in their original order, file paths made absolute. The build's build_report.json is copied beside it (the
    trainer stores the crop framing from it)."""
    with open(split_file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns, rows = list(reader.fieldnames or []), list(reader)
    rng = random.Random(seed)
    keep: set[int] = set()
    for split in ("train", "val", "test"):
        index = [i for i, r in enumerate(rows) if r.get("split") == split]
        if split not in caps:
            keep.update(index)
            continue
        n = caps[split]
        pools = {key: [i for i in index if _pool(rows[i]) == key] for key in ("blast", "normal", "extra")}
        for pool in pools.values():
            rng.shuffle(pool)
        blasts = pools["blast"][: n // 2]
        rest = n - len(blasts)
        normals = pools["normal"][: (rest + 1) // 2]
        extras = pools["extra"][: rest - len(normals)]
        normals = pools["normal"][: rest - len(extras)]   # fill from the other pool when one runs short
        keep.update(blasts + normals + extras)
    for r in rows:
        path = Path(r["file"])
        r["file"] = str(path if path.is_absolute() else (split_file.parent / path).resolve())
    out.mkdir(parents=True, exist_ok=True)
    target = out / "split.csv"
    from workbench.core.fileio import csv_text

    write_atomic(target, csv_text([rows[i] for i in sorted(keep)], columns))
    report = split_file.parent / "build_report.json"
    if report.is_file():
        write_atomic(out / "build_report.json", report.read_text(encoding="utf-8"))
    return target


def _pool(row: dict[str, str]) -> str:
    if row.get("label", "").strip().lower() == "blast":
        return "blast"
    return "extra" if (row.get("extra_normal") or "").strip().lower() in ("1", "true", "yes") else "normal"


def _split_file(data: Path) -> Path:
    path = data / "split.csv" if data.is_dir() else data
    if not path.is_file():
        raise DatasetError(f"crop split file not found: {path} (build one with `workbench dataset crops`)")
    return path


def _train_config(config: CompareConfig, name: str, options: dict[str, Any], data: Path, out: Path, device: str):
    from classification.train_config import ClassifierTrainConfig, resolved

    train = ClassifierTrainConfig(data=str(data), out=str(out / "runs" / name), seed=config.seed,
                                  deterministic=config.deterministic, num_threads=config.threads,
                                  device=classifier_device(device), exist_ok=True,
                                  **{"workers": 0, **options})
    return resolved(train)


def _evaluate(best: Path, data: Path, config: CompareConfig, device: str) -> dict[str, Any]:
    """Test probabilities of one run and the time per crop of the classifier's own input path (preprocessing,
    normalisation, forward pass), measured after one warm-up batch with the crops already read."""
    from classification.evaluate import load_crop_dataset, load_crop_image
    from classification.predictor import BlastClassifier

    classifier = BlastClassifier(best, device=classifier_device(device), batch=EVAL_BATCH)
    samples, _ = load_crop_dataset(data, classifier.class_names, config.test_split, config.test_extra_normal)
    crops = [load_crop_image(s.path, classifier.input_size) for s in samples]
    blast = [c.lower() for c in classifier.class_names].index("blast")
    classifier.predict_proba(crops[:EVAL_BATCH])
    tick = time.perf_counter()
    probs = classifier.predict_proba(crops)[:, blast]
    seconds = time.perf_counter() - tick
    return {"files": [str(s.path) for s in samples], "labels": [s.label for s in samples],
            "p_blast": [float(v) for v in probs], "threshold": classifier.threshold,
            "params": int(sum(p.numel() for p in classifier.model.parameters())),
            "ms_per_crop": 1000.0 * seconds / max(len(samples), 1)}


def _classifier_run(config: CompareConfig, name: str, options: dict[str, Any], data: Path, out: Path, device: str,
                    resume: bool) -> dict[str, Any]:
    from dataclasses import asdict

    from classification.train import train_classifier

    train = _train_config(config, name, options, data, out, device)
    record_path = out / "runs" / name / RUN_FILE
    settings = {k: v for k, v in asdict(train).items() if k not in ("device", "exist_ok", "resume")}
    if resume and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("settings") == json.loads(json.dumps(settings)):
            log.info("run %s: reusing %s", name, record_path)
            return record
    log.info("run %s: training %s (%s head, %s, %s, %d px)", name, train.arch, train.head, train.preprocess,
             train.lr_schedule, train.input_size)
    tick = time.perf_counter()
    result = train_classifier(train)
    train_seconds = time.perf_counter() - tick
    record = {"name": name, "settings": settings, "best_epoch": result.best_epoch, "last_epoch": result.last_epoch,
              "train_seconds": round(train_seconds, 1), "best_path": result.best_path,
              **_evaluate(Path(result.best_path), data, config, device)}
    write_atomic(record_path, json.dumps(record, indent=1) + "\n")
    return record


def _row(record: dict[str, Any]) -> dict[str, Any]:
    s = record["settings"]
    y = np.array([label == "blast" for label in record["labels"]])
    info = {"arch": s["arch"], "head": s["head"], "preprocess": s["preprocess"], "lr_schedule": s["lr_schedule"],
            "optimizer": s["optimizer"], "input_size": s["input_size"], "epochs": s["epochs"],
            "best_epoch": record["best_epoch"], "params": record["params"],
            "ms_per_crop": record["ms_per_crop"], "train_seconds": record["train_seconds"]}
    return metric_row(record["name"], y, np.array(record["p_blast"]), record["threshold"], info)


def _detector_run(config: CompareConfig, run, out: Path, device: str, resume: bool) -> dict[str, Any]:
    from detection.train import DetectorTrainConfig, train_detector
    from workbench.app.trained_detector import eval_trained_detector

    record_path = out / "detectors" / run.name / RUN_FILE
    if resume and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("train") == json.loads(json.dumps(run.train)) and record.get("model") == run.model:
            return record
    train = DetectorTrainConfig(data=str(config.detector_data), model=run.model, project=str(out / "detectors"),
                                name=run.name, seed=config.seed, device=device, **{"plots": False, **run.train})
    best = train_detector(train)
    eval_data, split = config.detector_eval
    tick = time.perf_counter()
    # the whole image at the training size, as ultralytics validates (tiles of a small imgsz would cut the cells)
    outcome = eval_trained_detector(best, eval_data, split, device, out / "detectors" / run.name / "eval",
                                    architecture=Path(run.model).stem, imgsz=train.imgsz,
                                    settings={"detector": {"imgsz": train.imgsz}, "tiling": {"mode": "off"}})
    seconds = time.perf_counter() - tick
    summary = outcome.metrics["summary"]
    from detection.predictor import load_yolo

    params = int(sum(p.numel() for p in load_yolo(best).model.parameters()))
    record = {"run": run.name, "model": run.model, "train": run.train, "epochs": train.epochs, "params": params,
              "weights": str(best), "eval": str(outcome.run_dir), "images": summary.get("images"),
              "instances": summary.get("instances"),
              **{k: summary.get(k) for k in ("precision", "recall", "ap50", "ap50_95")},
              "ms_per_image": 1000.0 * seconds / max(int(summary.get("images") or 1), 1)}
    write_atomic(record_path, json.dumps(record, indent=1) + "\n")
    return record


def run_comparison(config: CompareConfig, out: Path, device: str = "cpu", resume: bool = False,
                   only: list[str] | None = None, progress: Callable[[str], None] | None = None) -> ComparisonResult:
    """Train and evaluate every run of `config` into `out`; `resume` reuses finished runs whose settings match."""
    import torch

    out = Path(out)
    if (out / "metrics.json").is_file() and not resume:
        raise WorkbenchError(f"{out} already holds a comparison: pass --resume to reuse its finished runs, or "
                             f"another --out")
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = _split_file(config.data)
    if config.subset:
        data = subset_split(data, config.subset, config.seed, out)
    say = progress or log.info
    records = []
    for name, options in config.runs:
        if only and name not in only and name != config.reference:
            continue
        say(f"classifier {name}")
        records.append(_classifier_run(config, name, options, data, out, device, resume))
    detectors = []
    for run in config.detectors:
        if only and run.name not in only:
            continue
        say(f"detector {run.name}")
        detectors.append(_detector_run(config, run, out, device, resume))
    return _write(config, out, data, records, detectors)


def _write(config: CompareConfig, out: Path, data: Path, records: list[dict[str, Any]],
           detectors: list[dict[str, Any]]) -> ComparisonResult:
    from workbench.app.eval_store import base_metrics, save_run

    if len({tuple(r["files"]) for r in records}) > 1:
        raise WorkbenchError("the runs were evaluated on different test crops; rerun without --resume")
    rows = [_row(r) for r in records]
    correct = {r["name"]: (np.array(r["p_blast"]) >= r["threshold"]) == np.array([lab == "blast" for lab in
                                                                                   r["labels"]]) for r in records}
    reference = config.reference if config.reference in correct else records[0]["name"]
    tests = mcnemar_rows(reference, correct)
    files = {"table": "comparison.md", "csv": "comparison.csv", "mcnemar": "mcnemar.csv",
             "predictions": "predictions.csv"}
    note = (f"Test crops: {rows[0]['n']} ({rows[0]['n_blast']} blasts) of split '{config.test_split}'"
            f"{'' if config.test_extra_normal else ' without the extra normal cells'} of {data}; seed {config.seed}"
            f"{', deterministic' if config.deterministic else ''}. 95% CIs: Wilson for accuracy, precision, recall, "
            f"specificity; percentile bootstrap (1000 resamples, seed 0) for F1 and ROC-AUC. McNemar p (exact "
            f"binomial under 25 discordant crops, else chi-square with continuity correction) in brackets: crops only "
            f"the reference / only the run got right. Calls at each run's threshold chosen on validation. "
            f"ms / crop: preprocessing + forward pass, batch {EVAL_BATCH}, this machine.\n")
    write_atomic(out / "comparison.md", table_markdown(rows, tests, reference) + "\n" + note)
    write_csv(out / "comparison.csv", rows)
    write_csv(out / "mcnemar.csv", tests or [{"run": "", "reference": reference}])
    first = records[0]
    write_csv(out / "predictions.csv", [{"file": f, "label": lab, **{r["name"]: r["p_blast"][i] for r in records}}
                                        for i, (f, lab) in enumerate(zip(first["files"], first["labels"]))])
    plot_comparison(out / "comparison.png", rows)
    if detectors:
        write_atomic(out / "detectors.md", detector_markdown(detectors))
        write_csv(out / "detectors.csv", detectors)
        files.update({"detectors": "detectors.md", "detectors_csv": "detectors.csv"})
    best = max(rows, key=lambda r: (r["f1"], r["roc_auc"] or 0))
    summary = {"runs": len(rows), "reference": reference, "test_crops": rows[0]["n"], "best_f1_run": best["run"],
               "best_f1": best["f1"]}
    metrics = base_metrics(
        "comparison", {"name": f"{len(rows)} classifiers" + (f" + {len(detectors)} detectors" if detectors else "")},
        str(data), config.test_split, {"blast": "each run's stored threshold"}, summary, None,
        {"comparison": "comparison.png"}, {k: v for k, v in files.items() if v.endswith(".csv")},
        comparison={"reference": reference, "rows": rows, "mcnemar": tests, "detectors": detectors,
                    "config": str(config.path), "note": note.strip()})
    save_run(out, metrics)
    return ComparisonResult(out, rows, tests, detectors, files)
