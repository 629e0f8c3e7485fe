"""Shared fixtures. Real data comes from SMEAR_DATASETS (default: ../shared/datasets beside the repo); tiny but real
weights are trained/saved on the fly once per session (a YOLOv8n trained one step on a few BCCD images, an untrained
EfficientNet-B3), so tests never depend on shipped weights and never fake a model output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("SMEAR_DATASETS", REPO_ROOT.parent / "shared" / "datasets")).resolve()
BCCD_ROOT = DATASETS / "bccd" / "BCCD"
ALLIDB1 = DATASETS / "all-idb" / "ALL_IDB1"
ALLIDB2 = DATASETS / "all-idb" / "ALL_IDB2"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set SMEAR_DATASETS)")
    return path


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    return need(DATASETS)


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    return need(BCCD_ROOT)


@pytest.fixture(scope="session")
def bccd_image(bccd_root) -> Path:
    return bccd_root / "JPEGImages" / "BloodImage_00000.jpg"


@pytest.fixture(scope="session")
def allidb1_canon_image() -> Path:
    """A 2592x1944 ALL-IDB1 smear (Canon camera): large enough to need tiling at 640 px."""
    return need(ALLIDB1 / "im" / "Im048_1.jpg")


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory, bccd_root) -> Path:
    """YOLOv8n built from yolov8n.yaml (no download) and trained one step at 64 px on 4 BCCD images."""
    from workbench.builders.bccd import build_bccd_yolo
    from workbench.core.ultralytics_env import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("tiny_detector")
    build_bccd_yolo(bccd_root, root / "data", classes=("wbc",), splits=("train", "val"), limit=4)
    model = YOLO("yolov8n.yaml")
    model.train(data=str(root / "data" / "data.yaml"), epochs=1, imgsz=64, batch=4, workers=0, device="cpu",
                plots=False, val=False, amp=False, project=str(root / "runs"), name="train", exist_ok=True,
                verbose=False, seed=0, deterministic=True)
    weights = root / "runs" / "train" / "weights" / "last.pt"
    assert weights.is_file()
    return weights


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """An untrained EfficientNet-B3 blast/normal classifier at 64 px input, saved in the shipped format."""
    from classification.model import build_efficientnet_b3, save_classifier

    path = tmp_path_factory.mktemp("tiny_classifier") / "b3_tiny.pt"
    model = build_efficientnet_b3(2)
    save_classifier(path, model, ["blast", "normal"], input_size=64, meta={"note": "untrained test model"})
    return path


@pytest.fixture()
def tiny_config(tiny_detector, tiny_classifier):
    """Settings that make the tiny models produce boxes: a very low confidence threshold and few detections."""
    from workbench.app.config import load_config

    return load_config(overrides={
        # (nested_ios off: the untrained detector's boxes nest in two large ones; merging them is tested on real data)
        "detector": {"weights": str(tiny_detector), "conf": 0.0001, "imgsz": 640, "max_det": 15, "nested_ios": None,
                     "min_cell_um": None},
        "classifier": {"weights": str(tiny_classifier), "batch": 8},
    })


@pytest.fixture(autouse=True)
def isolated_eval_runs(monkeypatch, tmp_path_factory):
    """Eval runs made by tests go to a tmp folder, never into the user's runs/eval list (the GUI shows that list)."""
    import workbench.app.eval_store

    root = tmp_path_factory.mktemp("eval_runs")
    monkeypatch.setattr(workbench.app.eval_store, "EVAL_RUNS_DIR", root)
    monkeypatch.setenv("SMEAR_EVAL_RUNS", str(root))
    return root


@pytest.fixture(scope="session")
def census_slice(datasets_root):
    """The ALL-IDB1 census of the images a `--limit 1` build uses (one per split), mined with the detector that
    mined the shipped data (wbc-yolov8n-v1), as `workbench dataset census` takes it."""
    from workbench.builders.census import ImageCensus
    from workbench.cli.dataset import CENSUS_DETECTOR, make_census

    need(ALLIDB1)
    census = make_census(datasets_root, CENSUS_DETECTOR, limit=1)
    return {k: ImageCensus.from_dict(v) for k, v in census["images"].items()}, census


@pytest.fixture(scope="session")
def crops(tmp_path_factory, datasets_root, census_slice) -> Path:
    """A real crop build (`workbench dataset crops`) of one source image per split and dataset family, 64 px."""
    need(BCCD_ROOT)
    from workbench.builders.crop_set import CropBuildOptions, build_crops

    out = tmp_path_factory.mktemp("crops") / "crops_v3"
    build_crops(datasets_root, out, census_slice[0], CropBuildOptions(size=64, limit=1, seed=0))
    return out


@pytest.fixture(scope="session")
def exported_weights(tmp_path_factory, bccd_image) -> Path:
    """A weights folder with copies of the shipped default detector and classifier and an OpenVINO and an ONNX
    export of each: the shipped exports where weights/ lists them for these weights, the others made here with
    `workbench export`'s code (the classifier's ONNX export is not shipped: 41 MB)."""
    import shutil

    from workbench.app.config import load_config
    from workbench.app.exporting import export_weights
    from workbench.app.weights import Manifest

    shipped = Manifest.load(REPO_ROOT / "weights" / "manifest.yaml")
    folder = tmp_path_factory.mktemp("exported_weights")
    defaults = [shipped.default("detect"), shipped.default("classify")]
    for entry in defaults:   # copies, not links: an export is written beside the (resolved) weights file
        shutil.copy2(shipped.file_of(entry), folder / entry.file)
    exports = [x for x in shipped.exports if x.parent_sha256 in {e.sha256 for e in defaults}]
    for export in exports:
        source = shipped.folder / export.path
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / export.path)
    Manifest(folder / "manifest.yaml", defaults, exports).save()
    config = load_config(overrides={"paths": {"weights": str(folder)}})
    for entry in defaults:
        for fmt in ("openvino", "onnx"):
            if not any(x.format == fmt and x.parent_sha256 == entry.sha256 for x in exports):
                export_weights(entry.task, entry.name, fmt, config, Manifest.in_folder(folder), [bccd_image])
    return folder
