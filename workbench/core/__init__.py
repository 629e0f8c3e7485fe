"""The bottom floor: Qt-free, torch-free code every other floor uses (file I/O, boxes, image opening and the one
extension list, plots, the class maps, the error types, label formats, the red-cell ruler, cell segmentation)."""
