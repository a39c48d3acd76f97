"""The front: one definition of feasible, Pareto set, best, knee and hypervolume, the pick rules of export
and weighted scores.

Reads studies through ``moprune.record``; knows nothing of how trials are searched or trained.
"""

from .front import (ATTR_COLUMNS, OBJECTIVE_COLUMNS, best_feasible, directions_of, front_numbers, is_feasible,
                    nondominated, objective_names, pareto_frame, pareto_ranks, sort_by_first, trials_frame)
from .indicators import hypervolume, hypervolume_history, knee_point, normalised_values, reference_point
from .pick import RULES_HELP, Pick, pick_trial
from .weighted import Weights, parse_weights, rank_by

__all__ = ["ATTR_COLUMNS", "OBJECTIVE_COLUMNS", "Pick", "RULES_HELP", "best_feasible", "directions_of",
           "front_numbers", "hypervolume", "hypervolume_history", "is_feasible", "knee_point", "nondominated",
           "normalised_values", "objective_names", "pareto_frame", "pareto_ranks", "pick_trial", "reference_point",
           "sort_by_first", "trials_frame", "Weights", "parse_weights", "rank_by"]
