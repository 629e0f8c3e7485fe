"""Weight averaging of detector checkpoints (detection.averaging, `workbench train average`).

The reference is arithmetic: a copy of the shipped detector with every float tensor shifted by a known amount
averages with the original to the original plus half that shift.
"""

from __future__ import annotations

import pytest
import torch

from detection.averaging import average_detectors
from workbench.app.weights import resolve_weights
from workbench.core.errors import DetectorLoadError

SHIFT = 0.02


@pytest.fixture(scope="module")
def v2():
    resolved = resolve_weights("wbc-yolov8n-v2", "detect")
    return resolved.path, resolved.entry.pixel_size_um


def _shifted_copy(path, out, shift=SHIFT, pixel_size=None):
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = checkpoint["model"].float()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(shift)
    if pixel_size is not None:
        model.smear_pixel_size_um = pixel_size
    checkpoint["model"] = model.half()
    torch.save(checkpoint, out)
    return out


def _floats(path):
    state = torch.load(path, map_location="cpu", weights_only=False)["model"].float().state_dict()
    return {k: v for k, v in state.items() if v.is_floating_point()}


def test_average_is_the_mean_of_the_weights(v2, tmp_path):
    path, pixel_size = v2
    shifted = _shifted_copy(path, tmp_path / "shifted.pt", pixel_size=pixel_size)
    result = average_detectors([path, shifted], tmp_path / "avg.pt", [pixel_size, None])
    original, averaged = _floats(path), _floats(result.path)
    assert averaged.keys() == original.keys() and result.tensors == len(original)
    # fp16 storage: the shifted copy and the average are each rounded once (relative 2^-11 each)
    for key in original:
        assert torch.allclose(averaged[key], original[key] + SHIFT / 2, rtol=2e-3, atol=2e-3), key
    moved = torch.cat([(averaged[k] - original[k]).flatten() for k in original])
    assert moved.median().item() == pytest.approx(SHIFT / 2, abs=1e-3)
    assert result.class_names == ["wbc", "rbc", "platelet"] and result.pixel_size_um == pytest.approx(pixel_size)


def test_averaged_detector_loads_and_keeps_its_pixel_size(v2, tmp_path):
    from detection.predictor import WbcDetector

    path, pixel_size = v2
    result = average_detectors([path, path], tmp_path / "same.pt", [pixel_size, pixel_size])
    detector = WbcDetector(result.path)
    assert detector.class_names == ["wbc", "rbc", "platelet"]
    assert detector.pixel_size_um == pytest.approx(pixel_size)   # from the file: no manifest entry names it
    assert max((a - b).abs().max().item() for a, b in zip(_floats(path).values(), _floats(result.path).values())) == 0


def test_models_of_different_pixel_sizes_or_classes_are_refused(v2, tmp_path):
    path, pixel_size = v2
    other_scale = _shifted_copy(path, tmp_path / "scale.pt", shift=0.0, pixel_size=2 * pixel_size)
    with pytest.raises(DetectorLoadError, match="different pixel sizes"):
        average_detectors([path, other_scale], tmp_path / "x.pt", [pixel_size, None])
    with pytest.raises(DetectorLoadError, match="pixel sizes"):   # one scale unknown: refused, not guessed
        average_detectors([path, path], tmp_path / "x.pt", [pixel_size, None])
    one_class = resolve_weights("wbc-yolov8n-v1", "detect").path
    with pytest.raises(DetectorLoadError, match="one class list"):
        average_detectors([path, one_class], tmp_path / "x.pt", [pixel_size, None])
    assert not (tmp_path / "x.pt").exists()


def test_cli_reports_a_bad_file_on_one_line(capsys, tmp_path):
    from workbench.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["train", "average", "wbc-yolov8n-v2", str(bad), "--out", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0 and "bad.pt" in err and "Traceback" not in err
    assert not (tmp_path / "out.pt").exists()
