"""scripts/classifier_shift_stability.py on a real analysis: it reads the run, cuts and classifies the moved crops,
and a move of 0 px (the same crop eight times) has the known answer: no spread, no changed call."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from workbench.cli import main

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


def _script():
    path = REPO_ROOT / "scripts" / "classifier_shift_stability.py"
    spec = importlib.util.spec_from_file_location("shift_stability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shift_stability_of_an_analysed_sample(tmp_path, capsys):
    image = sorted((REPO_ROOT / "datasets" / "sample" / "images").glob("*.jpg"))[0]
    assert main(["analyze", str(image), "--out", str(tmp_path), "--no-png"]) == 0
    capsys.readouterr()
    script = _script()
    assert script.main([str(tmp_path), "--px", "0"]) == 0
    line = capsys.readouterr().out
    pattern = r"(\d+) cells; .* median ([\d.]+), 90th percentile ([\d.]+), max ([\d.]+); .*: (\d+)$"
    match = re.search(pattern, line.strip())
    assert match, line
    cells, median, p90, largest, changed = match.groups()
    assert int(cells) >= 1 and float(largest) == 0.0 and int(changed) == 0
    assert script.main([str(tmp_path)]) == 0
    assert re.search(r"moved by 1 px: median [\d.]+", capsys.readouterr().out)
    assert script.main([str(tmp_path), "--px", "0", "--d4"]) == 0    # eight views of one crop, eight times: no spread
    assert re.search(r"\(d4 average\): \d+ cells; .* max 0\.000; .*: 0$", capsys.readouterr().out.strip())
