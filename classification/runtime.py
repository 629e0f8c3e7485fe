"""An exported classifier (OpenVINO IR or ONNX, written by `classification.export`) in place of the PyTorch network.

`BlastClassifier(..., net=ExportedClassifierNet(path, backend))` crops, prepares and batches exactly as with the
PyTorch network, and takes the softmax of the same logits: only the forward pass runs on another runtime. The export
carries the checkpoint's spec (class names, input size, mean / std, crop field, threshold), so it is used as the
weights were trained.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from classification.records import ClassifierSpec
from workbench.core.errors import ClassifierLoadError
from workbench.core.runtimes import RUNTIMES, model_file, open_runtime, read_sidecar

SPEC_KEY = "smear_workbench_spec"     # ONNX metadata_props key / metadata.yaml key holding the spec as JSON
INPUT_NAME, OUTPUT_NAME = "crops", "logits"


def spec_to_json(spec: ClassifierSpec) -> str:
    return json.dumps({f.name: getattr(spec, f.name) for f in fields(ClassifierSpec)}, sort_keys=True)


def spec_from_json(text: Any, where: Path) -> ClassifierSpec:
    """The spec an export was written with; an unreadable one is a ClassifierLoadError (one line)."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    known = {f.name for f in fields(ClassifierSpec)}
    if not isinstance(data, dict) or not {"architecture", "class_names", "input_size", "mean", "std"} <= set(data):
        raise ClassifierLoadError(f"{where} is not a Smear Workbench classifier export (no classifier spec in its "
                                  f"metadata)")
    data = {k: v for k, v in data.items() if k in known}
    names, size = data["class_names"], data["input_size"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names) \
            or not isinstance(size, int) or size < 1:
        raise ClassifierLoadError(f"{where}: the classifier spec in its metadata is damaged")
    data["mean"], data["std"] = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
    return ClassifierSpec(**data)


class ExportedClassifierNet:
    """Callable like the torch network: a float NCHW batch (torch tensor) in, logits (torch tensor) out."""

    def __init__(self, path: Path | str, backend: str, threads: int | None = None) -> None:
        if backend not in RUNTIMES:
            raise ClassifierLoadError(f"unknown classifier backend {backend!r} (expected one of "
                                      f"{', '.join(RUNTIMES)})")
        self.path = Path(path)
        self.backend = backend
        if not self.path.exists():
            raise ClassifierLoadError(f"{backend} classifier export not found: {self.path}")
        self.net = open_runtime(backend, model_file(self.path, backend, ClassifierLoadError), "classifier export",
                                ClassifierLoadError, threads)
        if backend == "openvino":
            text = read_sidecar(self.path, ClassifierLoadError).get(SPEC_KEY)
        else:
            text = self.net.metadata.get(SPEC_KEY)
        self.spec = spec_from_json(text, self.path)

    def __call__(self, batch):
        import torch

        return torch.from_numpy(self.net(batch.detach().cpu().numpy()))

    def eval(self) -> "ExportedClassifierNet":   # the torch network's call, a no-op here
        return self

    def to(self, *_: Any, **__: Any) -> "ExportedClassifierNet":
        return self
