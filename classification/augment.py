"""Training augmentation of the classifier's crops (torchvision.transforms.v2): zoom, flips, rotation and shear
filled with the smear's own background, colour jitter and HED stain jitter, so the net learns cell shape, nucleus
and cytoplasm, not one lab's colours or a black-corner cue."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from classification.model import IMAGENET_MEAN, IMAGENET_STD
from classification.preprocess import apply_preprocess
from classification.train_config import ClassifierTrainConfig


class BackgroundAffine(nn.Module):
    """Random rotation and shear of a uint8 (3, H, W) crop, filling uncovered corners with the median colour of the
    crop's border (the smear background) rather than black, which would be a label-free cue the net could learn."""

    def __init__(self, degrees: float, shear: float) -> None:
        super().__init__()
        self.degrees, self.shear = float(degrees), float(shear)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        if self.degrees == 0 and self.shear == 0:
            return image
        angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees)) if self.degrees else 0.0
        shear = [float(v) for v in torch.empty(2).uniform_(-self.shear, self.shear)] if self.shear else [0.0, 0.0]
        border = torch.cat([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], dim=1)
        fill = [float(v) for v in border.float().median(dim=1).values]
        return F.affine(image, angle=angle, translate=[0, 0], scale=1.0, shear=shear,
                        interpolation=InterpolationMode.BILINEAR, fill=fill)


class StainAugment(nn.Module):
    """workbench.core.stain.StainJitter (HED stain jitter, grey-scale) on a uint8 (3, H, W) crop."""

    def __init__(self, jitter) -> None:
        super().__init__()
        self.jitter = jitter

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        generator = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))  # follows torch's seeding
        array = image.permute(1, 2, 0).contiguous().numpy()
        return torch.from_numpy(self.jitter(array, generator)).permute(2, 0, 1).contiguous()


class Preprocess(nn.Module):
    """The weights' preprocessing (classification.preprocess.apply_preprocess, the function inference applies) on a
    uint8 (3, S, S) crop at the network's input size."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = apply_preprocess

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.name == "none":
            return image
        array = image.permute(1, 2, 0).contiguous().numpy()
        return torch.from_numpy(self.fn(self.name, array)).permute(2, 0, 1).contiguous()


def build_transforms(config: ClassifierTrainConfig, train: bool) -> nn.Module:
    """uint8 (3, H, W) crop -> normalised float (3, S, S). Evaluation only resizes, as inference crops are cut at S.
    The preprocessing comes after augmentation, on the S x S crop, as at inference (where it follows the crop cut):
    the network only ever sees preprocessed crops, and augmentation simulates variation of the raw smear."""
    from torchvision.transforms import v2

    size = config.input_size
    tail = [Preprocess(getattr(config, "preprocess", "none")), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if not (train and config.augment):
        return v2.Compose([v2.Resize((size, size), antialias=True), *tail])
    steps: list[nn.Module] = [
        # crop first: the remaining steps then work on S x S, not on the larger stored crop
        v2.RandomResizedCrop(size, scale=(config.scale_min, 1.0), ratio=(0.85, 1.0 / 0.85), antialias=True),
        v2.RandomHorizontalFlip(config.hflip),
        v2.RandomVerticalFlip(config.vflip),
    ]
    if config.degrees or config.shear:
        steps.append(BackgroundAffine(config.degrees, config.shear))
    if any((config.brightness, config.contrast, config.saturation, config.hue)):
        steps.append(v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue))
    if config.stain_p or config.gray_p:
        from workbench.core.stain import StainJitter

        steps.append(StainAugment(StainJitter(config.stain_p, config.stain_alpha, config.stain_beta, config.gray_p)))
    return v2.Compose([*steps, *tail])
