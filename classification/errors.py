class ClassifierLoadError(ValueError):
    """Classifier weights are missing, corrupt, not our format, do not fit the network, or lack the blast class."""
