"""Uniform weight averaging of detector checkpoints ("model soup": Wortsman et al., ICML 2022).

Averaging the weights of a model and of a fine-tune of it (one pretrained start, so one loss basin) often ranks
boxes better than either; averaging models of different starts, classes or pixel sizes gives a broken model, so
those are refused. Checkpoints are loaded with detection.predictor.load_yolo (their pickles checked first).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from workbench.core.errors import DetectorLoadError
from workbench.core.fileio import atomic_open

log = logging.getLogger(__name__)

PIXEL_SIZE_TOLERANCE = 0.005   # relative: pixel sizes read from two records of one build agree to their rounding


@dataclass
class AveragedDetector:
    """What average_detectors wrote."""

    path: Path
    sources: list[Path]
    class_names: list[str]
    pixel_size_um: float | None
    tensors: int


def average_detectors(paths: Sequence[Path | str], out: Path | str, pixel_sizes: Sequence[float | None] = (),
                      trust: bool = False) -> AveragedDetector:
    """Average the floating-point tensors (weights and batch-norm statistics) of two or more YOLO checkpoints of
    one architecture and class list into `out`, which keeps the first checkpoint's other records. `pixel_sizes`:
    the pixel size each was trained at where its file does not carry it (the weights manifest); they must agree."""
    import torch

    from detection.predictor import PIXEL_SIZE_ATTR, load_yolo, trained_pixel_size

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise DetectorLoadError("averaging needs at least two detector checkpoints")
    models = [load_yolo(p, trust) for p in paths]
    names = [list(dict(m.names).values()) for m in models]
    for path, other in zip(paths[1:], names[1:]):
        if other != names[0]:
            raise DetectorLoadError(f"{path.name} has classes {other}, {paths[0].name} has {names[0]}: "
                                    "only checkpoints of one class list can be averaged")
    sizes = [trained_pixel_size(m) or (pixel_sizes[i] if i < len(pixel_sizes) else None)
             for i, m in enumerate(models)]
    known = [s for s in sizes if s]
    if known and (len(known) != len(sizes) or max(known) > min(known) * (1 + PIXEL_SIZE_TOLERANCE)):
        raise DetectorLoadError(f"the checkpoints were trained at different pixel sizes ({sizes} um/px): their "
                                "weights do not average into one model")
    states = [m.model.float().state_dict() for m in models]
    for path, state in zip(paths[1:], states[1:]):
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise DetectorLoadError(f"{path.name} is not the architecture of {paths[0].name}: cannot average them")
    averaged = {key: torch.stack([s[key] for s in states]).mean(0) if states[0][key].is_floating_point()
                else states[0][key] for key in states[0]}

    # the first file's records, as load_yolo read them (its model entry is replaced below, so a shallow copy does)
    checkpoint = dict(models[0].ckpt)
    model = copy.deepcopy(models[0].model).float()
    model.load_state_dict(averaged)
    if known:
        setattr(model, PIXEL_SIZE_ATTR, float(known[0]))
    checkpoint.update(model=model.half(), ema=None, optimizer=None, updates=None, best_fitness=None, epoch=-1,
                      averaged_from=[p.name for p in paths])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        torch.save(checkpoint, handle)
    log.info("averaged %d detectors -> %s", len(paths), out)
    return AveragedDetector(out, paths, names[0], known[0] if known else None,
                            sum(1 for v in averaged.values() if v.is_floating_point()))
