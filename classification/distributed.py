"""Distributed training plumbing (torchrun / DistributedDataParallel): who this process is, its device, and the
collectives the trainer needs (sums, gathers, barriers), all no-ops in a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from classification.train_config import ClassifierTrainConfig


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(config: ClassifierTrainConfig, dist: Dist) -> torch.device:
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} asked for, but CUDA is not available")
        if dist.on:  # one GPU per process; torchrun's LOCAL_RANK picks it
            device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


def all_reduce_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    if not dist.on:
        return values
    import torch.distributed as td

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    td.all_reduce(tensor)
    return tensor.tolist()


def gather(obj: Any, dist: Dist) -> list[Any]:
    if not dist.on:
        return [obj]
    import torch.distributed as td

    out: list[Any] = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def barrier(dist: Dist) -> None:
    if dist.on:
        import torch.distributed as td

        td.barrier()


# --------------------------------------------------------------------------------------------------------------------
# data
