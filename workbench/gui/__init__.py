"""The desktop workbench (PySide6). Widgets observe the plain-Python `SessionModel`; analysis runs in workers.

`workbench` (no arguments) or `workbench gui [PATHS]` opens it; `run_gui` in `workbench.gui.app` is the entry.
"""
