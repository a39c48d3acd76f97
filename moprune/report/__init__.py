"""Reports: status text, the Pareto table and JSON, report data, plotly figures, one self-contained HTML page.

Every view reads the front from ``moprune.pareto`` and trials through ``moprune.record``; nothing here runs a trial.
The HTML report (``write_dashboard``, ``report_data``) loads plotly, so it is imported on first use only.
"""

from __future__ import annotations

from typing import Any

from .measured import format_measured_with, measured_with
from .status import StudyStatus, format_status, study_status
from .tables import format_table, format_value, measured_note, plan_summary, to_records

_LAZY = {"ReportData": ".data", "report_data": ".data", "write_dashboard": ".html"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ReportData", "StudyStatus", "format_measured_with", "format_status", "format_table", "format_value",
           "measured_note", "measured_with", "plan_summary", "report_data", "study_status", "to_records",
           "write_dashboard"]
