"""Classifier evaluation on labelled cell crops: accuracy, precision, recall (sensitivity), specificity, F1, ROC-AUC
and the confusion matrix with bootstrap 95% confidence intervals; McNemar's test between two classifiers; ROC and
confusion-matrix plots.

Blast is the positive class. A crop is called blast when p_blast >= threshold (0.5 by default, which is the
classifier's arg-max for two classes). The point estimates follow scikit-learn's definitions and its
zero_division=0 convention (a ratio with an empty denominator is 0); tests check them against scikit-learn.
ROC-AUC is the Mann-Whitney statistic with tied scores counted half, which is what roc_auc_score computes; it is
undefined (None) when the crops hold only one class.

Crop data layouts (those of classification.dataset's crop builds):
- `DIR/<class>/*.png|jpg|tif...`: one folder per class (`blast`, `normal`);
- a `split.csv` (columns `file,label,split`, optional `extra_normal`, more columns allowed; `file` relative to the
  csv's folder), given directly or found in DIR (a crop build), filtered by `split` (default test);
- `DIR/<split>/<class>/...`: split folders without a split.csv, `split` (default test) picks one.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from workbench.core.errors import DatasetFormatError
from workbench.core.fileio import csv_text, write_atomic
from workbench.core.images import IMAGE_EXTENSIONS, pil_open
from workbench.core.plots import new_figure, plot_confusion_matrix, save_figure

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "ClassifierMetrics",
    "CropSample",
    "McNemarResult",
    "classifier_metrics",
    "load_crop_dataset",
    "load_crop_image",
    "mcnemar",
    "predict_crops",
    "roc_auc",
    "roc_curve",
    "write_classifier_outputs",
]

log = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
EXACT_BELOW = 25           # McNemar: exact binomial test when fewer discordant pairs, else chi-square
HEADLINE = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
SPLIT_CSV = "split.csv"


# --------------------------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class CropSample:
    path: Path
    label: str                  # lowercased class name
    extra_normal: bool = False  # split.csv's extra_normal flag
    group: str = ""             # split.csv's group x diagnosis (lab / camera stratum), "" for plain folders
    cell_type: str = ""


ALL_NON_BLAST = "ALL images, non-blast cells"   # the hard negatives: every non-blast crop of an ALL smear
ALL_CELLS = "ALL images, all cells"


def group_rows(groups: Sequence[str], of_all_image: np.ndarray, blast: np.ndarray, with_all_cells: bool = False
               ) -> list[tuple[str, np.ndarray]]:
    """The rows every per-group table reports, as (name, mask over the crops): each group (lab / camera x diagnosis,
    "" skipped), then the non-blast crops of ALL images (the hard negatives), and with `with_all_cells` every crop of
    ALL images. Rows without a crop are left out. Used by the trainer's record and by `eval classifier` alike."""
    keys = np.asarray(groups)
    rows = [(g, keys == g) for g in sorted(set(groups)) if g]
    rows.append((ALL_NON_BLAST, of_all_image & ~blast))
    if with_all_cells:
        rows.append((ALL_CELLS, of_all_image.copy()))
    return [(name, mask) for name, mask in rows if mask.any()]


def group_table(samples: Sequence[CropSample], y: np.ndarray, p: np.ndarray, threshold: float
                ) -> dict[str, dict[str, Any]]:
    """Per group of the crops (split.csv's group / diagnosis), and for the non-blast cells of ALL images as one row:
    n, blasts, precision, recall, specificity, F1 and the fraction called correctly, at `threshold`."""
    of_all_image = np.array([s.group.endswith("/ALL") for s in samples], dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for name, mask in group_rows([s.group for s in samples], of_all_image, y):
        yy, pred = y[mask], p[mask] >= threshold
        r = _rates(yy, pred)
        out[name] = {"n": int(mask.sum()), "n_blast": int(yy.sum()), "correct": round(r["accuracy"], 6),
                     "precision": r["precision"] if yy.any() else None,
                     "recall": r["recall"] if yy.any() else None,
                     "specificity": r["specificity"] if (~yy).any() else None,
                     "f1": r["f1"] if yy.any() else None, "tp": r["tp"], "fp": r["fp"], "fn": r["fn"], "tn": r["tn"]}
    return out


def load_crop_dataset(data: Path | str, class_names: Sequence[str], split: str | None = None,
                      include_extra_normal: bool = True) -> tuple[list[CropSample], str | None]:
    """Labelled crops and the split they came from (None: the whole folder). Class names (folders or csv labels)
    must be among the classifier's `class_names`, case-insensitively; otherwise DatasetFormatError.
    `include_extra_normal=False` leaves out split.csv rows flagged `extra_normal` (the crop builder's BCCD normal
    cells from another microscope)."""
    samples, used = _load_crop_dataset(Path(data).expanduser(), class_names, split)
    if not include_extra_normal:
        samples = [s for s in samples if not s.extra_normal]
        if not samples:
            raise DatasetFormatError(f"{data}: no crops left without the extra normal ones")
    return samples, used


def _load_crop_dataset(data: Path, class_names: Sequence[str], split: str | None
                       ) -> tuple[list[CropSample], str | None]:
    known = [c.lower() for c in class_names]
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DatasetFormatError(f"{data}: expected a folder of crops or a split csv")
        return _from_csv(data, known, split or "test")
    if not data.is_dir():
        raise DatasetFormatError(f"crop data not found: {data}")
    subfolders = {p.name.lower() for p in data.iterdir() if p.is_dir()}
    if (data / SPLIT_CSV).is_file() and not subfolders & set(known):
        # a crop build: its split.csv also says which crops are extra normal ones
        return _from_csv(data / SPLIT_CSV, known, split or "test")
    if split is not None:
        if (data / split).is_dir():
            return _from_folders(data / split, known), split
        raise DatasetFormatError(f"{data} has no '{split}' folder and no {SPLIT_CSV}")
    if subfolders & set(known):
        return _from_folders(data, known), None
    if "test" in subfolders:
        log.info("%s holds split folders: evaluating its test split", data)
        return _from_folders(data / "test", known), "test"
    raise DatasetFormatError(f"{data} holds neither class folders {known}, nor split folders, nor a {SPLIT_CSV}")


def _from_folders(root: Path, known: list[str]) -> list[CropSample]:
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = folder.name.lower()
        if label not in known:
            raise DatasetFormatError(f"{folder}: folder '{folder.name}' is not one of the classifier's classes "
                                     f"{known}")
        samples += [CropSample(p, label) for p in sorted(folder.iterdir())
                    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not samples:
        raise DatasetFormatError(f"{root} holds no crop images in class folders {known}")
    return samples


def _from_csv(path: Path, known: list[str], split: str) -> tuple[list[CropSample], str | None]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(f"{path}: cannot read split csv ({exc})") from None
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DatasetFormatError(f"{path}: a split csv needs the columns file,label[,split]")
    has_split = "split" in rows[0]
    samples = []
    for number, row in enumerate(rows, start=2):
        if has_split and (row.get("split") or "").strip() != split:
            continue
        label = (row.get("label") or "").strip().lower()
        if label not in known:
            raise DatasetFormatError(f"{path}:{number}: label '{row.get('label')}' is not one of the classifier's "
                                     f"classes {known}")
        file = Path((row.get("file") or "").strip())
        extra = (row.get("extra_normal") or "").strip().lower() in ("1", "true", "yes")
        group = (row.get("group") or row.get("dataset") or "").strip()
        diagnosis = (row.get("diagnosis") or "").strip()
        samples.append(CropSample(file if file.is_absolute() else path.parent / file, label, extra,
                                  f"{group}/{diagnosis or 'unknown'}" if group else "",
                                  (row.get("cell_type") or "").strip()))
    if not samples:
        raise DatasetFormatError(f"{path}: no rows of split '{split}'")
    return samples, split if has_split else None


def load_crop_image(path: Path, size: int) -> np.ndarray:
    """A crop file as the network input side `size` (RGB uint8, aspect kept, padded), exactly as predict_crops
    prepares it; DatasetFormatError when it is missing or unreadable."""
    from workbench.core.crops import crop_cell

    path = Path(path)
    try:
        with pil_open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetFormatError(f"crop not found: {path}") from None
    except OSError as exc:
        raise DatasetFormatError(f"{path}: not a readable image ({exc})") from None
    h, w = rgb.shape[:2]
    # the whole file is the cell crop: no margin, aspect kept, padded with its background colour as in analyze
    return crop_cell(rgb, (0, 0, w, h), 0.0, size)


def predict_crops(classifier, samples: Sequence[CropSample], blast_class: str = "blast",
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """p(blast) per crop, with a loaded BlastClassifier; crops are read and run `classifier.batch` at a time."""
    blast = [c.lower() for c in classifier.class_names].index(blast_class.lower())
    out = []
    for start in range(0, len(samples), classifier.batch):
        chunk = samples[start : start + classifier.batch]
        crops = [load_crop_image(s.path, classifier.input_size) for s in chunk]
        out.append(classifier.predict_proba(crops)[:, blast])
        if progress is not None:
            progress(start + len(chunk), len(samples))
    return np.concatenate(out) if out else np.zeros(0)


# --------------------------------------------------------------------------------------------------------------------
# metrics


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count half); None with one class only."""
    from scipy.stats import rankdata

    y = np.asarray(y_true, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """False / true positive rates at every distinct threshold (score >= t is positive), starting at (0, 0)."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)
    tps, fps = np.cumsum(y)[last], np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return {"fpr": [0.0, *(fps / n_neg).tolist()], "tpr": [0.0, *(tps / n_pos).tolist()],
            "thresholds": [math.inf, *s[last].tolist()]}


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    tn = int(np.sum(~y & ~pred))
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {"accuracy": _div(tp + tn, len(y)), "precision": precision, "recall": recall,
            "specificity": _div(tn, tn + fp), "f1": _div(2 * precision * recall, precision + recall),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


@dataclass
class ClassifierMetrics:
    n: int
    n_blast: int
    n_normal: int
    threshold: float
    accuracy: float
    precision: float              # of the blast calls, how many are blasts
    recall: float                 # sensitivity: of the blasts, how many are called blast
    specificity: float            # of the normal cells, how many are called normal
    f1: float
    roc_auc: float | None
    confusion: list[list[int]]    # rows true, columns predicted, both in `labels` order: [[TP, FN], [FP, TN]]
    labels: list[str]
    ci95: dict[str, list[float | None]]      # metric -> [low, high], percentile bootstrap
    bootstrap: dict[str, Any]
    best_f1: dict[str, float]     # threshold, precision, recall, specificity, f1 at the best-F1 threshold
    per_class: dict[str, dict[str, float]]
    roc: dict[str, list[float]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in HEADLINE}
        out.update({"n": self.n, "n_blast": self.n_blast, "n_normal": self.n_normal,
                    "best_f1_threshold": self.best_f1["threshold"], "best_f1_precision": self.best_f1["precision"],
                    "best_f1_recall": self.best_f1["recall"], "best_f1": self.best_f1["f1"]})
        return out


def _bootstrap(y: np.ndarray, p: np.ndarray, threshold: float, resamples: int, seed: int
               ) -> tuple[dict[str, list[float | None]], dict[str, int]]:
    """Percentile 95% intervals. A resample where a metric is undefined (e.g. no blast drawn, so no recall) is left
    out of that metric's interval rather than counted as 0; how many resamples each interval used is returned."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(resamples, len(y)))
    yt, yp = y[idx], (p >= threshold)[idx]
    tp, fp = (yt & yp).sum(1), (~yt & yp).sum(1)
    fn, tn = (yt & ~yp).sum(1), (~yt & ~yp).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "accuracy": (tp + tn) / len(y),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "specificity": np.where(tn + fp > 0, tn / (tn + fp), np.nan),
            "f1": np.where(tp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
        }
    values["roc_auc"] = np.array([v if (v := roc_auc(y[i], p[i])) is not None else np.nan for i in idx])
    ci, used = {}, {}
    for key, v in values.items():
        v = v[np.isfinite(v)]
        used[key] = int(v.size)
        ci[key] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else [None, None]
    return ci, used


def _best_f1(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The threshold (one of the scores) with the highest F1; among equal F1s the highest threshold."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # calling blast at score >= t keeps every crop up to t's tie group
    tp, fp = np.cumsum(ys)[last], np.cumsum(~ys)[last]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    fn, tn = n_pos - tp, n_neg - fp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    i = int(np.argmax(f1))
    return {"threshold": float(ps[last][i]), "precision": _div(tp[i], tp[i] + fp[i]), "recall": _div(tp[i], n_pos),
            "specificity": _div(tn[i], n_neg), "f1": float(f1[i])}


def classifier_metrics(y_true: Sequence[bool], p_blast: Sequence[float], threshold: float = 0.5,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> ClassifierMetrics:
    """All metrics of blast probabilities `p_blast` against `y_true` (True = blast)."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(p_blast, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or not len(y):
        raise ValueError(f"y_true and p_blast must be equal-length non-empty vectors, got {y.shape} and {p.shape}")
    pred = p >= threshold
    r = _rates(y, pred)
    normal = _rates(~y, ~pred)  # the normal class seen as positive: its precision, recall (= specificity), F1
    ci, used = _bootstrap(y, p, threshold, resamples, seed)
    return ClassifierMetrics(
        n=len(y), n_blast=int(y.sum()), n_normal=int((~y).sum()), threshold=threshold,
        accuracy=r["accuracy"], precision=r["precision"], recall=r["recall"], specificity=r["specificity"],
        f1=r["f1"], roc_auc=roc_auc(y, p),
        confusion=[[r["tp"], r["fn"]], [r["fp"], r["tn"]]], labels=["blast", "normal"],
        ci95=ci, bootstrap={"resamples": resamples, "seed": seed, "method": "percentile", "valid_resamples": used},
        best_f1=_best_f1(y, p),
        per_class={"blast": {"precision": r["precision"], "recall": r["recall"], "f1": r["f1"],
                             "support": int(y.sum())},
                   "normal": {"precision": normal["precision"], "recall": normal["recall"], "f1": normal["f1"],
                              "support": int((~y).sum())}},
        roc=roc_curve(y, p),
    )


@dataclass
class McNemarResult:
    both_correct: int
    only_a_correct: int           # b in the usual 2x2 table
    only_b_correct: int           # c
    both_wrong: int
    statistic: float              # exact: min(b, c); chi-square: (|b - c| - 1)^2 / (b + c)
    p_value: float
    method: str


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact_below: int = EXACT_BELOW) -> McNemarResult:
    """McNemar's test of two classifiers on the same crops: exact two-sided binomial test when there are fewer than
    `exact_below` discordant pairs, else chi-square with continuity correction (as statsmodels' mcnemar does)."""
    from scipy.stats import binom, chi2

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = n01 + n10
    if discordant < exact_below:
        statistic = float(min(n01, n10))
        p_value = min(1.0, 2.0 * float(binom.cdf(statistic, discordant, 0.5))) if discordant else 1.0
        method = "exact binomial (two-sided)"
    else:
        statistic = (abs(n01 - n10) - 1) ** 2 / discordant
        p_value = float(chi2.sf(statistic, 1))
        method = "chi-square with continuity correction"
    return McNemarResult(both_correct=int(np.sum(a & b)), only_a_correct=n01, only_b_correct=n10,
                         both_wrong=int(np.sum(~a & ~b)), statistic=float(statistic), p_value=p_value, method=method)


# --------------------------------------------------------------------------------------------------------------------
# outputs


def _plot_roc(path: Path, curves: dict[str, ClassifierMetrics]) -> None:
    fig = new_figure(5.5, 5.2)
    ax = fig.add_subplot()
    for label, m in curves.items():
        auc = f"{m.roc_auc:.3f}" if m.roc_auc is not None else "n/a"
        line, = ax.plot(m.roc["fpr"], m.roc["tpr"], label=f"{label} AUC {auc}")
        ax.plot([1 - m.specificity], [m.recall], "o", color=line.get_color())
        ax.plot([1 - m.best_f1["specificity"]], [m.best_f1["recall"]], "*", ms=11, color=line.get_color())
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
    first = next(iter(curves.values()))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity", ylabel="sensitivity (recall)",
           title=f"ROC, blast positive; o p_blast >= {first.threshold:g}, * best F1")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def write_classifier_outputs(out_dir: Path, samples: Sequence[CropSample], p_blast: np.ndarray,
                             metrics: ClassifierMetrics, name: str = "classifier",
                             compare: tuple[str, np.ndarray, ClassifierMetrics] | None = None
                             ) -> dict[str, dict[str, str]]:
    """metrics.csv (metric, value, 95% CI; also at the best-F1 threshold), predictions.csv (one row per crop),
    roc.png and confusion_matrix.png (and confusion_matrix_compare.png with a second classifier)."""
    out_dir = Path(out_dir)
    rows = [{"model": name, "metric": key, "value": getattr(metrics, key), "ci95_low": metrics.ci95[key][0],
             "ci95_high": metrics.ci95[key][1], "threshold": metrics.threshold} for key in HEADLINE]
    rows += [{"model": name, "metric": "best_f1" if key == "f1" else f"best_f1_{key}", "value": metrics.best_f1[key],
              "threshold": metrics.best_f1["threshold"]} for key in ("precision", "recall", "specificity", "f1")]
    # the same file compared with itself still gets its own rows and legend entry
    c_name = None if compare is None else (compare[0] if compare[0] != name else f"{name} (compare)")
    if compare is not None:
        _, _, c_metrics = compare
        rows += [{"model": c_name, "metric": key, "value": getattr(c_metrics, key),
                  "ci95_low": c_metrics.ci95[key][0], "ci95_high": c_metrics.ci95[key][1],
                  "threshold": c_metrics.threshold} for key in HEADLINE]
    write_atomic(out_dir / "metrics.csv",
                 csv_text(rows, ["model", "metric", "value", "ci95_low", "ci95_high", "threshold"]))
    pred_rows = []
    for i, s in enumerate(samples):
        row = {"file": str(s.path), "label": s.label, "p_blast": round(float(p_blast[i]), 6),
               "predicted": "blast" if p_blast[i] >= metrics.threshold else "normal"}
        row["correct"] = row["predicted"] == ("blast" if s.label == "blast" else "normal")
        row["group"], row["cell_type"] = s.group, s.cell_type
        if compare is not None:
            pc = float(compare[1][i])
            row["p_blast_compare"] = round(pc, 6)
            row["predicted_compare"] = "blast" if pc >= compare[2].threshold else "normal"
        pred_rows.append(row)
    columns = ["file", "label", "group", "cell_type", "p_blast", "predicted", "correct"]
    if compare is not None:
        columns += ["p_blast_compare", "predicted_compare"]
    write_atomic(out_dir / "predictions.csv", csv_text(pred_rows, columns))
    curves = {name: metrics}
    if compare is not None:
        curves[c_name] = compare[2]
    _plot_roc(out_dir / "roc.png", curves)
    plot_confusion_matrix(out_dir / "confusion_matrix.png", metrics.confusion, metrics.labels,
                          f"{name}: p_blast >= {metrics.threshold:g}")
    plots = {"roc": "roc.png", "confusion_matrix": "confusion_matrix.png"}
    if compare is not None:
        plot_confusion_matrix(out_dir / "confusion_matrix_compare.png", compare[2].confusion, compare[2].labels,
                              f"{c_name}: p_blast >= {compare[2].threshold:g}")
        plots["confusion_matrix_compare"] = "confusion_matrix_compare.png"
    return {"plots": plots, "tables": {"metrics": "metrics.csv", "predictions": "predictions.csv"}}


def metrics_dict(metrics: ClassifierMetrics) -> dict[str, Any]:
    data = asdict(metrics)
    data.pop("roc")
    return data
