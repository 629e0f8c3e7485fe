"""Blast / normal labels for detected cells: crop, batch, classify."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from classification.model import load_classifier
from classification.preprocess import prepare_batch, preprocess_of
from workbench.core.classmap import BLAST, NORMAL
from classification.records import CellLabel, ClassifierSpec
from workbench.core.crops import Box, crop_cells
from workbench.core.errors import ClassifierLoadError

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
        threshold: float | None = None,
        net: Any = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        if margin < 0:
            raise ValueError(f"margin must not be negative, not {margin}")
        # `net`: an exported network with its spec (classification.runtime) in place of the checkpoint's torch network
        self._model, self._spec = (net, net.spec) if net is not None else load_classifier(weights, device)
        lowered = [name.lower() for name in self._spec.class_names]
        if blast_class.lower() not in lowered:
            raise ClassifierLoadError(
                f"classifier classes {self._spec.class_names} do not include the blast class {blast_class!r}"
            )
        self._blast_index = lowered.index(blast_class.lower())
        self.preprocess = preprocess_of(self._spec)   # part of the weights: applied to every crop (prepare)
        self._device = torch.device(device)
        self.batch = batch
        # weights trained on field-of-view crops carry their own margin; the setting frames box-cut crops
        self.margin = self._spec.crop_margin if self._spec.field_um is not None and self._spec.crop_margin is not None \
            else margin
        self.threshold = float(threshold) if threshold is not None else self._spec.threshold
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), not {self.threshold}")
        self._self_test(Path(weights))

    def _self_test(self, path: Path) -> None:
        """Damaged weights (flipped bytes in a float) load fine and then call every cell blast with p_blast NaN:
        one forward pass on a plain crop says so at load time instead."""
        size = self._spec.input_size
        probe = np.full((size, size, 3), 200, np.uint8)
        probe[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = (120, 80, 160)   # a purple disc-ish block
        if not np.isfinite(self.predict_proba([probe])).all():
            raise ClassifierLoadError(f"{path}: the classifier gives non-finite probabilities (damaged weights?)")

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

    def prepare(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """The network input of crops at input_size: the weights' preprocessing, then their mean / std
        (classification.preprocess.prepare_batch, the same step training applies)."""
        return prepare_batch(crops, self._spec)

    def predict_proba(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) class probabilities for prepared crops, run `batch` at a time."""
        n_classes = len(self._spec.class_names)
        if len(crops) == 0:
            return np.zeros((0, n_classes), np.float32)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch):
                chunk = self.prepare(crops[start : start + self.batch])
                logits = self._model(chunk.to(self._device))
                rows.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(rows, axis=0)

    def field_px(self, um_per_px: float | None) -> float | None:
        """The crop side in image pixels for weights trained on a fixed field of view; None for box framing (older
        weights, or an image whose pixel size is unknown)."""
        field_um = self._spec.field_um
        if field_um is None or um_per_px is None or not um_per_px > 0:
            return None
        return field_um / um_per_px

    def crops(self, image: np.ndarray, boxes: Sequence[Box], um_per_px: float | None = None) -> list[np.ndarray]:
        return crop_cells(image, boxes, self.margin, self._spec.input_size, self.field_px(um_per_px))

    def label(self, row: np.ndarray) -> CellLabel:
        """The label of one probability row, in the app's one class map (workbench.core.classmap): `blast` when
        p_blast reaches the operating threshold (chosen on validation, stored with the weights), else `normal`,
        whatever the checkpoint calls its classes (`BLAST` / `Normal`, ...): counts and results never depend on a
        model's spelling. `label_conf` is the probability of the call (p_blast, or 1 - p_blast)."""
        p_blast = float(row[self._blast_index])
        if p_blast >= self.threshold:
            return CellLabel(label=BLAST, label_conf=p_blast, p_blast=p_blast)
        return CellLabel(label=NORMAL, label_conf=float(1.0 - p_blast), p_blast=p_blast)

    def classify_boxes(self, image: np.ndarray, boxes: Sequence[Box],
                       um_per_px: float | None = None) -> list[CellLabel]:
        """One label per box of an RGB uint8 image, in box order. `um_per_px`: the image's pixel size, which frames
        the crops of field-of-view weights (see field_px)."""
        probs = self.predict_proba(self.crops(image, boxes, um_per_px))
        return [self.label(row) for row in probs]
