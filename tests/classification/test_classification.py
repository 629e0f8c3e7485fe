"""Tests for the classification package: checkpoint round trip and load errors, batching, crop geometry, and
labels on a real ALL-IDB2 cell.

Networks are untrained EfficientNet-B3 (weights=None) at 64 px so the file runs in seconds on a CPU; the zero head
makes their output a known answer (uniform probabilities). Real images come from the shared datasets folder
(env var SMEAR_DATASETS, default <repo>/../shared/datasets).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import efficientnet_b3

from classification import BlastClassifier, CellLabel, ClassifierLoadError, ClassifierSpec
from workbench.core.crops import crop_cell, crop_cells, median_colour, to_tensor_batch
from classification.model import (
    CHECKPOINT_FORMAT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_efficientnet_b3,
    load_classifier,
    save_classifier,
)

REPO = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("SMEAR_DATASETS", REPO.parent / "shared" / "datasets"))
ALL_IDB2_BLAST = DATASETS / "all-idb" / "ALL_IDB2" / "img" / "Im013_1.tif"

SIZE = 64  # small input keeps B3 fast; the network is size-agnostic thanks to adaptive pooling
CLASSES = ["normal", "blast"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained 2-class checkpoint, saved once for the module (building B3 is the slow part)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "classifier.pt"
    model = build_efficientnet_b3(len(CLASSES))
    save_classifier(path, model, CLASSES, input_size=SIZE, meta={"epochs": 0, "data": Path("/data/x"), "split": (1, 2)})
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint) -> BlastClassifier:
    return BlastClassifier(checkpoint, batch=4)


def _crops(n: int, size: int = SIZE, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


# --- checkpoint round trip ---------------------------------------------------------------------------------------


def test_round_trip_preserves_spec_and_stores_fp16(checkpoint):
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)  # must not need pickled code
    assert raw["format"] == CHECKPOINT_FORMAT
    floats = [t for t in raw["state_dict"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    counters = [v for k, v in raw["state_dict"].items() if k.endswith("num_batches_tracked")]
    assert counters and all(t.dtype == torch.int64 for t in counters)

    model, spec = load_classifier(checkpoint)
    assert isinstance(spec, ClassifierSpec)
    assert spec.class_names == CLASSES
    assert spec.input_size == SIZE
    assert spec.mean == pytest.approx(IMAGENET_MEAN) and spec.std == pytest.approx(IMAGENET_STD)
    assert spec.meta == {"epochs": 0, "data": "/data/x", "split": [1, 2]}
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())

    with torch.inference_mode():
        logits = model(to_tensor_batch(_crops(3), spec.mean, spec.std))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # zero head: logits are exactly 0, so an untrained model is uniform whatever the input
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(probs, torch.full_like(probs, 0.5))


def test_save_full_precision_and_atomic(tmp_path):
    model = build_efficientnet_b3(3)
    path = save_classifier(tmp_path / "sub" / "c.pt", model, ["a", "b", "blast"], input_size=SIZE, half=False)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert all(t.dtype == torch.float32 for t in raw["state_dict"].values() if t.is_floating_point())
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temp file left behind
    with pytest.raises(ValueError, match="3 outputs"):
        save_classifier(tmp_path / "bad.pt", model, CLASSES)


def test_head_is_zero_initialised():
    head = build_efficientnet_b3(5).classifier[-1]
    assert head.out_features == 5
    assert not head.weight.any() and not head.bias.any()


def test_import_is_light_and_app_free():
    """The model package stands on the bottom floor only (workbench.core): never the app, the CLI or the GUI."""
    code = (
        "import sys, classification; "
        "assert 'torch' not in sys.modules, 'torch imported eagerly'; "
        "above = [m for m in sys.modules if m.startswith(('workbench.app', 'workbench.cli', 'workbench.gui', "
        "'PySide6'))]; assert not above, above"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- prediction ----------------------------------------------------------------------------------------------------


def test_predict_proba_runs_in_batches(classifier):
    calls = []
    handle = classifier.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        probs = classifier.predict_proba(_crops(10))
    finally:
        handle.remove()
    assert calls == [4, 4, 2]
    assert probs.shape == (10, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_proba_empty(classifier):
    assert classifier.predict_proba([]).shape == (0, 2)
    assert classifier.classify_boxes(np.zeros((20, 20, 3), np.uint8), []) == []


def test_properties(classifier):
    assert classifier.class_names == CLASSES
    assert classifier.input_size == SIZE
    assert classifier.spec.architecture == "efficientnet_b3"


def test_classify_boxes_on_real_all_idb2_cell(classifier):
    if not ALL_IDB2_BLAST.is_file():
        pytest.skip(f"ALL-IDB2 crop not available at {ALL_IDB2_BLAST} (set SMEAR_DATASETS)")
    from PIL import Image

    with Image.open(ALL_IDB2_BLAST) as img:
        image = np.asarray(img.convert("RGB"), dtype=np.uint8)
    h, w = image.shape[:2]
    # the ALL-IDB2 crop is centred on one cell; add a border-touching box and a float one
    boxes = [(w * 0.2, h * 0.2, w * 0.8, h * 0.8), (-10.0, -5.0, 60.4, 40.7), (100.5, 90.2, 150.9, 170.1)]
    labels = classifier.classify_boxes(image, boxes)
    assert len(labels) == 3
    for label in labels:
        assert isinstance(label, CellLabel)
        assert label.label in CLASSES
        # untrained zero head: a tie, broken by argmax towards the first class
        assert label.label_conf == pytest.approx(0.5) and label.p_blast == pytest.approx(0.5)


def test_blast_class_matched_case_insensitively(tmp_path):
    path = save_classifier(tmp_path / "c.pt", build_efficientnet_b3(2), ["Normal", "Blast"], input_size=SIZE)
    clf = BlastClassifier(path)
    assert clf.class_names == ["Normal", "Blast"]
    with pytest.raises(ClassifierLoadError, match=r"do not include the blast class 'lymphoblast'"):
        BlastClassifier(path, blast_class="lymphoblast")


def test_results_use_the_app_class_map_whatever_the_model_calls_its_blast_class(tmp_path):
    """`classifier.blast_class` names the checkpoint's blast class (here 'Lymphoblast', at index 1); results,
    counts, editing and eval then only ever see the app's labels `blast` / `normal` with p_blast of that class."""
    net = build_efficientnet_b3(2)
    with torch.no_grad():   # a head that always says class 1 (Lymphoblast)
        net.classifier[-1].weight.zero_()
        net.classifier[-1].bias.copy_(torch.tensor([-4.0, 4.0]))
    path = save_classifier(tmp_path / "c.pt", net, ["Other", "Lymphoblast"], input_size=SIZE)
    clf = BlastClassifier(path, blast_class="lymphoblast")
    image = np.full((120, 120, 3), 200, np.uint8)
    labels = clf.classify_boxes(image, [(10, 10, 60, 60), (50, 50, 110, 110)])
    assert [lab.label for lab in labels] == ["blast", "blast"]
    assert all(lab.p_blast > 0.99 for lab in labels)
    other = BlastClassifier(path, blast_class="Other").classify_boxes(image, [(10, 10, 60, 60)])
    assert other[0].label == "normal" and other[0].p_blast < 0.01


# --- crops -----------------------------------------------------------------------------------------------------------


def _square_image() -> np.ndarray:
    """Grey background (median 128) with a red square at x 40..60, y 30..50."""
    image = np.full((100, 120, 3), 128, np.uint8)
    image[30:50, 40:60] = (255, 0, 0)
    return image


def test_crop_inside_is_resized_region():
    image = _square_image()
    crop = crop_cell(image, (40, 30, 60, 50), margin=0.0, size=40)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    assert (crop == (255, 0, 0)).all()  # the box is exactly the square, enlarged 2x

    crop = crop_cell(image, (40, 30, 60, 50), margin=0.5, size=40)  # 20 px box + 10 px each side
    assert tuple(crop[20, 20]) == (255, 0, 0)
    assert tuple(crop[2, 2]) == (128, 128, 128)
    red = (crop == (255, 0, 0)).all(axis=2)
    assert 18 <= red.sum() ** 0.5 <= 22  # the square keeps half the crop side


def test_crop_near_border_padded_with_median():
    image = _square_image()
    image[:, :10] = (0, 0, 255)  # a blue strip that must not become the fill colour
    assert median_colour(image) == (128, 128, 128)
    crop = crop_cell(image, (-20, -20, 20, 20), margin=0.0, size=40)
    assert crop.shape == (40, 40, 3)
    assert (crop[:20, :] == 128).all() and (crop[:, :20] == 128).all()  # outside the image: filled
    assert tuple(crop[30, 25]) == (0, 0, 255)  # inside: image content (blue strip at x 0..9)
    assert tuple(crop[30, 35]) == (128, 128, 128)


def test_crop_explicit_fill_and_crop_cells_share_fill():
    image = _square_image()
    crop = crop_cell(image, (110, 90, 130, 110), margin=0.0, size=20, fill=(1, 2, 3))
    assert tuple(crop[-1, -1]) == (1, 2, 3)
    crops = crop_cells(image, [(40, 30, 60, 50), (110, 90, 130, 110)], margin=0.0, size=20)
    assert len(crops) == 2 and tuple(crops[1][-1, -1]) == (128, 128, 128)


def test_non_square_box_keeps_aspect_with_symmetric_padding():
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:30, 10:90] = (0, 255, 0)  # green 80 x 20 strip; the rest is black (median 0)
    crop = crop_cell(image, (10, 10, 90, 30), margin=0.0, size=40)
    assert crop.shape == (40, 40, 3)
    green_rows = np.flatnonzero((crop == (0, 255, 0)).all(axis=2).all(axis=1))
    assert len(green_rows) == 10  # 80x20 -> 40x10: aspect 4:1 kept
    assert green_rows[0] == 15 and green_rows[-1] == 24  # 15 rows of padding above and below
    assert (crop[:15] == 0).all() and (crop[25:] == 0).all()


def test_float_coordinates_and_degenerate_boxes():
    image = _square_image()
    crop = crop_cell(image, (40.4, 29.6, 59.7, 49.5), margin=0.0, size=32)  # rounds to 40..60, 30..50
    assert crop.shape == (32, 32, 3) and (crop == (255, 0, 0)).all()
    crop = crop_cell(image, (10.7, 20.2, 33.3, 21.9), margin=0.15, size=32)
    assert crop.shape == (32, 32, 3)
    for box in [(50, 40, 50, 40), (50.0, 35.0, 50.0, 45.0), (59.9, 49.9, 60.1, 50.1), (300, 300, 310, 310)]:
        crop = crop_cell(image, box, margin=0.15, size=16)
        assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8
    assert (crop_cell(image, (50, 40, 50, 40), margin=0.15, size=16) == (255, 0, 0)).all()
    with pytest.raises(ValueError, match="finite"):
        crop_cell(image, (float("nan"), 0, 10, 10), margin=0.1, size=16)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        crop_cell(image[..., 0], (0, 0, 10, 10), margin=0.1, size=16)


def test_to_tensor_batch_normalises():
    crops = [np.full((4, 4, 3), 255, np.uint8), np.zeros((4, 4, 3), np.uint8)]
    batch = to_tensor_batch(crops, IMAGENET_MEAN, IMAGENET_STD)
    assert batch.shape == (2, 3, 4, 4) and batch.dtype == torch.float32
    expected_white = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert batch[0, :, 0, 0].tolist() == pytest.approx(expected_white, rel=1e-5)
    assert batch[1, :, 0, 0].tolist() == pytest.approx([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], rel=1e-5)


# --- load errors -----------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ClassifierLoadError, match="classifier weights not found: .*nope.pt"):
        load_classifier(tmp_path / "nope.pt")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.touch()
    with pytest.raises(ClassifierLoadError, match=r"is not a readable classifier checkpoint \(empty file\)"):
        load_classifier(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    with pytest.raises(ClassifierLoadError, match=r"is not a readable classifier checkpoint \(not a PyTorch") as info:
        load_classifier(path)
    assert "\n" not in str(info.value)


def test_pickled_model_file(tmp_path):
    path = tmp_path / "yolo_like.pt"
    torch.save({"epoch": -1, "model": torch.nn.Linear(2, 2)}, path)  # ultralytics pickles whole modules like this
    with pytest.raises(ClassifierLoadError, match="pickled Python objects.*save_classifier") as info:
        load_classifier(path)
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_dict_without_format(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(build_efficientnet_b3(2).state_dict(), path)
    with pytest.raises(ClassifierLoadError, match="bare state dict.*save_classifier"):
        load_classifier(path)
    torch.save({"epoch": 3, "model": None, "train_args": {}}, path)  # the shape of an ultralytics .pt
    with pytest.raises(ClassifierLoadError, match="YOLO"):
        load_classifier(path)


def test_wrong_format_architecture_and_state(tmp_path, checkpoint):
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    path = tmp_path / "edited.pt"
    for edit, message in [
        ({"format": "other/9"}, "unsupported classifier checkpoint format"),
        ({"architecture": "alexnet"}, "unknown classifier architecture 'alexnet'"),
        ({"architecture": "resnet50"}, r"weights do not fit resnet50 with 2 classes \(.*missing"),
        ({"class_names": ["a", "b", "blast"]}, r"do not fit efficientnet_b3 with 3 classes \(.*mis-shaped"),
    ]:
        torch.save({**raw, **edit}, path)
        with pytest.raises(ClassifierLoadError, match=message):
            load_classifier(path)


def test_classes_without_blast(tmp_path):
    path = save_classifier(tmp_path / "c.pt", build_efficientnet_b3(2), ["neutrophil", "lymphocyte"], input_size=SIZE)
    with pytest.raises(ClassifierLoadError, match=r"\['neutrophil', 'lymphocyte'\] do not include the blast class"):
        BlastClassifier(path)


# --- pretrained backbone -------------------------------------------------------------------------------------------


def test_pretrained_loads_backbone_and_keeps_zero_head(tmp_path):
    torch.manual_seed(1)
    imagenet_like = efficientnet_b3(weights=None)  # torchvision layout with its 1000-class head
    path = tmp_path / "efficientnet_b3_imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)

    model = build_efficientnet_b3(2, pretrained=path)
    saved = imagenet_like.state_dict()
    for key in ("features.0.0.weight", "features.4.1.block.0.0.weight", "features.7.0.block.3.1.running_var"):
        assert torch.equal(model.state_dict()[key], saved[key])
    head = model.classifier[-1]
    assert head.out_features == 2 and not head.weight.any() and not head.bias.any()


def test_pretrained_from_our_checkpoint_and_errors(tmp_path, checkpoint):
    model = build_efficientnet_b3(3, pretrained=checkpoint)  # fp16 checkpoint of 2 classes: backbone only
    source, _ = load_classifier(checkpoint)
    key = "features.1.0.block.0.0.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    assert model.classifier[-1].out_features == 3

    with pytest.raises(ClassifierLoadError, match="pretrained weights not found"):
        build_efficientnet_b3(2, pretrained=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ClassifierLoadError, match="not a readable pretrained weights file"):
        build_efficientnet_b3(2, pretrained=bad)
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ClassifierLoadError, match="does not fit EfficientNet-B3"):
        build_efficientnet_b3(2, pretrained=bad)
