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


__all__ = ["MopruneError", "SpecError", "StudySpec", "TrialFailed", "__version__", "load_spec", "pareto_frame",
           "run_study"]
