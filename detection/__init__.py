"""White blood cell detection with YOLOv8 (ultralytics): prediction with tiling, training, evaluation.

Importing this package never imports Qt; ultralytics is imported lazily when a model is loaded.
"""

from detection.tiling import TilingConfig
from workbench.core.boxes import BoxDetection
from workbench.core.errors import DetectorLoadError

__all__ = ["BoxDetection", "DetectorLoadError", "TilingConfig", "WbcDetector"]


def __getattr__(name: str):
    if name == "WbcDetector":  # keeps `import detection` light: the predictor pulls in torch/ultralytics
        from detection.predictor import WbcDetector

        return WbcDetector
    raise AttributeError(name)
