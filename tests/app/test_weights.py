"""The weights manifest: defaults, names, sha256 and class-name checks."""

from __future__ import annotations

import shutil

import pytest

from workbench.app.config import load_config
from workbench.core.errors import WeightsError
from workbench.app.pipeline import SmearAnalyzer
from workbench.app.weights import Manifest, WeightsEntry, resolve_weights, sha256_file


@pytest.fixture()
def store(tmp_path, tiny_detector, tiny_classifier):
    """A weights folder with a manifest listing copies of the tiny models."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_detector, folder / "det.pt")
    shutil.copy(tiny_classifier, folder / "cls.pt")
    manifest = Manifest(folder / "manifest.yaml", [])
    manifest.add(WeightsEntry(name="wbc-tiny", file="det.pt", task="detect", architecture="yolov8n",
                              class_names=["wbc"], input_size=64, sha256=sha256_file(folder / "det.pt"),
                              data="BCCD (4 images)", split="train", metrics={}), make_default=True)
    manifest.add(WeightsEntry(name="b3-tiny", file="cls.pt", task="classify", architecture="efficientnet_b3",
                              class_names=["blast", "normal"], input_size=64, sha256=sha256_file(folder / "cls.pt")),
                 make_default=True)
    manifest.save()
    return folder


def test_manifest_round_trip_and_defaults(store):
    manifest = Manifest.load(store / "manifest.yaml")
    assert [e.name for e in manifest.entries] == ["wbc-tiny", "b3-tiny"]
    assert manifest.default("detect").name == "wbc-tiny"
    resolved = resolve_weights(None, "detect", manifest)
    assert resolved.path == (store / "det.pt").resolve() and resolved.entry.name == "wbc-tiny"
    assert resolve_weights("b3-tiny", "classify", manifest).path.name == "cls.pt"
    assert resolve_weights(store / "cls.pt", "classify", manifest).entry.name == "b3-tiny"


def test_defaults_drive_the_analyzer(store, bccd_image):
    manifest = Manifest.load(store / "manifest.yaml")
    analyzer = SmearAnalyzer.from_config(load_config(overrides={"detector": {"conf": 0.0001}}), manifest)
    result = analyzer.analyze_image(bccd_image)
    assert result.detector.name == "wbc-tiny" and result.classifier.name == "b3-tiny"
    assert result.detector.sha256 == sha256_file(store / "det.pt")


def test_changed_file_is_refused(store):
    with open(store / "cls.pt", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(WeightsError, match="do not match the manifest"):
        resolve_weights(None, "classify", Manifest.load(store / "manifest.yaml"))


def test_wrong_class_names_are_refused(store):
    manifest = Manifest.load(store / "manifest.yaml")
    manifest.by_name("b3-tiny").class_names = ["normal", "blast"]  # a renumbered class map
    manifest.save()
    with pytest.raises(WeightsError, match="manifest lists"):
        SmearAnalyzer.from_config(load_config(), Manifest.load(store / "manifest.yaml"))


def test_wrong_task_and_missing_default(store, tmp_path):
    manifest = Manifest.load(store / "manifest.yaml")
    with pytest.raises(WeightsError, match="not a classifier"):
        resolve_weights("wbc-tiny", "classify", manifest)
    empty = Manifest.load(tmp_path / "none.yaml")
    with pytest.raises(WeightsError, match="no default detector"):
        resolve_weights(None, "detect", empty)


def test_detector_without_wbc_class_is_refused(tmp_path, bccd_root):
    """A model trained on other classes (here BCCD's RBC only) cannot be used as the WBC detector."""
    from workbench.builders.bccd import build_bccd_yolo
    from detection.predictor import WbcDetector
    from workbench.core.ultralytics_env import import_ultralytics
    from detection import DetectorLoadError

    import_ultralytics()
    from ultralytics import YOLO

    build_bccd_yolo(bccd_root, tmp_path / "data", classes=("rbc",), splits=("train", "val"), limit=2)
    YOLO("yolov8n.yaml").train(data=str(tmp_path / "data" / "data.yaml"), epochs=1, imgsz=32, batch=2, workers=0,
                               device="cpu", plots=False, val=False, project=str(tmp_path / "runs"), name="t",
                               exist_ok=True, verbose=False)
    with pytest.raises(DetectorLoadError, match="white-blood-cell class 'wbc'"):
        WbcDetector(tmp_path / "runs" / "t" / "weights" / "last.pt")
