"""Pruning: the model's searchable units (DependencyGraph groups tied by granularity), plans, apply and replay.

Knows nothing of training or of studies: a plan in (a ratio per group, residual blocks to drop), a physically
smaller model (and the record to rebuild it) out; a Transformer's heads and MLP neurons; or, for unstructured and
N:M sparsity, a model with zeroed weights and the masks its fine-tune must hold.
"""

from .attention import HeadAttention, prunable_form
from .depth import DROP_KEY, drop_blocks, drop_key, droppable_blocks, dropped_count, split_plan
from .apply import PrunedModel, apply_plan, kept_channels, make_importance, replay_history
from .groups import PruneGroup, classifier_of, discover_groups
from .global_plan import global_plan, local_ratio
from .plan import (DROP_PARAM, GLOBAL_PARAM, PrunePlan, drop_param, nearest_params, offset_param, plan_params,
                   suggest_plan)
from .sparse import (SPARSE_METHODS, apply_sparsity, mask_holder, nm_mask, nonzero_params, parse_nm,
                     semi_structured_linears, sparsity_of)
from .transformer import Site, find_sites
from .units import SearchUnit, search_units
from .window_attention import WindowHeadAttention

__all__ = ["DROP_KEY", "DROP_PARAM", "drop_blocks", "drop_key", "drop_param", "droppable_blocks", "dropped_count",
           "split_plan",
           "GLOBAL_PARAM", "HeadAttention", "Site", "WindowHeadAttention", "find_sites", "prunable_form", "PruneGroup",
           "PrunePlan", "PrunedModel", "SPARSE_METHODS", "SearchUnit", "apply_plan",
           "apply_sparsity", "classifier_of", "discover_groups", "global_plan", "kept_channels", "local_ratio",
           "make_importance", "mask_holder", "nearest_params", "nm_mask", "nonzero_params", "offset_param", "parse_nm",
           "plan_params", "replay_history", "search_units", "semi_structured_linears", "sparsity_of", "suggest_plan"]
