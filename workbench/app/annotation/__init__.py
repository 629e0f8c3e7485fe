"""Annotation review and the retraining loop (Qt-free): the project store (SQLite, audit trail), label importers
(YOLO, VOC, COCO, ALL-IDB points) and training-set exporters (YOLO, crops per class, COCO, VOC)."""
