"""Every error type of the project, in one place below everything else.

Errors a user can cause are WorkbenchError subclasses: the CLI prints them as one line and exits non-zero, the GUI
shows them in a dialog. The model packages and the dataset builders raise the ValueError subclasses at the end
(a file they cannot use); the app turns them into WorkbenchErrors where a user caused them.
"""


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


class DetectorLoadError(ValueError):
    """Detector weights are missing, corrupt, not a detection model, or lack the white-blood-cell class."""


class LabelFileError(ValueError):
    """An annotation file (e.g. Pascal VOC XML) is unreadable, malformed or lacks a required field.

    The message names the file, so it makes sense on its own, on one line.
    """


class ClassifierLoadError(ValueError):
    """Classifier weights are missing, corrupt, not our format, do not fit the network, or lack the blast class."""


class DatasetFormatError(ValueError):
    """A data yaml, split list or label file is missing or malformed, or its classes do not fit. The message names
    the file and makes sense on its own, on one line."""


class LabelImportError(WorkbenchError, LabelFileError):
    """A label file (YOLO txt, VOC xml, COCO json, ALL-IDB points, a class-names file) cannot be imported into an
    annotation project: unreadable, not UTF-8, malformed, or with values that cannot be a box of the image
    (negative or unknown class ids, non-finite or absurd numbers). Both a WorkbenchError (shown to the user as one
    line naming the file) and a LabelFileError (a ValueError), so callers catching either keep working."""


class ProjectStoreError(WorkbenchError):
    """An annotation project file cannot be opened, read or written: its folder is read-only, the disk is full,
    another program holds a lock on it, or it is not a project (corrupt). The message names the file and the
    reason."""


class ConcurrentEditError(WorkbenchError):
    """A change to an annotation project was refused because the boxes it edits were changed by another window or
    process since they were loaded (optimistic check): reload the image and redo the change."""
