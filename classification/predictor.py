"""Blast / normal labels for detected cells: crop, batch, classify."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from classification.crops import Box, crop_cells, to_tensor_batch
from classification.errors import ClassifierLoadError
from classification.model import load_classifier
from classification.records import CellLabel, ClassifierSpec

log = logging.getLogger(__name__)

__all__ = ["BlastClassifier", "CellLabel"]


class BlastClassifier:
    """A loaded classifier checkpoint that labels cell crops; thread count is left to the caller."""

    def __init__(
        self,
        weights: Path | str,
        device: str | torch.device = "cpu",
        batch: int = 32,
        margin: float = 0.15,
        blast_class: str = "blast",
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        if margin < 0:
            raise ValueError(f"margin must not be negative, not {margin}")
        self._model, self._spec = load_classifier(weights, device)
        lowered = [name.lower() for name in self._spec.class_names]
        if blast_class.lower() not in lowered:
            raise ClassifierLoadError(
                f"classifier classes {self._spec.class_names} do not include the blast class {blast_class!r}"
            )
        self._blast_index = lowered.index(blast_class.lower())
        self._device = torch.device(device)
        self.batch = batch
        self.margin = margin

    @property
    def spec(self) -> ClassifierSpec:
        return self._spec

    @property
    def class_names(self) -> list[str]:
        return list(self._spec.class_names)

    @property
    def input_size(self) -> int:
        return self._spec.input_size

    @property
    def model(self) -> nn.Module:
        return self._model

    def predict_proba(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) class probabilities for prepared crops, run `batch` at a time."""
        n_classes = len(self._spec.class_names)
        if len(crops) == 0:
            return np.zeros((0, n_classes), np.float32)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch):
                chunk = to_tensor_batch(crops[start : start + self.batch], self._spec.mean, self._spec.std)
                logits = self._model(chunk.to(self._device))
                rows.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(rows, axis=0)

    def classify_boxes(self, image: np.ndarray, boxes: Sequence[Box]) -> list[CellLabel]:
        """One label per box of an RGB uint8 image, in box order."""
        crops = crop_cells(image, boxes, self.margin, self._spec.input_size)
        probs = self.predict_proba(crops)
        labels = []
        for row in probs:
            best = int(np.argmax(row))
            labels.append(
                CellLabel(
                    label=self._spec.class_names[best],
                    label_conf=float(row[best]),
                    p_blast=float(row[self._blast_index]),
                )
            )
        return labels
