"""Shipping a chosen model: export (config.yaml, pruning.json, weights.pt, metrics.json, model.onnx), load it back,
and re-measure it with ``evaluate`` exactly as its trial was measured."""

from .evaluate import EvaluationReport, MetricRow, evaluate_export, format_evaluation
from .export import ExportResult, export_trial
from .load import load_exported, read_config, rebuild_model
from .onnx import export_onnx

__all__ = ["EvaluationReport", "ExportResult", "MetricRow", "evaluate_export", "export_onnx", "export_trial",
           "format_evaluation", "load_exported", "read_config", "rebuild_model"]
