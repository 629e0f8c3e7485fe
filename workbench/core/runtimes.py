"""The two CPU inference runtimes an exported model can run on: OpenVINO and ONNX Runtime.

Both the detector (`detection.runtime`) and the classifier (`classification.runtime`) open their exported networks
here: one float32 NCHW batch in (any batch size: the exports have a dynamic batch axis), the model's first output
out. Nothing here imports torch.

OpenVINO is compiled with `INFERENCE_PRECISION_HINT f32`: on CPUs with AVX512-BF16 or AMX its CPU plugin otherwise
runs in bfloat16, which moved a smear's detector confidences by 0.03 and boxes by 10 px against PyTorch (measured
on this project's CI machine, an AMD EPYC with avx512_bf16); in f32 they agree within 1e-5.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Callable

import numpy as np

# backend name (settings, --backend) -> (the Python package that runs it, the export format it runs)
RUNTIMES = {"openvino": ("openvino", "openvino"), "onnxruntime": ("onnxruntime", "onnx")}
FORMATS = {fmt: backend for backend, (_, fmt) in RUNTIMES.items()}   # export format -> backend


def missing_runtime(backend: str) -> str | None:
    """Why `backend` cannot run here (its package is not installed), or None."""
    package = RUNTIMES[backend][0]
    if importlib.util.find_spec(package) is None:
        return f"the {backend} backend needs the '{package}' package, which is not installed (pip install {package})"
    return None


def model_file(path: Path, backend: str, error: type[Exception]) -> Path:
    """The file a runtime opens: an .onnx file itself, or the .xml inside an OpenVINO export folder
    (`<name>_openvino_model/`, as ultralytics' exporter names it)."""
    path = Path(path)
    if backend == "openvino" and path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise error(f"OpenVINO export {path} holds no .xml model")
        return found[0]
    return path


def read_sidecar(path: Path, error: type[Exception]) -> dict:
    """The metadata.yaml of an OpenVINO export (in its folder, or beside its .xml), read as untrusted YAML."""
    from workbench.core.yaml_io import load_yaml_file, short_error

    sidecar = (path if path.is_dir() else path.parent) / "metadata.yaml"
    try:
        meta = load_yaml_file(sidecar)
    except Exception as exc:  # noqa: BLE001 - missing, unreadable, not text, not YAML: one line either way
        raise error(f"export {path}: cannot read {sidecar.name} ({short_error(exc)})") from None
    if not isinstance(meta, dict):
        raise error(f"export {path}: {sidecar.name} is not a mapping")
    return meta


def export_name(stem: str, fmt: str) -> str:
    """Where an export of `<stem>.pt` goes, as ultralytics' exporter names it: `<stem>.onnx`, `<stem>_openvino_model/`."""
    return f"{stem}.onnx" if fmt == "onnx" else f"{stem}_openvino_model"


def put_in_place(made: Path, target: Path) -> Path:
    """Move a finished export (file or folder, made in a temporary folder beside `target`) over the previous one."""
    import shutil

    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    shutil.move(str(made), str(target))
    return target


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit]}" if text else type(exc).__name__


class CompiledNet:
    """A loaded exported network. `metadata`: the ONNX file's metadata_props ({} for OpenVINO, whose exports keep
    theirs in a metadata.yaml beside the model, as ultralytics' exporter writes it)."""

    def __init__(self, backend: str, run: Callable[[np.ndarray], np.ndarray], metadata: dict[str, str]) -> None:
        self.backend = backend
        self.metadata = metadata
        self._run = run
        self._lock = threading.Lock()   # one infer request per network: calls from two threads take turns

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run(np.ascontiguousarray(batch, dtype=np.float32))


def open_runtime(backend: str, model_file: Path, what: str, error: type[Exception],
                 threads: int | None = None) -> CompiledNet:
    """`model_file` (an .onnx file, or the .xml of an OpenVINO IR) compiled for the CPU. Every way this can fail
    (runtime not installed, missing, truncated or foreign file) is one `error` line. `threads`: inference threads
    (None: the runtime's default, one per physical core)."""
    problem = missing_runtime(backend)
    if problem:
        raise error(problem)
    model_file = Path(model_file)
    if not model_file.is_file():
        raise error(f"{what} not found: {model_file}")
    try:
        if backend == "openvino":
            return _open_openvino(model_file, threads)
        return _open_onnxruntime(model_file, threads)
    except Exception as exc:  # noqa: BLE001 - both runtimes raise their own error types for a bad file
        raise error(f"{backend} cannot load the {what} {model_file}: {first_line(exc)}") from None


def _open_openvino(model_file: Path, threads: int | None) -> CompiledNet:
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(core.read_model(str(model_file)), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(batch: np.ndarray) -> np.ndarray:
        return request.infer({0: batch})[output].copy()   # the request reuses its output buffer

    return CompiledNet("openvino", run, {})


def _open_onnxruntime(model_file: Path, threads: int | None) -> CompiledNet:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3   # the graph optimiser's notes are not the user's business
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return CompiledNet("onnxruntime", run, dict(session.get_modelmeta().custom_metadata_map))
