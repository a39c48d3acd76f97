"""moprune: multi-objective structured pruning search, measured on the target device."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import MopruneError, SpecError, TrialFailed  # noqa: E402
from .spec import StudySpec, load_spec  # noqa: E402


def run_study(*args, **kwargs):
    """Create or resume a study and run it (see ``moprune.search.run_study``)."""
    from .search import run_study as _run

    return _run(*args, **kwargs)


def pareto_frame(*args, **kwargs):
    """The feasible Pareto set as a DataFrame (see ``moprune.pareto.pareto_frame``)."""
    from .pareto import pareto_frame as _pareto

    return _pareto(*args, **kwargs)


def export_trial(*args, **kwargs):
    """Export a picked trial to a folder (see ``moprune.export.export_trial``)."""
    from .export import export_trial as _export

    return _export(*args, **kwargs)


def load_exported(*args, **kwargs):
    """Rebuild an exported pruned model from its folder (see ``moprune.export.load_exported``)."""
    from .export import load_exported as _load

    return _load(*args, **kwargs)


__all__ = ["MopruneError", "SpecError", "StudySpec", "TrialFailed", "__version__", "export_trial", "load_exported",
           "load_spec", "pareto_frame", "run_study"]
