"""The exported classifier: the checkpoint's spec travels with it, any batch size runs (dynamic batch), the logits
and p_blast on real crops are PyTorch's, and a foreign or damaged export is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.errors import ClassifierLoadError


def logits_of(net, batch: np.ndarray) -> np.ndarray:
    """Logits of a float32 NCHW batch by a torch network or an exported one (ExportedClassifierNet)."""
    import torch

    with torch.inference_mode():
        return net(torch.from_numpy(batch)).float().numpy()


@pytest.fixture(scope="module")
def shipped(exported_weights):
    """The shipped default classifier and its OpenVINO and ONNX exports (tests/conftest.py exported_weights): an
    untrained B3's features are ~1e-14 in eval mode, so only trained weights tell two runtimes apart."""
    from workbench.app.weights import Manifest

    manifest = Manifest.in_folder(exported_weights)
    entry = manifest.default("classify")
    found = {e.format: exported_weights / e.path for e in manifest.exports_of(entry.sha256, "classify")}
    return manifest.file_of(entry), {"onnxruntime": found["onnx"], "openvino": found["openvino"]}


@pytest.fixture(scope="module")
def reference(shipped):
    """PyTorch on 5 real ALL-IDB2 cells (blasts and normal cells), cropped as analyze crops a cell: the classifier,
    the network input, its logits and the probabilities (computed once: B3 on PyTorch is the slow part)."""
    from classification.predictor import BlastClassifier
    from tests.conftest import ALLIDB2, need
    from workbench.core.crops import crop_cell, to_tensor_batch
    from workbench.core.images import load_image

    classifier = BlastClassifier(shipped[0], batch=4)
    files = sorted(need(ALLIDB2 / "img").glob("*.tif"))
    files = files[:3] + files[-2:]   # names end _1 (blast) / _0 (normal): both kinds
    size = classifier.input_size
    crops = [crop_cell(im, (0, 0, im.shape[1], im.shape[0]), 0.0, size) for im in map(load_image, files)]
    batch = to_tensor_batch(crops, classifier.spec.mean, classifier.spec.std).numpy()
    return classifier, crops, batch, logits_of(classifier.model, batch), classifier.predict_proba(crops)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_classifier_is_the_checkpoint(shipped, reference, backend):
    from classification.predictor import BlastClassifier
    from classification.runtime import ExportedClassifierNet

    classifier, crops, batch, logits, probs = reference
    net = ExportedClassifierNet(shipped[1][backend], backend)
    assert net.spec == classifier.spec                      # class names, size, mean/std, crop field, threshold
    exported = BlastClassifier(shipped[0], batch=4, net=net)
    assert (exported.threshold, exported.margin) == (classifier.threshold, classifier.margin)
    # batch sizes the export was not traced with (1), and more than the classifier's batch (5 > 4: two calls)
    assert np.abs(logits_of(net, batch[:1]) - logits[:1]).max() < 1e-4
    assert np.abs(logits_of(net, batch) - logits).max() < 1e-4
    mine = exported.predict_proba(crops)
    assert np.abs(mine - probs).max() < 1e-5 and np.ptp(probs[:, 0]) > 0.1   # blasts and normal cells apart


def test_an_onnx_file_without_our_spec_is_refused(shipped, tmp_path):
    import onnx

    from classification.runtime import ExportedClassifierNet

    proto = onnx.load(str(shipped[1]["onnxruntime"]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ClassifierLoadError, match="not a Smear Workbench classifier export") as err:
        ExportedClassifierNet(bare, "onnxruntime")
    assert "\n" not in str(err.value)


def test_a_damaged_spec_or_model_is_refused_in_one_line(shipped, tmp_path):
    import shutil

    from classification.runtime import SPEC_KEY, ExportedClassifierNet

    folder = tmp_path / shipped[1]["openvino"].name
    shutil.copytree(shipped[1]["openvino"], folder)
    (folder / "metadata.yaml").write_text(f"{SPEC_KEY}: '{{\"architecture\": \"x\", \"class_names\": [\"blast\"], "
                                          f"\"input_size\": 64, \"mean\": [0,0,0], \"std\": [1,1,1]}}'\n")
    with pytest.raises(ClassifierLoadError, match="spec in its metadata is damaged"):
        ExportedClassifierNet(folder, "openvino")
    binary = next(folder.glob("*.bin"))
    binary.write_bytes(binary.read_bytes()[:1000])
    with pytest.raises(ClassifierLoadError) as err:
        ExportedClassifierNet(folder, "openvino")
    assert "openvino cannot load" in str(err.value) and "\n" not in str(err.value)
