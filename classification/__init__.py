"""Blast / normal classification of white-blood-cell crops with EfficientNet-B3.

Importing this package never imports Qt, and torch only once a model is built or loaded, so the app can import
the records cheaply.
"""

from classification.records import CellLabel, ClassifierSpec
from workbench.core.errors import ClassifierLoadError

__all__ = [
    "BlastClassifier",
    "CellLabel",
    "ClassifierLoadError",
    "ClassifierSpec",
    "build_efficientnet_b3",
    "load_classifier",
    "save_classifier",
]

_LAZY = {
    "BlastClassifier": "classification.predictor",
    "build_efficientnet_b3": "classification.model",
    "save_classifier": "classification.model",
    "load_classifier": "classification.model",
}


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'classification' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
