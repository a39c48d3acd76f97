"""The search and study sections: sampler, trials, screening, workers; and ``StudySpec``, the whole study."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .sections import (_DEVICE, _FACTORY, HF_PREFIXES, OBJECTIVES, TEXT_DATASETS, ConstraintsSpec, DataSpec,
                       FinetuneSpec, MeasureSpec, ModelSpec, PruneSpec, _Section)

class ReevaluateSpec(_Section):
    top: int = Field(0, ge=0)  # Pareto candidates to re-fine-tune at the end of a run (0 = off)
    seeds: int = Field(2, ge=1)  # fresh fine-tune seeds for each


class ScreenSpec(_Section):
    """Screening (``moprune.search.screen``): ``plans`` plans scored cheaply, the best by Pareto rank fine-tuned."""

    plans: int = Field(0, ge=0)  # plans to screen in all (0 = off: every trial is fine-tuned)
    # finetune: `batches` steps of the brief fine-tune, then (BatchNorm models) adaptive BN over `batches` batches;
    # adaptive_bn: the recalibration alone; none: accuracy right after pruning (bench/search_quality.py compares them)
    proxy: Literal["adaptive_bn", "finetune", "none"] = "finetune"
    batches: int = Field(8, ge=1)  # fine-tune steps and recalibration batches of the proxy
    # model: latency predicted by a model fitted on this study's measured plans (moprune.measure.latency_model);
    # measure: the quick paired measurement of every screened plan (costs more than the proxy on small models)
    latency: Literal["model", "measure"] = "model"
    # levels of each sweep among search.seed_trials (uniform, global) screened first, out of `plans`: the screen's
    # front then holds the best of what a user would sweep, and the sampler starts from it
    sweep: int = Field(8, ge=0)
    rounds: int = Field(4, ge=1)  # screen -> promote -> fine-tune rounds; the fine-tuned front steers the next
    neighbours: int = Field(2, ge=0)  # per fine-tuned front plan, neighbours queued to be screened next round
    # share of each round's plans after the first proposed by the additive allocation model fitted on the plans
    # screened so far (moprune.search.allocate); neighbours and the sampler (at least `explore`) the rest. 0: none
    allocate: float = Field(0.5, ge=0.0, le=1.0)
    # share of each round's plans after the first left to the sampler, whatever the allocation model and the
    # neighbours would queue: before it, 2 neighbours per front plan filled every round (bench MobileNetV2,
    # 2026-12-04: 14 of 14 non-sweep plans were neighbours) and the screen never explored beyond the sweeps. A
    # quarter since 2026-12-05: at a half, with `allocate` at a half, no round had room for a neighbour
    explore: float = Field(0.25, ge=0.0, le=1.0)
    # the uniform and global starting plans of search.seed_trials: fine-tuned before any screening (finetune: every
    # one costs a fine-tune whether or not it is any good), or only screened as the sweep, so that each is fine-tuned
    # only when promoted (screen: every fine-tune goes to a plan the screen ranked best; needs sweep >= 2)
    starts: Literal["finetune", "screen"] = "finetune"
    # one promotion a round (of two or more) spent on a plan under the proxy floor while the line is untested there
    # (moprune.search.promotion.probe). Off by default: on the bench's VGG and MobileNetV2 (8-step proxies) it cost
    # fine-tunes the floor did not need; on the quickstart's ResNet-18 (2-step proxies, which read fast plans far
    # too low) it found the fast plans the floor had hidden
    probe: bool = False

    @model_validator(mode="after")
    def _shares_fit_a_round(self) -> ScreenSpec:
        if self.allocate + self.explore > 1.0 + 1e-9:
            raise ValueError(f"allocate ({self.allocate}) + explore ({self.explore}) is more than a round: each is a "
                             f"share of a round's screened plans; set explore to at most {1 - self.allocate:.2g} "
                             "or lower allocate")
        return self


SAMPLER_CLASSES = {"nsga2": "NSGAIISampler", "nsga3": "NSGAIIISampler", "tpe": "TPESampler", "gp": "GPSampler",
                   "random": "RandomSampler"}
# Set by moprune itself, or deprecated in Optuna 5: not accepted under search.sampler_options.
_RESERVED_SAMPLER_OPTIONS = {"self", "seed", "constraints_func", "population_size", "independent_sampler",
                             "args", "kwargs"}


def sampler_option_names(sampler: str) -> list[str]:
    """The keyword options of an Optuna sampler's constructor that a spec may set (read from Optuna itself)."""
    import inspect

    import optuna

    cls = getattr(optuna.samplers, SAMPLER_CLASSES[sampler])
    params = inspect.signature(cls.__init__).parameters.values()
    scalar = {"bool", "int", "float", "str", "None"}
    return [p.name for p in params if p.name not in _RESERVED_SAMPLER_OPTIONS
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and set(re.split(r"\s*\|\s*", str(p.annotation).strip("'\""))) <= scalar]


class SearchSpec(_Section):
    sampler: Literal["nsga2", "nsga3", "tpe", "gp", "random"] = "nsga2"
    sampler_options: dict[str, bool | int | float | str | None] = {}
    n_trials: int = Field(30, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    population_size: int = Field(12, ge=2)
    seed_trials: list[Literal["dense", "uniform", "global", "sensitivity"]] = ["dense", "uniform"]
    uniform_count: int = Field(4, ge=2)
    reevaluate: ReevaluateSpec = ReevaluateSpec()
    screen: ScreenSpec = ScreenSpec()
    keep_weights: Literal["pareto", "all", "none"] = "pareto"
    artifacts_dir: Path | None = None  # default runs/<name>; a shared path when several hosts share the study
    # A worker records a heartbeat every heartbeat_s; a RUNNING trial silent for grace_s is failed and its plan re-run.
    heartbeat_s: int = Field(30, ge=1)
    grace_s: int = Field(120, ge=2)

    @model_validator(mode="after")
    def _grace_longer_than_heartbeat(self) -> SearchSpec:
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"grace_s ({self.grace_s}) must be greater than heartbeat_s ({self.heartbeat_s}), or "
                             "live trials would be failed as stale; e.g. grace_s: 4 x heartbeat_s")
        return self

    @model_validator(mode="after")
    def _known_sampler_options(self) -> SearchSpec:
        if not self.sampler_options:  # nothing to check (and Optuna stays unimported until a search runs)
            return self
        allowed = sampler_option_names(self.sampler)
        unknown = [k for k in self.sampler_options if k not in allowed]
        if unknown:
            raise ValueError(f"sampler_options: {unknown[0]!r} is not an option of {SAMPLER_CLASSES[self.sampler]}; "
                             f"allowed: {', '.join(allowed) or 'none'}")
        return self


class StudySpec(_Section):
    """A whole study; every section has the defaults documented in README.md."""

    name: str = Field("quickstart", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = Field(0, ge=0)
    device: str = "auto"
    storage: str | None = None
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    prune: PruneSpec = PruneSpec()
    finetune: FinetuneSpec = FinetuneSpec()
    objectives: list[str] = ["accuracy", "latency_ms", "macs"]
    constraints: ConstraintsSpec = ConstraintsSpec()
    measure: MeasureSpec = MeasureSpec()
    search: SearchSpec = SearchSpec()

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return device

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, objectives: list[str]) -> list[str]:
        if not objectives:
            raise ValueError(f"name at least one objective of {', '.join(OBJECTIVES)}")
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown objective {unknown[0]!r}; choose from {', '.join(OBJECTIVES)}")
        if len(set(objectives)) != len(objectives):
            raise ValueError("each objective may appear once")
        return objectives

    @model_validator(mode="after")
    def _global_needs_channels(self) -> StudySpec:
        if self.prune.method != "channel" and "global" in self.search.seed_trials:
            raise ValueError(f"search.seed_trials: 'global' is Torch-Pruning's global channel pruning; prune.method "
                             f"{self.prune.method} removes no channels: leave 'global' out")
        return self

    @model_validator(mode="after")
    def _screened_starts_need_a_sweep(self) -> StudySpec:
        screen = self.search.screen
        if screen.starts == "screen" and (screen.plans == 0 or screen.sweep < 2):
            raise ValueError(f"search.screen.starts: screen (plans {screen.plans}, sweep {screen.sweep}) would leave "
                             "the uniform and global starting plans neither fine-tuned nor screened: set "
                             "search.screen.plans > 0 and search.screen.sweep >= 2, or starts: finetune")
        return self

    @model_validator(mode="after")
    def _text_needs_a_text_model(self) -> StudySpec:
        arch = self.model.arch
        if self.data.name in TEXT_DATASETS and not (arch.startswith(HF_PREFIXES) or _FACTORY.match(arch)):
            raise ValueError(f"data.name {self.data.name} gives token ids, which {arch} (an image model) cannot "
                             "read: set model.arch to hf:<model name>, hf-config:<config.json> or a factory")
        return self

    @property
    def storage_url(self) -> str:
        """The Optuna storage URL: the spec's, or a SQLite file under runs/ (relative to the current directory)."""
        return self.storage or f"sqlite:///runs/{self.name}.db"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]
