"""The class maps: the one authority for class names and their ids. Datasets, training, checkpoints, results and
exports use these and never renumber them."""

from __future__ import annotations

# the classifier: index 0 = blast = the positive class of every metric
BLAST_CLASSES: tuple[str, ...] = ("blast", "normal")
BLAST, NORMAL = BLAST_CLASSES

# the detector: only `wbc` is used downstream; red cells and platelets are taught so they are not taken for it
DETECTOR_CLASSES: tuple[str, ...] = ("wbc", "rbc", "platelet")
WBC_CLASS = "wbc"
