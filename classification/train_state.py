"""The classifier trainer's resumable state: `last_state.pt` (fp32 model, optimizer, best snapshot, RNG states,
history), written atomically every epoch and read back with weights_only=True (data, never code)."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from classification.train_config import STATE_FORMAT, ClassifierTrainConfig, PlateauRule
from workbench.core.fileio import atomic_open


def _cpu_copy(state: Any) -> Any:
    return copy.deepcopy(_to_cpu(state))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, rule: PlateauRule,
                best_model: dict | None, best_optim: dict | None, best_val: dict, history: list[dict], epoch: int,
                stopped: bool, split_sha: str, config: ClassifierTrainConfig) -> None:
    state = {
        "format": STATE_FORMAT, "epoch": epoch, "stopped": stopped, "lr": rule.lr, "rule": asdict(rule),
        "model": _to_cpu(model.state_dict()), "optimizer": _to_cpu(optimizer.state_dict()),
        "best_model": best_model, "best_optimizer": best_optim, "best_val": _plain_json(best_val),
        "history": history, "split_sha256": split_sha, "config": asdict(config), "rng": _rng_state(),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)  # data only, never code
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a classifier training state ({STATE_FORMAT})")
    return state
