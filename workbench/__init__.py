"""Smear Workbench: the app (CLI, pipeline, results schema, GUI) on top of `detection` and `classification`."""

__version__ = "0.1.0"
