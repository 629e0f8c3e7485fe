"""`workbench train ...`: training the detector and the classifier (dataset builders: workbench.cli.dataset)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from workbench.cli.args import positive_int
from workbench.core.errors import DatasetError, WorkbenchError
from workbench.app.weights import WeightsEntry

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- train


def _detector_metrics(weights: Path, data: str, imgsz: int, device: str, split: str) -> dict:
    """ultralytics' validator on one split (AP computed by ultralytics; `workbench eval detection` reproduces it
    with pycocotools)."""
    from workbench.core.ultralytics_env import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    # its save folder goes beside the weights (ultralytics' default, runs/detect/val-N, lands in the working dir)
    metrics = YOLO(str(weights)).val(data=data, split=split, imgsz=imgsz, device=device, plots=False,
                                     verbose=False, batch=8, workers=0, project=str(Path(weights).parent.resolve()),
                                     name=f"val_{split}", exist_ok=True)
    box = metrics.box
    return {"precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4),
            "ap50": round(float(box.map50), 4), "ap50_95": round(float(box.map), 4)}


def _per_source_metrics(weights: Path, eval_list: Path, split: str, device: str, pixel_size: float | None,
                        class_names: list[str], architecture: str) -> dict:
    """`workbench eval detection` on the build's eval list: per source and pooled, with false white cells per
    image; the run is saved beside the weights (eval_<split>/)."""
    from workbench.app.trained_detector import eval_trained_detector

    outcome = eval_trained_detector(weights, eval_list, split, device, weights.parent / f"eval_{split}", pixel_size,
                                    class_names, architecture)
    keys = ("ap50", "ap50_95", "precision", "recall", "false_wbc_per_image", "images", "instances")
    return {"pooled": {k: outcome.metrics["summary"].get(k) for k in keys},
            **{name: {k: m.get(k) for k in keys} for name, m in outcome.metrics.get("per_source", {}).items()}}


def _parse_overrides(items: list[str] | None) -> dict:
    """`--set lr0=0.002 --set warmup_epochs=0`: values parsed as YAML scalars (numbers, booleans, strings)."""
    import yaml

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--set expects KEY=VALUE, not {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _run_train_detector(args) -> int:
    from workbench.core.errors import DetectorLoadError
    from detection.train import DetectorTrainConfig, train_detector

    data = Path(args.data)
    if not data.is_file():
        raise DatasetError(f"data yaml not found: {data}")
    config = DetectorTrainConfig(
        data=str(data), model=args.model, pretrained=args.pretrained, imgsz=args.imgsz, epochs=args.epochs,
        batch=args.batch, device=args.device, patience=args.patience, workers=args.workers,
        project=str(args.out), name=args.name, seed=args.seed, cache=args.cache, resume=args.resume,
        plots=not args.no_plots, overrides=_parse_overrides(args.set),
    )
    if args.no_stain:
        config.stain = None
    try:
        best = train_detector(config)
    except DetectorLoadError as exc:
        raise WorkbenchError(str(exc)) from exc
    from workbench.core.yaml_io import load_yaml_file

    data_cfg = load_yaml_file(data)   # the user's file: size and alias limits, as every other read of one
    splits = [s for s in ("val", "test") if data_cfg.get(s)]
    eval_list = data.parent / "eval.yaml"   # written by `workbench dataset detection`: per source, native pixels
    pixel_size = (data_cfg.get("pixel_size") or {}).get("um_per_px")
    from workbench.app.trained_detector import yolo_class_names

    class_names = yolo_class_names(best)
    architecture = Path(args.model).stem   # yolov8n, yolov5nu ...: the ultralytics config it was built from
    if eval_list.is_file():
        metrics = {s: _per_source_metrics(best, eval_list, s, args.device, pixel_size, class_names, architecture)
                   for s in splits}
        computed_by = f"workbench eval detection --data {eval_list} --split <split> (per source, as analyze runs)"
    else:
        metrics = {s: _detector_metrics(best, str(data), args.imgsz, args.device, s) for s in splits}
        computed_by = "ultralytics validator"
    entry = WeightsEntry(
        name=args.register or f"{Path(args.model).stem}-{args.name}", file=best.name, task="detect",
        architecture=architecture, class_names=class_names, input_size=args.imgsz,
        sha256="", data=str(data), split="train: train, selected on: val, reported on: " + ", ".join(splits),
        metrics={"computed_by": computed_by, **metrics}, train=config.train_kwargs() | {
            "model": args.model, "pretrained": args.pretrained, "stain": config.stain,
            "finished": datetime.now(timezone.utc).isoformat()},
        pixel_size_um=pixel_size,
    )
    _record(best, best.parent, entry, args, f"best weights: {best}  metrics: {metrics}")
    return 0


def _record(best: Path, folder: Path, entry: WeightsEntry, args, summary: str) -> None:
    """Write the trained weights' manifest entry (with their sha256) into `folder`, print `summary`, and with
    --register copy the weights into weights/ and list them."""
    from workbench.app.registry import register_weights, write_entry_file
    from workbench.app.weights import sha256_file

    entry.sha256 = sha256_file(best)
    write_entry_file(folder / "manifest_entry.yaml", entry)
    print(summary)
    if args.register:
        register_weights(best, entry, make_default=args.default)
        print(f"registered as '{entry.name}' in weights/manifest.yaml")


def _relative(path: str) -> str:
    """A path as the manifest shows it: relative to the working directory when under it (no machine's home in it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def classifier_entry(best_path: Path, name: str) -> WeightsEntry:
    """The manifest entry of a trained classifier, from what its checkpoint meta records: data, split file (+ sha256),
    recipe and the measured validation and test metrics."""
    from classification.model import load_classifier

    _, spec = load_classifier(best_path)
    meta = spec.meta or {}
    config = meta.get("config", {})
    threshold = float((meta.get("threshold") or {}).get("threshold", 0.5))
    return WeightsEntry(
        name=name, file=Path(best_path).name, task="classify", architecture=spec.architecture,
        class_names=list(spec.class_names), input_size=int(spec.input_size), sha256="", data=str(config.get("data", "")),
        split=f"by source image: {_relative(meta.get('split_file', 'split.csv'))} "
              f"(sha256 {meta.get('split_sha256', '?')}); "
              f"train / val (model selection) / test (reported)",
        metrics={"computed_by": f"scikit-learn on the test split (blast = positive, p_blast >= {threshold:g}, the "
                                f"operating threshold chosen on validation); `workbench eval classifier` reproduces it",
                 "threshold": meta.get("threshold"), "val": meta.get("val"), "test": meta.get("test"),
                 "test_allidb_only": meta.get("test_allidb"), "test_groups": meta.get("test_groups")},
        train={**config, "best_epoch": meta.get("epoch"), "world_size": meta.get("world_size"),
               "finished": datetime.now(timezone.utc).isoformat(),
               # the crop build's options: `workbench dataset crops` with these rebuilds the same split and crops
               "crop_build": (meta.get("data") or {}).get("build")},
    )


def _run_train_classifier(args) -> int:
    from classification.train import config_from_args, train_classifier

    config = config_from_args(args)
    try:
        result = train_classifier(config)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    if result.rank != 0:
        return 0
    entry = classifier_entry(Path(result.best_path), args.register or f"b3-{Path(result.out_dir).name}")
    _record(Path(result.best_path), Path(result.out_dir), entry, args,
            f"best weights: {result.best_path} (epoch {result.best_epoch}); test: {result.test}")
    return 0


def _run_average_detectors(args) -> int:
    from detection.averaging import average_detectors
    from workbench.app.weights import resolve_weights
    from workbench.core.errors import WeightsError

    resolved = [resolve_weights(spec, "detect") for spec in args.weights]
    sizes = [r.entry.pixel_size_um if r.entry is not None else None for r in resolved]
    try:
        result = average_detectors([r.path for r in resolved], args.out, sizes, trust=args.trust_weights)
    except ValueError as exc:   # DetectorLoadError: a file that is no checkpoint, or checkpoints that do not fit
        raise WeightsError(str(exc)) from exc
    size = f"{result.pixel_size_um:g} um/px" if result.pixel_size_um else "native pixels"
    print(f"averaged {len(result.sources)} detectors ({', '.join(result.class_names)}; {size}; "
          f"{result.tensors} tensors) -> {result.path}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the detector or the classifier",
                       description="Train with ultralytics' trainer (detector) or the EfficientNet-B3 trainer "
                                   "(classifier; runs under torchrun for multi-GPU / multi-node).")
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)

    d = tsub.add_parser("detector", help="train the YOLOv8 WBC detector (ultralytics trainer)")
    d.add_argument("--data", required=True, metavar="DATA.yaml", help="ultralytics data yaml (see `workbench dataset`)")
    d.add_argument("--model", default="yolov8n.yaml", help="architecture yaml, built from scratch (default yolov8n.yaml)")
    d.add_argument("--pretrained", metavar="PATH", help="local .pt to start from (e.g. COCO yolov8n.pt if you have it)")
    d.add_argument("--imgsz", type=positive_int, default=640)
    d.add_argument("--epochs", type=positive_int, default=100)
    d.add_argument("--batch", type=positive_int, default=16)
    d.add_argument("--device", default="cpu", help="cpu, 0, or 0,1,2,3 for multi-GPU (ultralytics DDP)")
    d.add_argument("--patience", type=int, default=30, help="early stopping patience in epochs")
    d.add_argument("--workers", type=int, default=2, help="data loader workers")
    d.add_argument("--cache", action="store_true", help="cache decoded images in RAM")
    d.add_argument("--no-plots", action="store_true", help="skip ultralytics' training plots")
    d.add_argument("--out", type=Path, default=Path("runs/detector"), help="runs folder (default runs/detector)")
    d.add_argument("--name", default="train", help="run name inside --out (default train)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--resume", action="store_true", help="continue --out/--name from its last.pt")
    d.add_argument("--no-stain", action="store_true", help="no stain (HED) jitter / grey-scale augmentation")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other ultralytics train argument, repeatable (e.g. --set lr0=0.002 --set warmup_epochs=0)")
    d.add_argument("--register", metavar="NAME", help="copy the best weights into weights/ under NAME and list them")
    d.add_argument("--default", action="store_true", help="with --register: make them the default detector")
    d.set_defaults(func=_run_train_detector)

    a = tsub.add_parser("average", help="average the weights of detector checkpoints (a model and its fine-tunes)",
                        description="Uniform weight average of two or more YOLO detector checkpoints of one "
                                    "architecture, class list and pixel size (a model and fine-tunes of it: "
                                    "detection.averaging). Select the result on validation like any checkpoint "
                                    "(`workbench eval detection --split val --weights OUT`).")
    a.add_argument("weights", nargs="+", metavar="W", help="detector .pt files or weights/manifest.yaml names")
    a.add_argument("--out", type=Path, required=True, metavar="FILE.pt", help="checkpoint to write")
    a.add_argument("--trust-weights", action="store_true",
                   help="load a detector file even if its pickle names code outside the model classes")
    a.set_defaults(func=_run_average_detectors)

    c = tsub.add_parser("classifier", help="train the EfficientNet-B3 blast/normal classifier",
                        description="Train the EfficientNet-B3 blast/normal classifier on a crop build "
                                    "(`workbench dataset crops`). Multi-GPU / multi-node: run "
                                    "`torchrun ... -m classification.train` with the same options.")
    from classification.train_config import build_parser as classifier_options

    classifier_options(c)
    c.add_argument("--register", metavar="NAME", help="copy the best weights into weights/ under NAME and list them")
    c.add_argument("--default", action="store_true", help="with --register: make them the default classifier")
    c.set_defaults(func=_run_train_classifier)


def register(sub) -> None:
    _add_train(sub)
