"""Pruning: the model's searchable units (DependencyGraph groups tied by granularity), plans, apply and replay.

Knows nothing of training or of studies: a plan in, a physically smaller model (and the record to rebuild it) out.
"""

from .apply import PrunedModel, apply_plan, kept_channels, make_importance, replay_history
from .groups import PruneGroup, classifier_of, discover_groups
from .global_plan import global_plan, local_ratio
from .plan import GLOBAL_PARAM, PrunePlan, nearest_params, offset_param, plan_params, suggest_plan
from .units import SearchUnit, search_units

__all__ = ["GLOBAL_PARAM", "PruneGroup", "PrunePlan", "PrunedModel", "SearchUnit", "apply_plan", "classifier_of",
           "discover_groups", "global_plan", "kept_channels", "local_ratio", "nearest_params", "make_importance", "offset_param", "plan_params", "replay_history",
           "search_units", "suggest_plan"]
