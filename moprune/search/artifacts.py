"""Fine-tuned weights of finished trials, kept for export (``search.keep_weights``: pareto | all | none).

Layout: ``<artifacts_dir>/trial-<number>/weights.pt`` (state_dict) and ``pruning.json`` (Torch-Pruning's history).
``artifacts_dir`` defaults to ``runs/<study name>``; point it at a shared file system when several hosts share a study.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..pareto import front_numbers, trials_frame
from ..pruning import PrunedModel
from ..spec import StudySpec


def artifacts_dir(spec: StudySpec) -> Path:
    return Path(spec.search.artifacts_dir) if spec.search.artifacts_dir else Path("runs") / spec.name


def trial_dir(root: Path, number: int) -> Path:
    return root / f"trial-{number:05d}"


def save_trial_model(folder: Path, pruned: PrunedModel) -> None:
    """Write weights.pt and pruning.json atomically (a killed worker leaves no half-written file)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in pruned.model.state_dict().items()}
    tmp = folder / "weights.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / "weights.pt")
    tmp = folder / "pruning.json.tmp"
    tmp.write_text(json.dumps(pruned.history))
    os.replace(tmp, folder / "pruning.json")


def load_trial_files(folder: Path) -> tuple[dict[str, torch.Tensor], list[Any]] | None:
    """(state_dict, pruning history) of a kept trial, or None when they are not there."""
    weights, history = folder / "weights.pt", folder / "pruning.json"
    if not (weights.is_file() and history.is_file()):
        return None
    return torch.load(weights, map_location="cpu", weights_only=True), json.loads(history.read_text())


class WeightKeeper:
    """Saves each fine-tuned trial model, then keeps only what the policy asks for once the trial has finished.

    ``pareto`` keeps the trials of moprune's own front (``moprune.pareto``, re-evaluated means included). While the
    study will still re-evaluate its front on fresh seeds, the second Pareto rank is kept too: a re-evaluated mean
    can move a runner-up onto the front, and its weights should still be there to export.
    """

    def __init__(self, root: Path, policy: str, spec: StudySpec | None = None):
        self.root, self.policy = root, policy
        self.reevaluates = spec is not None and spec.search.reevaluate.top > 0

    def on_trained(self, trial: optuna.Trial, pruned: PrunedModel) -> None:
        if self.policy != "none":
            save_trial_model(trial_dir(self.root, trial.number), pruned)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: with ``pareto``, drop the weights of finished trials that are not on the front."""
        if self.policy == "none":
            shutil.rmtree(trial_dir(self.root, trial.number), ignore_errors=True)
            return
        self.prune(study, ranks=2 if self.reevaluates else 1)

    def prune(self, study: optuna.Study, *, ranks: int = 1) -> None:
        """With ``pareto``: delete the kept weights of finished trials beyond the first ``ranks`` Pareto ranks."""
        if self.policy != "pareto" or not self.root.is_dir():
            return
        keep = front_numbers(trials_frame(study), ranks=ranks)
        finished = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))}
        for folder in self.root.glob("trial-*"):
            number = int(folder.name.removeprefix("trial-"))
            # Only finished trials: a trial still running on another worker may not have reached the front yet.
            if number in finished and number not in keep:
                shutil.rmtree(folder, ignore_errors=True)
