"""Exporting a classifier checkpoint for OpenVINO or ONNX Runtime, with a dynamic batch axis.

ONNX: `torch.onnx.export` (TorchScript exporter, opset 17), input `crops` (N, 3, S, S), output `logits` (N, C); the
checkpoint's spec (class names, input size, mean / std, crop field, threshold) is kept in the file's metadata_props.
OpenVINO: `openvino.convert_model` of the same network, in fp32 (stored in fp16, the weights the converter folds moved
a real smear's p_blast by 1.4e-3 against PyTorch; in fp32 by under 1e-6), computed in f32 (workbench.core.runtimes).
The spec goes into a metadata.yaml beside the model, as ultralytics does for its exports.
File names follow ultralytics': `<stem>.onnx`, `<stem>_openvino_model/{<stem>.xml, <stem>.bin, metadata.yaml}`.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import yaml

from classification.runtime import INPUT_NAME, OUTPUT_NAME, SPEC_KEY, spec_to_json
from workbench.core.errors import ClassifierLoadError
from workbench.core.runtimes import FORMATS, export_name, first_line, missing_runtime, put_in_place

log = logging.getLogger(__name__)
OPSET = 17


def export_classifier(weights: Path | str, fmt: str, out_dir: Path | str) -> Path:
    """Export the checkpoint `weights` as `fmt` (openvino | onnx) into `out_dir`; returns the .onnx file or the
    OpenVINO folder (written in a temporary folder first and moved into place)."""
    import torch

    from classification.model import load_classifier

    if fmt not in FORMATS:
        raise ClassifierLoadError(f"unknown export format {fmt!r} (openvino or onnx)")
    needed = "openvino" if fmt == "openvino" else None
    if needed and missing_runtime(needed):
        raise ClassifierLoadError(missing_runtime(needed))
    weights, out_dir = Path(weights), Path(out_dir)
    model, spec = load_classifier(weights, "cpu")
    example = torch.zeros(1, 3, spec.input_size, spec.input_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / export_name(weights.stem, fmt)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp:
        try:
            made = _onnx(model, example, Path(tmp), weights.stem, spec) if fmt == "onnx" else \
                _openvino(model, example, Path(tmp), weights.stem, spec)
        except ClassifierLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - the converters raise their own error types
            raise ClassifierLoadError(f"exporting {weights.name} to {fmt} failed: {first_line(exc)}") from None
        put_in_place(made, target)
    log.info("exported %s to %s", weights, target)
    return target


def _onnx(model, example, tmp: Path, stem: str, spec) -> Path:
    import onnx
    import torch

    path = tmp / f"{stem}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notes
        torch.onnx.export(model, example, str(path), opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec_to_json(spec)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _openvino(model, example, tmp: Path, stem: str, spec) -> Path:
    import openvino as ov

    folder = tmp / f"{stem}_openvino_model"
    folder.mkdir()
    size = spec.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the converter traces with TorchScript, which torch calls deprecated
        converted = ov.convert_model(model, example_input=example, input=[ov.PartialShape([-1, 3, size, size])])
    ov.save_model(converted, str(folder / f"{stem}.xml"), compress_to_fp16=False)
    (folder / "metadata.yaml").write_text(yaml.safe_dump({SPEC_KEY: spec_to_json(spec), "format": "openvino",
                                                          "dynamic_batch": True}), encoding="utf-8")
    return folder
