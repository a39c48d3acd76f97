"""The search: create or load the Optuna study and run it, trial by trial, in one process or several.

``context`` holds what a process computes once and the one trial step (prune -> measure -> fine-tune -> evaluate);
``objective`` is one trial; ``study`` creates and loads studies; ``run`` and ``loop`` run trials to the target
count; ``workers`` runs several processes on one study; ``storage`` and ``interrupts`` keep the storage consistent
when workers die or are stopped; ``sensitivity`` and ``reevaluate`` are the optional scans before and after;
``artifacts`` keeps the weights of the front for export.
"""

from .artifacts import WeightKeeper, artifacts_dir, load_trial_files, trial_dir
from .context import StudyContext, environment, finetune_seed, prepare_context
from .loop import Progress, finished_count, requeue_interrupted, run_trials
from .objective import Objective, constraint_values
from .preflight import preflight
from .reevaluate import reevaluate_front, refinetune_accuracy
from .run import run_study
from .sensitivity import SensitivityRecord, sensitivity_plans, sensitivity_scan, unit_costs
from .storage import claim_for, make_storage as open_storage, redact, sqlite_path
from .study import create_or_load, make_sampler, make_storage, open_screen_study, open_study, prepare_run
from .workers import Slot, plan_slots, run_workers

__all__ = ["Objective", "Progress", "SensitivityRecord", "Slot", "StudyContext", "WeightKeeper", "artifacts_dir",
           "claim_for", "constraint_values", "create_or_load", "environment", "finetune_seed", "finished_count",
           "load_trial_files", "make_sampler", "make_storage", "open_screen_study", "open_storage", "open_study", "plan_slots", "preflight",
           "prepare_context", "prepare_run", "redact", "reevaluate_front", "refinetune_accuracy", "requeue_interrupted",
           "run_study", "run_trials", "run_workers", "sensitivity_plans", "sensitivity_scan", "sqlite_path",
           "trial_dir", "unit_costs"]
