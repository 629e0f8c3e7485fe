class DetectorLoadError(ValueError):
    """Detector weights are missing, corrupt, not a detection model, or lack the white-blood-cell class."""


class LabelFileError(ValueError):
    """An annotation file (e.g. Pascal VOC XML) is unreadable, malformed or lacks a required field.

    The message names the file, so it makes sense on its own, on one line.
    """
