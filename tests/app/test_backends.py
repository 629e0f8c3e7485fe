"""Every backend gives the cells PyTorch gives, on real smears; `auto` picks an export only of the same weights; a
missing, tampered or broken export is one line (and a fallback only under `auto`)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import pytest

from workbench.app.backends import _speed_order, choose
from workbench.app.config import load_config
from workbench.app.equivalence import compare_results
from workbench.app.weights import ExportEntry, Manifest
from workbench.core.errors import ConfigError, WeightsError

BACKENDS = ("torch", "openvino", "onnxruntime")


@pytest.fixture(scope="module")
def analyzers(exported_weights):
    from workbench.app.pipeline import SmearAnalyzer

    out = {}
    for backend in BACKENDS:
        config = load_config(overrides={"paths": {"weights": str(exported_weights)},
                                        "detector": {"backend": backend}, "classifier": {"backend": backend}})
        out[backend] = SmearAnalyzer.from_config(config)
    return out


@pytest.mark.parametrize("which", ["bccd", "allidb1"])
def test_every_backend_gives_the_same_cells_as_torch(analyzers, which, bccd_image, allidb1_canon_image):
    image = bccd_image if which == "bccd" else allidb1_canon_image
    results = {}
    for backend, analyzer in analyzers.items():
        analyzer.new_case()
        results[backend] = analyzer.analyze_image(image)
        assert results[backend].detector.backend == backend and results[backend].classifier.backend == backend
    reference = results["torch"]
    assert reference.cells, "the shipped detector finds the white cells of these smears"
    if which == "allidb1":
        assert reference.tiled and reference.n_tiles > 1 and len(reference.cells) >= 10
    for backend in ("openvino", "onnxruntime"):
        deviation = compare_results(reference, results[backend])
        assert deviation.counts_equal, (backend, deviation)
        assert deviation.min_iou >= 0.98 and deviation.max_det_conf <= 2e-3 and deviation.max_p_blast <= 2e-3, \
            (backend, deviation)
        assert deviation.labels_differ == 0 and results[backend].counts == reference.counts


def test_auto_runs_the_fastest_export_of_these_weights(exported_weights, tiny_detector):
    from workbench.app.pipeline import load_classifier_weights, load_detector

    config = load_config(overrides={"paths": {"weights": str(exported_weights)}})
    manifest = Manifest.in_folder(exported_weights)
    _, det_info = load_detector(config, manifest)
    _, cls_info = load_classifier_weights(config, manifest)
    assert det_info.backend == cls_info.backend == "openvino"   # both have OpenVINO and ONNX exports
    # weights that have no export (another file than the one exported) run on torch
    other = load_config(overrides={"paths": {"weights": str(exported_weights)},
                                   "detector": {"weights": str(tiny_detector)}})
    assert load_detector(other, manifest)[1].backend == "torch"


def _export(fmt: str, torch_ms: float | None, own_ms: float | None) -> ExportEntry:
    backend = "openvino" if fmt == "openvino" else "onnxruntime"
    timing = {k: v for k, v in (("torch", torch_ms), (backend, own_ms)) if v is not None}
    return ExportEntry(name=f"w-{fmt}", parent="w", parent_sha256="0" * 64, task="detect", format=fmt, path="x",
                       files={"x": "0"}, input_size=640, timing_ms=timing)


def test_auto_tries_openvino_then_onnxruntime_and_never_an_export_slower_than_torch():
    assert [e.format for e in _speed_order([_export("onnx", 100, 30), _export("openvino", 100, 40)])] == \
        ["openvino", "onnx"]
    assert [e.format for e in _speed_order([_export("openvino", 100, 140), _export("onnx", 100, 90)])] == ["onnx"]
    assert [e.format for e in _speed_order([_export("onnx", None, None), _export("openvino", None, None)])] == \
        ["openvino", "onnx"]


@pytest.fixture()
def tampered(exported_weights, tmp_path):
    """A copy of the exported weights folder (the detector and its ONNX export only) to damage."""
    manifest = Manifest.in_folder(exported_weights)
    det = manifest.default("detect")
    onnx = next(e for e in manifest.exports_of(det.sha256, "detect") if e.format == "onnx")
    shutil.copy2(manifest.file_of(det), tmp_path / det.file)
    shutil.copy2(exported_weights / onnx.path, tmp_path / onnx.path)
    Manifest(tmp_path / "manifest.yaml", [det], [onnx]).save()
    return tmp_path


def _load(folder, backend):
    from workbench.app.pipeline import load_detector

    config = load_config(overrides={"paths": {"weights": str(folder)}, "detector": {"backend": backend}})
    return load_detector(config, Manifest.in_folder(folder))


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


def test_an_export_whose_file_does_not_match_its_sha256_is_refused(tampered, caplog):
    manifest = Manifest.in_folder(tampered)
    export = manifest.exports[0]
    with open(tampered / export.path, "r+b") as handle:   # one flipped byte, same size
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError) as err:
        _load(tampered, "onnxruntime")
    assert "does not match the manifest" in _one_line(err)
    with caplog.at_level(logging.WARNING, logger="workbench.app.backends"):
        _, info = _load(tampered, "auto")
    assert info.backend == "torch"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "onnxruntime backend is not used" in warnings[0]


def test_a_corrupt_export_listed_with_its_own_sha256_fails_to_load_in_one_line(tampered, caplog):
    from workbench.app.weights import sha256_file

    manifest = Manifest.in_folder(tampered)
    export = manifest.exports[0]
    path = tampered / export.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])   # truncated, and re-listed as it is now
    manifest.exports = [replace(export, files={export.path: sha256_file(path)})]
    manifest.save()
    with pytest.raises(WeightsError) as err:
        _load(tampered, "onnxruntime")
    assert "onnxruntime cannot load" in _one_line(err)
    with caplog.at_level(logging.WARNING, logger="workbench.app.backends"):
        assert _load(tampered, "auto")[1].backend == "torch"


def test_asking_for_a_backend_without_an_export_or_runtime_is_one_line(tampered, monkeypatch, caplog):
    with pytest.raises(WeightsError) as err:
        _load(tampered, "openvino")
    assert "no openvino export" in _one_line(err) and "workbench export --format openvino" in str(err.value)
    import workbench.core.runtimes as runtimes

    real = runtimes.importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        _load(tampered, "onnxruntime")
    assert "'onnxruntime' package, which is not installed" in _one_line(err)
    with caplog.at_level(logging.WARNING, logger="workbench.app.backends"):
        assert _load(tampered, "auto")[1].backend == "torch"
    assert any("not installed" in r.getMessage() for r in caplog.records)


def test_the_export_backends_refuse_a_gpu_device(tampered):
    manifest = Manifest.in_folder(tampered)
    from workbench.app.weights import resolve_weights

    resolved = resolve_weights(None, "detect", manifest)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        choose("onnxruntime", "cuda", "detector", resolved, manifest, lambda p, b: None, lambda: None)
    assert choose("auto", "cuda", "detector", resolved, manifest, lambda p, b: "exported",
                  lambda: "torch").model == "torch"


def test_the_shipped_defaults_have_openvino_exports():
    """`--backend auto` is fast out of the box: the default weights in weights/ have OpenVINO exports listed, with
    files that match. After a new default, run `workbench export --format openvino --detector NAME` (README)."""
    from workbench.app.backends import verify_export
    from workbench.app.paths import source_checkout

    manifest = Manifest.load(source_checkout() / "weights" / "manifest.yaml")
    for task, what in (("detect", "detector"), ("classify", "classifier")):
        entry = manifest.default(task)
        exports = [e for e in manifest.exports_of(entry.sha256, task) if e.format == "openvino"]
        assert exports, (f"no OpenVINO export of the default {what} {entry.name}: run `workbench export --format "
                         f"openvino --{what} {entry.name}` and commit it with its manifest lines")
        verify_export(manifest, exports[0], what)
        assert exports[0].dynamic_batch and exports[0].max_deviation
