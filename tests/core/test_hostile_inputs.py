"""Hostile and clumsy input through `workbench analyze`, image loading, weights and eval: one `error:` line and the
documented exit code, no hang, no code run from a file, no good result lost (each test reproduces a reported
failure)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main
from workbench.core.errors import ImageLoadError
from workbench.core.images import collect_inputs, image_size, load_image

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "sample" / "images"
FIRST = SAMPLE / "BloodImage_00016.jpg"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _weights(tiny_detector, tiny_classifier) -> list[str]:
    return ["--detector", str(tiny_detector), "--classifier", str(tiny_classifier), "--conf", "0.0001"]


def test_postscript_named_jpg_is_refused_without_running_ghostscript(tmp_path, capsys, tiny_detector,
                                                                     tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n{} loop\n")
    shutil.copy(FIRST, folder / "good.jpg")
    code, _, err = _run(capsys, "analyze", folder, "--out", tmp_path / "o", *_weights(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL and "x.jpg: not an image file" in err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["n_images"] == 2 and results["n_failed"] == 1   # the good image is analysed and written


def test_a_pickle_that_runs_code_is_refused_as_detector(tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"
    evil = type("Evil", (), {"__reduce__": lambda self: (os.system, (f"touch {marker}",))})
    torch.save({"model": evil()}, tmp_path / "evil.pt")
    code, _, err = _run(capsys, "analyze", SAMPLE, "--out", tmp_path / "o", "--detector", tmp_path / "evil.pt")
    assert code == EXIT_ERROR and "would run code outside the model classes" in err and "system" in err
    assert len(err.strip().splitlines()) == 1 and not marker.exists()


def test_long_names_and_png_write_errors_lose_nothing(tmp_path, capsys, monkeypatch, tiny_detector,
                                                      tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    long_name = "a" * 245 + ".jpg"   # its annotated PNG name would be over 255 bytes
    shutil.copy(FIRST, folder / long_name)
    shutil.copy(FIRST, folder / "b.jpg")
    shutil.copy(FIRST, folder / "c.jpg")
    import workbench.app.render as render

    real = render.write_png

    def failing(path, image):   # a full disk for one image
        if Path(path).name.startswith("c."):
            raise OSError(28, "No space left on device")
        return real(path, image)

    monkeypatch.setattr(render, "write_png", failing)
    code, _, err = _run(capsys, "analyze", folder, "--out", tmp_path / "o", *_weights(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL and "No space left on device" in err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["n_images"] == 3 and results["n_failed"] == 0   # every result kept
    assert (tmp_path / "o" / "cells.csv").is_file()
    pngs = sorted(p.name for p in (tmp_path / "o").glob("*.png"))
    assert len(pngs) == 2 and all(len(p.encode()) <= 255 for p in pngs)


def test_non_utf8_file_name_is_written_escaped(tmp_path, capsys, tiny_detector, tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"a\xff.jpg")
    shutil.copy(FIRST, folder / name)
    code, _, _ = _run(capsys, "analyze", folder, "--out", tmp_path / "o", *_weights(tiny_detector, tiny_classifier))
    assert code == EXIT_OK
    assert "a\\xff.jpg" in (tmp_path / "o" / "cells.csv").read_text(encoding="utf-8")
    json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))   # strict, valid JSON


def _png_header_only(path: Path, width: int, height: int, bit_depth: int, colour_type: int) -> None:
    """A PNG whose header claims a huge image: a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decode_budget_is_in_bytes_not_pixels(tmp_path):
    big = tmp_path / "rgba16.png"
    _png_header_only(big, 10_000, 10_000, 16, 6)   # 16-bit RGBA: 800 MB decoded, under the 100 MP pixel limit
    with pytest.raises(ImageLoadError, match="over the budget"):
        load_image(big, max_pixels=100_000_000, max_bytes=256 << 20)
    small = tmp_path / "rgb8.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(small)
    assert load_image(small, max_bytes=1 << 20).shape == (64, 64, 3)


def test_fifo_and_devices_are_refused_not_read(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(fifo)
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(link)


def test_odd_folder_entries_are_listed_never_dropped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIRST, folder / "ok.jpg")
    (folder / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "folder.jpg").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "anim.gif")
    shutil.copy(FIRST, folder / "ok.annotated.png")   # our own output: never a smear
    inputs = {i.path.name: i.error for i in collect_inputs([folder])}
    assert inputs.pop("ok.jpg") is None
    assert set(inputs) == {"dangling.jpg", "loop.jpg", "fifo.jpg", "folder.jpg", "anim.gif"}
    assert all(inputs.values())


def test_exif_orientation_is_applied_everywhere(tmp_path):
    image = Image.open(FIRST)
    exif = Image.Exif()
    exif[0x0112] = 6   # rotate 90 degrees clockwise to view
    rotated = tmp_path / "rotated.jpg"
    image.save(rotated, exif=exif)
    assert image.size == (640, 480)
    assert load_image(rotated).shape[:2] == (640, 480)   # upright: 480 wide, 640 high
    assert image_size(rotated) == (480, 640)


def test_damaged_classifier_weights_are_refused(tmp_path, capsys, tiny_classifier):
    import torch

    ckpt = torch.load(tiny_classifier, map_location="cpu", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel() > 10)
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    torch.save(ckpt, tmp_path / "damaged.pt")
    code, _, err = _run(capsys, "analyze", SAMPLE, "--out", tmp_path / "o", "--classifier", tmp_path / "damaged.pt")
    assert code == EXIT_ERROR and "non-finite" in err and not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("names, problem", [(["blast"], "at least 2 classes"), (["blast", "Blast"], "twice")])
def test_classifier_class_names_that_cannot_count(tmp_path, capsys, names, problem):
    from classification.model import build_efficientnet_b3, save_classifier

    save_classifier(tmp_path / "c.pt", build_efficientnet_b3(len(names)), names, input_size=32)
    code, _, err = _run(capsys, "analyze", FIRST, "--out", tmp_path / "o", "--classifier", tmp_path / "c.pt")
    assert code == EXIT_ERROR and problem in err


def test_upper_case_class_names_still_count_blasts(tmp_path, tiny_detector):
    from classification.model import build_efficientnet_b3, save_classifier
    from classification.predictor import BlastClassifier

    save_classifier(tmp_path / "c.pt", build_efficientnet_b3(2), ["BLAST", "Normal"], input_size=32)
    classifier = BlastClassifier(tmp_path / "c.pt", blast_class="blast")
    assert classifier.label(np.array([0.9, 0.1])).label == "blast"
    assert classifier.label(np.array([0.1, 0.9])).label == "normal"


def test_out_folder_reused_and_out_inside_the_input_folder(tmp_path, capsys, tiny_detector, tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(FIRST, folder / name)
    weights = _weights(tiny_detector, tiny_classifier)
    for _ in range(2):   # --out is the input folder: the second run must not analyse the first run's PNGs
        code, _, _ = _run(capsys, "analyze", folder, "--out", folder, *weights)
        assert code == EXIT_OK
        assert json.loads((folder / "results.json").read_text())["n_images"] == 2
    out = tmp_path / "o"
    _run(capsys, "analyze", folder / "a.jpg", folder / "b.jpg", "--out", out, *weights)
    _run(capsys, "analyze", folder / "a.jpg", "--out", out, *weights)   # rerun with fewer images
    assert sorted(p.name for p in out.glob("*.png")) == ["a.annotated.png"]   # no stale b.annotated.png


def test_control_characters_and_formulas(tmp_path, capsys, tiny_detector, tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIRST, folder / "x\x1b[31mred\r.jpg")
    (folder / "y\x1b[2J.jpg").write_bytes(b"not an image")
    code, _, err = _run(capsys, "analyze", folder, "--out", tmp_path / "o", "--sample-id", "=HYPERLINK(\"x\")",
                        *_weights(tiny_detector, tiny_classifier))
    assert code == EXIT_PARTIAL and "\x1b" not in err and "\\x1b" in err
    csv_text = (tmp_path / "o" / "cells.csv").read_text()
    assert "'=HYPERLINK" in csv_text and ",=HYPERLINK" not in csv_text


def test_cuda_without_a_gpu_is_a_settings_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = _run(capsys, "analyze", FIRST, "--out", tmp_path / "o", "--device", "cuda")
    assert code == EXIT_ERROR and "no CUDA GPU is available" in err and len(err.strip().splitlines()) == 1


def test_yaml_alias_bomb_in_a_config_is_refused_quickly(tmp_path, capsys):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    (tmp_path / "bomb.yaml").write_text(bomb)
    code, _, err = _run(capsys, "analyze", FIRST, "--out", tmp_path / "o", "--config", tmp_path / "bomb.yaml")
    assert code == EXIT_ERROR and "aliases are not accepted" in err and len(err) < 300


def test_eval_refuses_non_utf8_labels_in_one_line(tmp_path, capsys, tiny_detector):
    root = tmp_path / "data"
    (root / "images" / "test").mkdir(parents=True)
    (root / "labels" / "test").mkdir(parents=True)
    shutil.copy(FIRST, root / "images" / "test" / "a.jpg")
    (root / "labels" / "test" / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.1 \xff\xfe\n")
    (root / "data.yaml").write_text(f"path: {root}\ntest: images/test\nnames: {{0: wbc}}\n")
    code, _, err = _run(capsys, "eval", "detection", "--data", root / "data.yaml", "--weights", tiny_detector,
                        "--out", tmp_path / "r")
    assert code == EXIT_ERROR and "not UTF-8" in err and len(err.strip().splitlines()) == 1


def test_eval_does_not_hang_on_a_fifo_image(tmp_path, capsys, tiny_detector):
    root = tmp_path / "data"
    (root / "images" / "test").mkdir(parents=True)
    shutil.copy(FIRST, root / "images" / "test" / "a.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    (root / "list.txt").write_text(f"{root / 'images' / 'test' / 'a.jpg'}\n{tmp_path / 'fifo.jpg'}\n")
    (root / "data.yaml").write_text(f"path: {root}\ntest: list.txt\nnames: {{0: wbc}}\n")
    proc = subprocess.run([sys.executable, "-m", "workbench.launch", "eval", "detection", "--data",
                           str(root / "data.yaml"), "--weights", str(tiny_detector), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == EXIT_ERROR and "not a regular file" in proc.stderr


def test_eval_pipeline_names_file_nested_deep_is_refused_quickly(tmp_path, capsys):
    """PyYAML's scanner is quadratic in the nesting depth: a names file of a million `[` must not hang eval."""
    import time

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(FIRST, images / "a.jpg")
    (labels / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "names.yaml").write_text("names: " + "[" * 200_000)
    start = time.perf_counter()
    code, _, err = _run(capsys, "eval", "pipeline", "--images", images, "--labels", labels, "--out", tmp_path / "r")
    assert code == EXIT_ERROR and "nested too deeply" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - start < 10
