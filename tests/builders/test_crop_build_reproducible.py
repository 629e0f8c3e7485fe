"""Issue 11: the README's `workbench dataset crops` rebuilds exactly the shipped classifier's data. The options a
build used are stored (build_report.json, and through training the manifest entry); building again with them gives
the same split and byte-identical crops."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import BCCD_ROOT, need


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


def test_a_build_from_its_stored_options_is_identical(tmp_path, datasets_root, census_slice):
    need(BCCD_ROOT)
    from workbench.builders.crop_set import CropBuildOptions, build_crops

    first = tmp_path / "first"
    build_crops(datasets_root, first, census_slice[0], CropBuildOptions(size=48, limit=1, seed=0))
    stored = json.loads((first / "build_report.json").read_text())["options"]
    options = CropBuildOptions(**{**stored, "sources": tuple(stored["sources"])})
    second = tmp_path / "second"
    build_crops(datasets_root, second, census_slice[0], options)
    assert (first / "split.csv").read_bytes() == (second / "split.csv").read_bytes()
    crops = _digest(first)
    assert crops and crops == _digest(second)
    assert json.loads((second / "build_report.json").read_text())["options"] == stored
