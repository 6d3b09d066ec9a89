"""From a finished run to the app: the trainable file with the final weights,
inference-only and quantized files, and their measured size, accuracy, latency.

Importing this package never imports TensorFlow; only an inference-only or
quantized export (:func:`inference_model`) does.
"""

from fedtflite.export.exporter import (
    REPRESENTATIVE_IMAGES,
    ExportOptions,
    export_report,
    export_run,
)
from fedtflite.export.inference import QUANTIZATIONS, inference_model
from fedtflite.export.measure import FormatResult, format_table, measure
from fedtflite.export.patch import with_initial_weights
from fedtflite.export.run_dir import FINAL_WEIGHTS, FinishedRun, load_finished_run

__all__ = [
    "FINAL_WEIGHTS",
    "QUANTIZATIONS",
    "REPRESENTATIVE_IMAGES",
    "ExportOptions",
    "FinishedRun",
    "FormatResult",
    "export_report",
    "export_run",
    "format_table",
    "inference_model",
    "load_finished_run",
    "measure",
    "with_initial_weights",
]
