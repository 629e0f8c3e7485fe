"""The evaluation runs of `workbench eval` and the GUI's Evaluation tab, one module per kind:
eval_detection (detector, per source), eval_classifier (classifier, per group, calibration), eval_pipeline (end to
end, per camera x diagnosis). Each run is saved as a folder (workbench.app.eval_store)."""

from workbench.app.eval_classifier import run_classifier_eval
from workbench.app.eval_common import EvalOutcome
from workbench.app.eval_detection import detection_sources, false_cells_per_image, run_detection_eval
from workbench.app.eval_pipeline import (ImageTruth, PipelineMetrics, TrueCell, evaluate_pipeline, image_group,
                                         load_box_truth, load_point_truth, read_names, run_pipeline_eval)

__all__ = ["EvalOutcome", "ImageTruth", "PipelineMetrics", "TrueCell", "detection_sources", "evaluate_pipeline",
           "false_cells_per_image", "image_group", "load_box_truth", "load_point_truth", "read_names",
           "run_classifier_eval", "run_detection_eval", "run_pipeline_eval"]
