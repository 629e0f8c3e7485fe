"""Plain records of the classification package, kept free of torch so `import classification` stays cheap."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClassifierSpec:
    """What a checkpoint says about its network and how crops must be prepared for it."""

    architecture: str
    class_names: list[str]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta: dict = field(default_factory=dict)  # free-form training info (epochs, data, metrics, ...)


@dataclass
class CellLabel:
    """Classification of one detected cell."""

    label: str          # most probable class name
    label_conf: float   # probability of that class
    p_blast: float      # probability of the blast class, whatever the label
