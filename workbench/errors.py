"""Errors a user can cause. The CLI prints them as one line and exits non-zero; the GUI shows them in a dialog."""


class WorkbenchError(Exception):
    """Base of every user-facing error: its message must make sense on its own, on one line."""


class ImageLoadError(WorkbenchError):
    """An input image is missing, unreadable, corrupt, of an unsupported kind or too large."""


class WeightsError(WorkbenchError):
    """A weight file is missing, corrupt, does not match the manifest, or has unexpected classes."""


class ConfigError(WorkbenchError):
    """A configuration file or option is invalid."""


class DatasetError(WorkbenchError):
    """Training or evaluation data is missing or malformed: a datasets folder, data yaml, split list, label or
    points file, or class names that do not match the model's."""


class EvalRunError(WorkbenchError):
    """A saved evaluation run (its folder or metrics.json) is missing or unreadable."""
