"""moprune: multi-objective structured pruning search, measured on the target device.

The public API, re-exported from the stage packages with their real signatures. Importing ``moprune`` loads only the
spec and the exceptions; the rest (torch, Optuna) is imported on first use of a name below, and nothing of Optuna's
or the root logger's configuration is changed (moprune's loggers are under ``moprune``; the CLI gives them a
handler).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import MopruneError, SpecError, TrialFailed
from .spec import StudySpec, load_spec
from .version import __version__

if TYPE_CHECKING:
    from .pareto import pareto_frame
    from .search import run_study
    from .ship import export_trial, load_exported

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {"run_study": "moprune.search", "pareto_frame": "moprune.pareto", "export_trial": "moprune.ship",
         "load_exported": "moprune.ship"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["MopruneError", "SpecError", "StudySpec", "TrialFailed", "__version__", "export_trial", "load_exported",
           "load_spec", "pareto_frame", "run_study"]
