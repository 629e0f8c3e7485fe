"""ultralytics' DetectionTrainer, taught three things the smear data needs (and nothing else changed):

1. Partially labelled sources. BCCD and TXL-PBC box white cells, red cells and platelets; ALL-IDB1 boxes white cells
   only. Its red cells must not be taught as background of the `rbc` class, so the data yaml lists, per path prefix,
   the classes a source labels (`partial_labels: {"allidb1/": [0]}`), and the loss drops the *negative* part of the
   other classes' BCE on those images: an anchor outside every box of class c gives no gradient to class c there.
   Mosaics mix images of several sources, so the dataset records which images each training sample is made of
   (`label_sources`) and a class is masked if any of them leaves it unlabelled; positives (anchors inside a labelled
   box of that class) always count. The `wbc` class is labelled everywhere and never masked.
2. Pixel size. The data is resampled to one pixel size (`workbench.core.scale`), which ultralytics would undo by
   resizing every image's long side to `imgsz`. Images are only ever shrunk here (those larger than `imgsz`), never
   enlarged, so a 360 px field keeps its 56 px red cells.
3. Model selection by the class that is used: best.pt is chosen by the `wbc` fitness (0.1 AP50 + 0.9 AP50-95 of
   class 0 on the validation set), not by the mean over classes that nothing downstream reads.

Checkpoints hold a plain ultralytics DetectionModel (the loss is not saved), so they load anywhere.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.stain import StainJitter
from workbench.core.ultralytics_env import import_ultralytics

import_ultralytics()

import cv2  # noqa: E402
import torch  # noqa: E402
from ultralytics.data.augment import Mosaic  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils.loss import v8DetectionLoss  # noqa: E402
from ultralytics.utils.tal import make_anchors  # noqa: E402

log = logging.getLogger(__name__)

WBC_CLASS_ID = 0
SOURCES_KEY = "label_sources"


def labelled_classes(path: str, partial: dict[str, list[int]], nc: int) -> set[int]:
    """The classes labelled in the image at `path`: those of the first `partial` prefix found in the path (as a
    folder: `allidb1/` matches `.../allidb1/images/train/x.jpg`), else all `nc`."""
    norm = "/" + str(path).replace("\\", "/")
    for prefix, classes in partial.items():
        if "/" + prefix.strip("/") + "/" in norm:
            return {int(c) for c in classes}
    return set(range(nc))


def _find(transform: Any, kind: type) -> list:
    """Every transform of type `kind` inside ultralytics' nested Compose objects."""
    found = [transform] if isinstance(transform, kind) else []
    for child in getattr(transform, "transforms", None) or []:
        found += _find(child, kind)
    for attr in ("pre_transform",):
        child = getattr(transform, attr, None)
        if child is not None and child is not transform:
            found += _find(child, kind)
    return found


class StainTransform:
    """An ultralytics-style transform (labels dict in, labels dict out) applying `StainJitter` to "img" (BGR)."""

    def __init__(self, jitter: StainJitter) -> None:
        self.jitter = jitter

    def __call__(self, labels: dict) -> dict:
        # np.random is seeded per data-loader worker by ultralytics; draw this image's generator from it
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        labels["img"] = self.jitter(labels["img"], rng, bgr=True)
        return labels


class SmearYOLODataset(YOLODataset):
    """YOLODataset that never enlarges an image, tells which images each (mosaic) sample is made of, and adds the
    data yaml's `stain_augment` (StainJitter arguments) to the training transforms."""

    def build_transforms(self, hyp=None):
        transforms = super().build_transforms(hyp)
        stain = (self.data or {}).get("stain_augment") if self.augment else None
        if stain:
            transforms.transforms.insert(len(transforms.transforms) - 1, StainTransform(StainJitter(**stain)))
        return transforms

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for mosaic in _find(self.transforms, Mosaic):
            original = mosaic._cat_labels

            def cat_labels(mosaic_labels, _original=original):
                out = _original(mosaic_labels)
                out[SOURCES_KEY] = [f for labels in mosaic_labels for f in labels.get(SOURCES_KEY, [labels["im_file"]])]
                return out

            mosaic._cat_labels = cat_labels

    def get_image_and_label(self, index: int) -> dict:
        label = super().get_image_and_label(index)
        label[SOURCES_KEY] = [label["im_file"]]   # every sample has the key, or collate would misalign the batch
        return label

    def load_image(self, i: int, rect_mode: bool = True, resize_short: bool = False):
        im, f = self.ims[i], self.im_files[i]
        if im is not None:
            return self.ims[i], self.im_hw0[i], self.im_hw[i]
        im = cv2.imread(f)
        if im is None:
            raise FileNotFoundError(f"Image Not Found {f}")
        h0, w0 = im.shape[:2]
        imgsz = max(self.imgsz) if isinstance(self.imgsz, (tuple, list)) else self.imgsz
        r = imgsz / max(h0, w0)
        if r < 1:  # only shrink: a smaller image keeps its pixel size (see the module docstring)
            im = cv2.resize(im, (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)),
                            interpolation=cv2.INTER_AREA)
        if self.augment and self.cache != "ram":
            self.ims[i], self.im_hw0[i], self.im_hw[i] = im, (h0, w0), im.shape[:2]
            self.buffer.append(i)
            if 1 < len(self.buffer) >= self.max_buffer_length:
                j = self.buffer.pop(0)
                self.ims[j], self.im_hw0[j], self.im_hw[j] = None, None, None
        return im, (h0, w0), im.shape[:2]


class PartialLabelLoss(v8DetectionLoss):
    """v8DetectionLoss whose class BCE ignores the negatives of classes a sample's sources do not label."""

    def __init__(self, model, partial: dict[str, list[int]], **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.partial = dict(partial)

    def _weights(self, preds: dict, batch: dict) -> torch.Tensor | None:
        sources = batch.get(SOURCES_KEY) or [[f] for f in batch["im_file"]]
        missing = [set(range(self.nc)) - set.intersection(*(labelled_classes(f, self.partial, self.nc) for f in files))
                   for files in sources]
        if not any(missing):
            return None
        anchors, strides = make_anchors(preds["feats"], self.stride, 0.5)
        points = anchors * strides                                  # (A, 2) pixel centres of the anchors
        size = torch.tensor(preds["feats"][0].shape[2:], device=self.device) * self.stride[0]  # (h, w)
        weights = torch.ones(len(sources), points.shape[0], self.nc, device=self.device)
        idx = batch["batch_idx"].view(-1).to(self.device)
        cls = batch["cls"].view(-1).to(self.device).long()
        xywh = batch["bboxes"].to(self.device) * size[[1, 0, 1, 0]]
        xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        for i, classes in enumerate(missing):
            for c in classes:
                weights[i, :, c] = 0.0
                boxes = xyxy[(idx == i) & (cls == c)]
                if len(boxes):   # positives of a class this sample does label somewhere still count
                    inside = ((points[:, None, 0] >= boxes[None, :, 0]) & (points[:, None, 0] <= boxes[None, :, 2])
                              & (points[:, None, 1] >= boxes[None, :, 1]) & (points[:, None, 1] <= boxes[None, :, 3]))
                    weights[i, inside.any(1), c] = 1.0
        return weights

    def get_assigned_targets_and_loss(self, preds, batch, **kwargs):
        self.class_weights = self._weights(preds, batch)
        try:
            return super().get_assigned_targets_and_loss(preds, batch, **kwargs)
        finally:
            self.class_weights = None


def _offline_check_amp(model) -> bool:
    log.info("AMP check skipped (it needs a download); training with AMP on %s", next(model.parameters()).device)
    return next(model.parameters()).device.type == "cuda"


class SmearDetectionTrainer(DetectionTrainer):
    """DetectionTrainer with SmearYOLODataset, PartialLabelLoss and wbc-only model selection."""

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        import ultralytics.data.build as build
        from ultralytics.data.build import build_yolo_dataset
        from ultralytics.utils.torch_utils import unwrap_model

        gs = max(int(unwrap_model(self.model).stride.max()), 32)
        original = build.YOLODataset
        build.YOLODataset = SmearYOLODataset   # build_yolo_dataset names the class it builds
        try:
            return build_yolo_dataset(self.args, img_path, batch, self.data, mode=mode, rect=mode == "val", stride=gs)
        finally:
            build.YOLODataset = original

    def _setup_train(self):
        import ultralytics.engine.trainer as engine

        # ultralytics checks AMP by downloading yolo26n.pt; nothing may be downloaded here (and the GPUs we train
        # on run AMP fine), so the check is skipped with a log line instead of failing offline.
        original, engine.check_amp = engine.check_amp, _offline_check_amp
        try:
            super()._setup_train()
        finally:
            engine.check_amp = original
        if self.device.type == "cpu":
            # ultralytics trains on CPU with cpu_count - 1 torch threads and no loader workers (its trainer sets
            # workers=0 on CPU), which on a 2-core machine leaves one core idle: every core goes to the network.
            import os

            import torch

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(cores)
            log.info("CPU training on %d torch threads", cores)
        pixel_size = (self.data.get("pixel_size") or {}).get("um_per_px")
        if pixel_size:
            # the pixel size the data was resampled to travels inside every checkpoint (an attribute of the model,
            # pickled with it), so a run's best.pt used before it is registered is resampled the same way
            from ultralytics.utils.torch_utils import unwrap_model

            from detection.predictor import PIXEL_SIZE_ATTR

            for model in (unwrap_model(self.model), getattr(self.ema, "ema", None)):
                if model is not None:
                    setattr(model, PIXEL_SIZE_ATTR, float(pixel_size))
        partial = dict(self.data.get("partial_labels") or {})
        if partial:
            from ultralytics.utils.torch_utils import unwrap_model

            model = unwrap_model(self.model)
            model.criterion = PartialLabelLoss(model, partial)
            log.info("partial labels: %s", partial)

    def validate(self):
        previous_best = self.best_fitness
        metrics, fitness = super().validate()
        box = getattr(getattr(self.validator, "metrics", None), "box", None)
        if metrics is None or box is None:
            return metrics, fitness
        classes = [int(c) for c in np.asarray(getattr(box, "ap_class_index", []))]
        ap = box.all_ap[classes.index(WBC_CLASS_ID)] if WBC_CLASS_ID in classes else np.zeros(10)
        fitness = float(0.1 * ap[0] + 0.9 * ap.mean())   # AP50 and AP50-95 of the wbc class
        metrics["metrics/wbc_fitness"] = round(fitness, 5)
        self.best_fitness = fitness if previous_best is None or fitness > previous_best else previous_best
        return metrics, fitness

    def read_results_csv(self) -> dict:
        """results.csv as {column: [values]} with the csv module (ultralytics uses polars, which a lean GPU image may
        lack; saving a checkpoint must not depend on it)."""
        try:
            with Path(self.csv).open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError:
            return {}
        out: dict[str, list] = {}
        for row in rows:
            for key, value in row.items():
                key = key.strip()
                try:
                    out.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    out.setdefault(key, []).append(value)
        return out
