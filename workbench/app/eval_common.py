"""What every evaluation run shares: its outcome record and the small helpers of the three kinds
(eval_detection, eval_classifier, eval_pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from workbench.core.errors import DatasetError

IOU_MATCH = 0.5
Progress = Callable[[int, int], None]
XYXY = tuple[float, float, float, float]


@dataclass
class EvalOutcome:
    """What a finished eval run wrote: its folder, the metrics.json content, and images that could not be used."""

    run_dir: Path
    metrics: dict[str, Any]
    failed: list[str] = field(default_factory=list)


def _weights_info(info) -> dict[str, str]:
    return {"name": info.name, "path": info.path, "sha256": info.sha256, "backend": getattr(info, "backend", "torch")}


def _dataset_error(exc: Exception) -> DatasetError:
    return DatasetError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
