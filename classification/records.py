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
    head: str = "linear"                      # classification.architectures.HEADS

    @property
    def preprocess(self) -> str:
        """The crop preprocessing the weights were trained with (classification.preprocess), `none` if unnamed."""
        value = self.meta.get("preprocess", "none")
        return value if isinstance(value, str) else "none"

    @property
    def field_um(self) -> float | None:
        """The crops' field of view in micrometres (workbench.builders.crop_set); None: box-framed crops (older
        weights), cut around the box plus the margin whatever the pixel size."""
        crop = self.meta.get("crop") if isinstance(self.meta.get("crop"), dict) else {}
        value = crop.get("field_um")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def crop_margin(self) -> float | None:
        crop = self.meta.get("crop") if isinstance(self.meta.get("crop"), dict) else {}
        value = crop.get("margin")
        return float(value) if isinstance(value, (int, float)) and value >= 0 else None

    @property
    def stored_threshold(self) -> float | None:
        """The operating threshold on p_blast chosen on validation and stored with the weights; None without one."""
        chosen = self.meta.get("threshold") if isinstance(self.meta.get("threshold"), dict) else {}
        value = chosen.get("threshold")
        return float(value) if isinstance(value, (int, float)) and 0.0 < value < 1.0 else None

    @property
    def threshold(self) -> float:
        """The operating threshold: the stored one, else 0.5 (the arg-max)."""
        stored = self.stored_threshold
        return 0.5 if stored is None else stored

    @property
    def threshold_source(self) -> str:
        """Where `threshold` comes from, as eval outputs state it."""
        if self.stored_threshold is not None:
            return "the weights' operating threshold, chosen on validation"
        return "the arg-max: these weights store no operating threshold"


@dataclass
class CellLabel:
    """Classification of one detected cell."""

    label: str          # most probable class name
    label_conf: float   # probability of that class
    p_blast: float      # probability of the blast class, whatever the label
