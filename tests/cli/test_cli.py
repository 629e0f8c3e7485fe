"""`workbench analyze` end to end, and every kind of bad input: one clear line, non-zero exit, batch goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from workbench.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main
from workbench.app.results import CELL_CSV_COLUMNS, SCHEMA_VERSION

BIN = Path(sys.executable).parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def weight_args(tiny_detector, tiny_classifier):
    return ["--detector", tiny_detector, "--classifier", tiny_classifier, "--conf", "0.0001"]


def test_console_script_analyze_writes_three_outputs(tmp_path, bccd_image, tiny_detector, tiny_classifier):
    out = tmp_path / "results"
    proc = subprocess.run([BIN / "workbench", "analyze", bccd_image, "--out", out,
                           *weight_args(tiny_detector, tiny_classifier)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    image = data["images"][0]
    assert data["schema_version"] == SCHEMA_VERSION and image["width"] == 640 and image["height"] == 480
    assert image["scale"]["source"] in ("estimate", "weak_estimate", "detector_rbc", "none")
    assert set(image) >= {"image_path", "width", "height", "cells", "counts", "detector", "classifier", "timings_ms"}
    assert set(image["counts"]) == {"wbc", "blast", "normal", "blast_pct", "unidentified"}
    assert set(image["cells"][0]) == {"cell_id", "xyxy", "det_conf", "label", "label_conf", "p_blast",
                                      "reviewed", "analysed_label", "unidentified"}   # schema 3: review state
    rows = (out / "cells.csv").read_text().splitlines()
    assert rows[0].split(",") == CELL_CSV_COLUMNS and len(rows) == 1 + image["counts"]["wbc"]
    png = cv2.imread(str(out / "BloodImage_00000.annotated.png"))
    original = cv2.imread(str(bccd_image))
    assert png.shape == original.shape
    # boxes were drawn: the box colours (red/green) appear on the annotated image
    x1, y1, x2, y2 = (int(round(v)) for v in image["cells"][0]["xyxy"])
    assert np.abs(png.astype(int) - original.astype(int)).sum() > 0
    assert "1 of 1 images analysed" in proc.stdout


def test_help_texts():
    for argv in (["--help"], ["analyze", "--help"]):
        proc = subprocess.run([BIN / "workbench", *argv], capture_output=True, text=True)
        assert proc.returncode == 0
        assert "usage: workbench" in proc.stdout
    proc = subprocess.run([BIN / "workbench", "analyze", "--help"], capture_output=True, text=True)
    for flag in ("--out", "--detector", "--classifier", "--conf", "--tile", "--sample-id"):
        assert flag in proc.stdout


def test_no_arguments_opens_the_gui(monkeypatch):
    import workbench.gui.app as app
    from workbench.launch import main

    opened = []
    monkeypatch.setattr(app, "run_gui", lambda paths, detector=None, classifier=None, exit_after_shown=False:
                        opened.append(paths) or 0)
    assert main([]) == EXIT_OK and opened == [[]]


def test_no_display_is_one_line(monkeypatch, capsys):
    from workbench.launch import main as launch

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    code = launch(["gui"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and err.startswith("error: no display")


@pytest.fixture()
def bad_inputs(tmp_path, bccd_image):
    """Every kind of bad input beside one good image; name -> (path, expected error fragment or None if usable)."""
    d = tmp_path / "inputs"
    d.mkdir()
    rgb = np.asarray(Image.open(bccd_image).convert("RGB"))
    cases = {}
    cases["missing"] = (d / "missing.jpg", "not found")
    (d / "zero.jpg").write_bytes(b"")
    cases["zero-byte"] = (d / "zero.jpg", "empty file")
    data = bccd_image.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    cases["truncated"] = (d / "truncated.jpg", "truncated")
    (d / "text.jpg").write_text("these are not pixels\n")
    cases["text"] = (d / "text.jpg", "not an image")
    Image.fromarray(rgb).convert("L").save(d / "gray.png")
    cases["grayscale"] = (d / "gray.png", None)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(d / "rgba.png")
    cases["rgba"] = (d / "rgba.png", None)
    tifffile.imwrite(d / "sixteen.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
    cases["16-bit tiff"] = (d / "sixteen.tif", None)
    return cases


def test_bad_inputs_do_not_stop_the_batch(capsys, tmp_path, bccd_image, bad_inputs, tiny_detector, tiny_classifier):
    out = tmp_path / "out"
    paths = [bccd_image] + [p for p, _ in bad_inputs.values()]
    code, stdout, err = run(capsys, "analyze", *paths, "--out", out, *weight_args(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL
    data = json.loads((out / "results.json").read_text())
    by_path = {r["image_path"]: r for r in data["images"]}
    assert by_path[str(bccd_image)]["error"] is None
    err_lines = err.strip().splitlines()
    for name, (path, fragment) in bad_inputs.items():
        result = by_path[str(path)]
        if fragment is None:
            assert result["error"] is None, name
            assert result["counts"]["wbc"] == len(result["cells"]) > 0, name
        else:
            assert fragment in result["error"], (name, result["error"])
            assert sum(str(path) in line and line.startswith("error: ") for line in err_lines) == 1, name
    assert data["n_failed"] == 4 and {f["image_path"] for f in data["failed"]} == {
        str(p) for p, f in bad_inputs.values() if f}
    # grayscale, RGBA and 16-bit versions of the same smear give the same cells as the original
    original = by_path[str(bccd_image)]["cells"]
    for name in ("rgba", "16-bit tiff"):
        assert by_path[str(bad_inputs[name][0])]["cells"] == original, name


def test_pixel_limit_refuses_cleanly(capsys, tmp_path, bccd_image, tiny_detector, tiny_classifier):
    code, _, err = run(capsys, "analyze", bccd_image, "--out", tmp_path, "--max-pixels", 100_000,
                       *weight_args(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL
    assert "exceeds the limit" in err and len(err.strip().splitlines()) == 1


def test_unreadable_folder(capsys, monkeypatch, tmp_path, bccd_image, tiny_detector, tiny_classifier):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(bccd_image, locked / "a.jpg")
    real_scandir = os.scandir

    def scandir(path="."):  # root ignores chmod 000, so simulate what a normal user gets
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, _, err = run(capsys, "analyze", locked, bccd_image, "--out", tmp_path / "o",
                       *weight_args(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {locked}: cannot read folder (Permission denied)"]
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["error"] is None for r in data["images"]] == [False, True]


@pytest.mark.parametrize("which", ["--detector", "--classifier"])
def test_missing_and_corrupt_weights(capsys, tmp_path, bccd_image, tiny_detector, tiny_classifier, which):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(4096))
    for weights, fragment in ((tmp_path / "nope.pt", "not found"), (corrupt, "not a readable")):
        args = {"--detector": tiny_detector, "--classifier": tiny_classifier, which: weights}
        code, _, err = run(capsys, "analyze", bccd_image, "--out", tmp_path / "o",
                           *[x for kv in args.items() for x in kv])
        assert code == EXIT_ERROR
        assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o" / "results.json").exists()


def test_swapped_weights_are_refused(capsys, tmp_path, bccd_image, tiny_detector, tiny_classifier):
    code, _, err = run(capsys, "analyze", bccd_image, "--out", tmp_path,
                       "--detector", tiny_classifier, "--classifier", tiny_detector)
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1


def test_bad_config_is_one_line(capsys, tmp_path, bccd_image):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  confidence: 0.3\n")
    code, _, err = run(capsys, "analyze", bccd_image, "--out", tmp_path, "--config", cfg)
    assert code == EXIT_ERROR and "unknown config key 'detector.confidence'" in err
