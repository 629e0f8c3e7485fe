class DetectorLoadError(ValueError):
    """Detector weights are missing, corrupt, not a detection model, or lack the white-blood-cell class."""
