"""The exported detector: written as ultralytics writes exports, run with a dynamic batch (tiles go through in
batches, never one call per tile), and every hostile export file refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.errors import DetectorLoadError


@pytest.fixture(scope="module")
def tiny_onnx(tiny_detector, tmp_path_factory):
    from detection.export import export_detector

    return export_detector(tiny_detector, "onnx", tmp_path_factory.mktemp("tiny_onnx"), imgsz=640)


def test_export_follows_ultralytics_conventions(tiny_onnx, tiny_detector, bccd_image):
    """`<stem>.onnx` with a dynamic batch and size and ultralytics' metadata: ultralytics' own AutoBackend loads it,
    and its boxes are ours."""
    import onnx

    from detection.runtime import ExportedYolo
    from workbench.core.images import load_image
    from workbench.core.ultralytics_env import import_ultralytics

    assert tiny_onnx.name == f"{tiny_detector.stem}.onnx"
    graph = onnx.load(str(tiny_onnx)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    ours = ExportedYolo(tiny_onnx, "onnxruntime")
    assert ours.names == {0: "wbc"} and ours.dynamic
    bgr = np.ascontiguousarray(load_image(bccd_image)[:, :, ::-1])
    import_ultralytics()
    from ultralytics import YOLO

    theirs = YOLO(str(tiny_onnx), task="detect").predict(bgr, conf=0.001, iou=0.5, imgsz=640, max_det=15,
                                                         verbose=False)[0].boxes.data.numpy()
    mine = ours.predict([bgr], 0.001, 0.5, 640, None, 15)[0]
    assert mine.shape == theirs.shape and np.allclose(mine, theirs, atol=1e-3)


def test_tiles_go_through_the_exported_network_in_batches(exported_weights, allidb1_canon_image):
    from detection.predictor import WbcDetector
    from detection.runtime import ExportedYolo
    from workbench.app.weights import Manifest
    from workbench.core.images import load_image

    manifest = Manifest.in_folder(exported_weights)
    entry = manifest.default("detect")
    export = next(e for e in manifest.exports_of(entry.sha256, "detect") if e.format == "openvino")
    net = ExportedYolo(exported_weights / export.path, "openvino")
    batches = []
    run = net.net._run
    net.net._run = lambda batch: batches.append(batch.shape[0]) or run(batch)
    detector = WbcDetector(manifest.file_of(entry), pixel_size_um=entry.pixel_size_um, net=net)
    out = detector.detect(load_image(allidb1_canon_image), 0.085)   # ALL-IDB1 Canon: ~0.085 um/px
    assert out.tiled and out.n_tiles > 8 and out.boxes
    assert batches == [min(8, out.n_tiles - i) for i in range(0, out.n_tiles, 8)]   # tiling.batch = 8


def _one_line(err) -> str:
    text = str(err.value)
    assert text and "\n" not in text
    return text


def test_hostile_export_files_are_one_line_errors(tiny_onnx, tmp_path):
    from detection.runtime import ExportedYolo

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 100)
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(garbage, "onnxruntime")
    assert "onnxruntime cannot load" in _one_line(err)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[:5000])
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(truncated, "onnxruntime")
    _one_line(err)
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(tmp_path / "missing.onnx", "onnxruntime")
    assert "not found" in _one_line(err)

    folder = tmp_path / "x_openvino_model"
    folder.mkdir()
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(folder, "openvino")
    assert "holds no .xml" in _one_line(err)
    (folder / "x.xml").write_text("<net name='x'><layers>", encoding="utf-8")
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(folder, "openvino")
    assert "openvino cannot load" in _one_line(err)


def test_hostile_openvino_metadata_is_a_one_line_error(exported_weights, tmp_path):
    """A real OpenVINO model beside a metadata.yaml that is an alias bomb, or not a mapping, or names no classes."""
    import shutil

    from detection.runtime import ExportedYolo
    from workbench.app.weights import Manifest

    manifest = Manifest.in_folder(exported_weights)
    entry = manifest.default("detect")
    export = next(e for e in manifest.exports_of(entry.sha256, "detect") if e.format == "openvino")
    folder = tmp_path / export.path
    shutil.copytree(exported_weights / export.path, folder)
    for text, expected in (("a: &a [1]\nb: [*a, *a]\n", "cannot read metadata.yaml"),
                           ("- just\n- a list\n", "not a mapping"),
                           ("task: detect\nstride: 32\n", "not an ultralytics YOLO export")):
        (folder / "metadata.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(DetectorLoadError) as err:
            ExportedYolo(folder, "openvino")
        assert expected in _one_line(err)


def test_an_export_without_ultralytics_metadata_is_refused(tiny_onnx, tmp_path):
    import onnx

    from detection.runtime import ExportedYolo

    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(DetectorLoadError) as err:
        ExportedYolo(bare, "onnxruntime")
    assert "not an ultralytics YOLO export" in _one_line(err)
