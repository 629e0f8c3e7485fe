"""The app services: the analysis pipeline, the results schema, settings, weights, evaluation, the session and
annotation models and their files. Qt-free; the CLI and the GUI both stand on it."""
