"""`workbench export` writes the exports and their manifest entries (read back as written), `analyze` and `eval`
run on them with `--backend` and give PyTorch's numbers, `bench` times the real pipeline per backend, and a
backend that cannot run is one `error:` line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench.app.weights import Manifest, sha256_file
from workbench.cli import main


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_detector, tiny_classifier):
    """A weights folder holding the tiny detector and classifier (not listed) and a settings file pointing at it."""
    folder = tmp_path_factory.mktemp("tiny_weights")
    shutil.copy2(tiny_detector, folder / "tiny_det.pt")
    shutil.copy2(tiny_classifier, folder / "tiny_cls.pt")
    config = folder / "settings.yaml"
    config.write_text(f"paths: {{weights: {folder}}}\ndetector: {{conf: 0.001, max_det: 15}}\n")
    return folder, config


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_lists_each_export_with_its_parent_and_files(capsys, tiny_weights, bccd_image):
    folder, config = tiny_weights
    code, out, err = _run(capsys, "export", "--format", "onnx", "openvino", "--detector", folder / "tiny_det.pt",
                          "--classifier", folder / "tiny_cls.pt", "--images", bccd_image, "--config", config)
    assert code == 0, err[-2000:]
    assert out.count("against PyTorch on 1 images") == 4
    manifest = Manifest.in_folder(folder)
    assert {(e.task, e.format) for e in manifest.exports} == {("detect", "onnx"), ("detect", "openvino"),
                                                             ("classify", "onnx"), ("classify", "openvino")}
    for export in manifest.exports:
        parent = folder / ("tiny_det.pt" if export.task == "detect" else "tiny_cls.pt")
        assert export.parent_sha256 == sha256_file(parent) and export.parent == parent.stem
        assert export.dynamic_batch and export.input_size == (640 if export.task == "detect" else 64)
        assert export.files and all(sha256_file(folder / rel) == digest for rel, digest in export.files.items())
        assert (folder / export.path).exists() and export.path.startswith(parent.stem)
        assert export.max_deviation["images"] == 1 and export.timing_ms["torch"] > 0
        if export.task == "detect":   # (pairs only: an untrained detector's near-equal boxes may swap at max_det)
            assert export.max_deviation["n_other"] == export.max_deviation["n_reference"]
            assert export.max_deviation["max_det_conf"] <= 2e-3
        else:
            assert export.max_deviation["max_p_blast"] <= 2e-3
    assert {e.name for e in Manifest.in_folder(folder).exports} == {e.name for e in manifest.exports}
    # exporting again replaces the entry (one per parent and format), never adds a second
    code, _, err = _run(capsys, "export", "--format", "onnx", "--detector", folder / "tiny_det.pt", "--images",
                        bccd_image, "--config", config)
    assert code == 0, err[-2000:]
    assert len(Manifest.in_folder(folder).exports) == 4


def test_analyze_runs_on_each_backend_with_the_cells_of_torch(capsys, tiny_weights, bccd_image, tmp_path):
    from workbench.app.equivalence import compare_results
    from workbench.app.results import BatchResult

    folder, config = tiny_weights
    if not Manifest.in_folder(folder).exports:
        pytest.skip("needs the exports of test_export_lists_each_export_with_its_parent_and_files")
    results = {}
    for backend in ("torch", "openvino", "onnxruntime"):
        code, out, err = _run(capsys, "analyze", bccd_image, "--out", tmp_path / backend, "--no-png", "--detector",
                              folder / "tiny_det.pt", "--classifier", folder / "tiny_cls.pt", "--backend", backend,
                              "--config", config)
        assert code == 0, err[-2000:]
        assert f"[detector on {backend}, classifier on {backend}]" in out
        batch = BatchResult.from_dict(json.loads((tmp_path / backend / "results.json").read_text()))
        results[backend] = batch.images[0]
        assert results[backend].detector.backend == backend
    assert results["torch"].cells
    # an untrained detector's boxes are near-ties that float rounding may reorder at max_det: the same confidences
    # (sorted) and probabilities are asked of it; the shipped models' cells are compared box by box in
    # tests/app/test_backends.py
    confs = {b: sorted(c.det_conf for c in r.cells) for b, r in results.items()}
    for backend in ("openvino", "onnxruntime"):
        assert len(confs[backend]) == len(confs["torch"])
        assert max(abs(a - b) for a, b in zip(confs["torch"], confs[backend])) <= 2e-3
        assert compare_results(results["torch"], results[backend]).max_p_blast <= 2e-3


def test_a_backend_that_cannot_run_is_one_error_line(capsys, tiny_weights, tiny_detector, bccd_image, tmp_path):
    folder, config = tiny_weights
    # exports are matched by the parent's sha256: a detector file with other bytes has none (the backend is
    # refused before any model is loaded)
    other = tmp_path / "other.pt"
    other.write_bytes(tiny_detector.read_bytes() + b"\0")
    code, out, err = _run(capsys, "analyze", bccd_image, "--out", tmp_path / "out", "--detector", other,
                          "--classifier", folder / "tiny_cls.pt", "--backend", "openvino", "--config", config)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: no openvino export of the detector")
    assert not (tmp_path / "out" / "results.json").exists()


def test_bench_times_each_backend_on_the_same_images(capsys, tiny_weights, bccd_image, tmp_path):
    folder, config = tiny_weights
    if not Manifest.in_folder(folder).exports:
        pytest.skip("needs the exports of test_export_lists_each_export_with_its_parent_and_files")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy2(bccd_image, images / name)
    code, out, err = _run(capsys, "bench", bccd_image, images, "--backends", "openvino,auto", "--repeat", "1",
                          "--detector", folder / "tiny_det.pt", "--classifier", folder / "tiny_cls.pt",
                          "--config", config)
    assert code == 0, err[-2000:]
    assert "torch = torch/torch" in out and "openvino = openvino/openvino" in out and "auto = " in out
    rows = [line for line in out.splitlines() if line.startswith(Path(bccd_image).name[:23])]
    assert len(rows) == 3 and rows[0].rstrip().endswith("1.00x")   # torch, the reference, first
    assert sum(line.startswith(f"folder {images}: 2 images (0 failed)") for line in out.splitlines()) == 3
