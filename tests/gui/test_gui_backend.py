"""The analysis settings' backend choice: shown, saved, and applied to both models (issue 15)."""

from __future__ import annotations


def test_the_backend_combo_sets_both_models_backend(qtbot, store, tmp_path):
    from workbench.app.weights import Manifest
    from workbench.gui.settings_dialog import GuiSettings, SettingsDialog, load_settings

    defaults = GuiSettings.defaults()
    assert defaults.backend == "auto"                     # cfg/default.yaml
    dialog = SettingsDialog(defaults, store, Manifest(tmp_path / "manifest.yaml", []))
    qtbot.addWidget(dialog)
    assert [dialog.backend.itemText(i) for i in range(dialog.backend.count())] == \
        ["auto", "torch", "openvino", "onnxruntime"]
    dialog.backend.setCurrentText("openvino")
    dialog.accept()
    again = load_settings(store)
    assert again.backend == "openvino"
    config = again.to_config()
    assert config.detector.backend == config.classifier.backend == "openvino"
    dialog = SettingsDialog(again, store, Manifest(tmp_path / "manifest.yaml", []))
    qtbot.addWidget(dialog)
    assert dialog.backend.currentText() == "openvino"
