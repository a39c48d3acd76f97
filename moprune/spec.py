"""The study spec: YAML in, a frozen, validated StudySpec out. The only module that reads YAML.

pydantic does the checking (``extra="forbid"``: unknown keys are errors); ``load_spec`` turns its first error into
one line that names the key, the value and the fix. The checks that depend on this machine (device, files, energy
meters) live with the search (``moprune.search.preflight``): spec imports nothing of moprune but its exceptions.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError

#: Objective name -> Optuna direction. Names, units and directions are fixed by the design.
OBJECTIVES: dict[str, str] = {
    "accuracy": "maximize",
    "latency_ms": "minimize",
    "energy_mj": "minimize",
    "macs": "minimize",
    "params": "minimize",
}
DATASETS_WITH_ROOT = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


HF_PREFIXES = ("hf:", "hf-config:")


def _needs(package: str, what: str) -> None:
    """The optional extra ``moprune[hf]`` provides ``package``: say so before any compute when it is missing."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ValueError(f"{what} needs the Hugging Face extra ({package} is not installed): "
                         "pip install 'moprune[hf]'")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PretrainSpec(_Section):
    epochs: int = Field(5, ge=1)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # Transformers train with adamw (and a small lr)


class SparsityTrainingSpec(_Section):
    """Network slimming (Liu et al., 2017): train the dense model with an L1 penalty on its BatchNorm scales
    before the study, so the scales that ``importance: bn_scale`` ranks by say which channels can go."""

    l1: float = Field(1e-4, gt=0.0)  # the penalty's weight (the paper's lambda: 1e-4 to 1e-5)
    epochs: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0.0)
    batch_size: int = Field(128, ge=1)


class ModelSpec(_Section):
    arch: str = "resnet18"
    kwargs: dict[str, int | float | bool | str] = {}  # to the builder: e.g. a ViT's image_size, patch_size, num_heads
    checkpoint: Path | None = None
    pretrain: PretrainSpec = PretrainSpec()
    sparsity_training: SparsityTrainingSpec | None = None  # null: the dense model as it is

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch.startswith(HF_PREFIXES):
            _needs("transformers", f"model.arch {arch!r}")
            if arch.startswith("hf-config:") and not Path(arch.partition(":")[2]).exists():
                raise ValueError(f"no such config file {arch.partition(':')[2]!r}; hf-config: takes the path of a "
                                 "Hugging Face config.json (or its folder)")
            return arch
        if ":" in arch:
            if not _FACTORY.match(arch):
                raise ValueError("a custom model is written 'package.module:factory'")
            return arch
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if arch not in names:
            close = [n for n in names if n.startswith(arch[:4])][:5]
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ValueError(f"not a torchvision classification model{hint}; or use 'package.module:factory'")
        return arch


TEXT_DATASETS = ("text", "hf")


class DataSpec(_Section):
    name: Literal["digits", "fake", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "text",
                  "hf"] = "digits"
    root: Path = Path("data")
    download: bool = False
    image_size: int = Field(32, ge=8, le=1024)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # text classification (name: text | hf); tokenised once, every sequence padded or cut to max_length
    path: Path | None = None  # text: a CSV, JSON Lines (.jsonl) or Parquet file; split by val_fraction
    val_path: Path | None = None  # text: a validation file of the same form (then no split)
    dataset: str | None = None  # hf: a Hugging Face dataset name, e.g. glue (dataset_config: sst2)
    dataset_config: str | None = None
    data_files: str | None = None  # hf: local files for a packaged loader (dataset: csv | json | parquet)
    train_split: str = "train"
    val_split: str | None = None  # hf: e.g. validation; null: split train by val_fraction
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = Field(64, ge=2, le=8192)
    tokenizer: str = "train"  # train: WordPiece trained on the training split (tokenizers); or a name or path
    vocab_size: int = Field(4000, ge=100)  # of a trained tokenizer

    @model_validator(mode="after")
    def _text_source(self) -> DataSpec:
        if self.name == "text" and self.path is None:
            raise ValueError("data.name text reads a local file: set data.path to a CSV, .jsonl or Parquet file")
        if self.name == "hf":
            if self.dataset is None:
                raise ValueError("data.name hf loads a Hugging Face dataset: set data.dataset (e.g. glue, with "
                                 "data.dataset_config: sst2)")
            _needs("datasets", "data.name hf")
        if self.name in TEXT_DATASETS:
            if self.tokenizer == "train":
                _needs("tokenizers", "data.tokenizer train")
            else:
                _needs("transformers", f"data.tokenizer {self.tokenizer!r}")
        return self


class RatioSpec(_Section):
    low: float = Field(0.0, ge=0.0, lt=1.0)
    high: float = Field(0.8, ge=0.0, lt=1.0)
    step: float | None = Field(0.05, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> RatioSpec:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class ScheduleSpec(_Section):
    """Iterative pruning: the plan's ratios reached in ``steps`` equal steps, ``finetune_steps`` of fine-tune and a
    fresh importance ranking between them, then the usual brief fine-tune. The final widths are one-shot's."""

    steps: int = Field(2, ge=1)
    finetune_steps: int = Field(10, ge=0)


class PruneSpec(_Section):
    # channel: channels removed (every kernel does less); unstructured / nm: weights zeroed (dense kernels run them
    # at the dense speed, as the measurements show; nm's 2:4 is what sparse tensor cores accelerate)
    method: Literal["channel", "unstructured", "nm"] = "channel"
    nm: str = "2:4"  # N:M pattern of method nm: N weights kept of every M
    importance: Literal["l1", "l2", "taylor", "bn_scale", "random"] = "l2"
    granularity: Literal["group", "block", "stage", "global"] = "group"
    ratio: RatioSpec = RatioSpec()
    # A plan is a global ratio plus a per-unit offset in [-offset_max, offset_max] (clipped to the ratio range):
    # every total sparsity is reachable, and uniform plans are the points with all offsets zero.
    offset_max: float = Field(0.3, ge=0.0, lt=1.0)
    round_to: int | None = Field(None, ge=1)
    schedule: ScheduleSpec | None = None  # null: one-shot pruning

    @property
    def zeroes_weights(self) -> bool:
        """Unstructured / N:M: weights are zeroed in place and every shape stays the dense one."""
        return self.method != "channel"

    @property
    def iterative(self) -> bool:
        """A schedule of more than one step: trials prune again, with fine-tunes between the steps."""
        return self.schedule is not None and self.schedule.steps > 1

    @field_validator("nm")
    @classmethod
    def _nm_pattern(cls, nm: str) -> str:
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", nm)
        if not match or not 0 < int(match.group(1)) < int(match.group(2)):
            raise ValueError("write N:M with 0 < N < M, e.g. 2:4 (2 weights kept of every 4)")
        return f"{int(match.group(1))}:{int(match.group(2))}"

    @model_validator(mode="after")
    def _sparse_options(self) -> PruneSpec:
        if not self.zeroes_weights:
            return self
        if self.round_to is not None:
            raise ValueError(f"round_to ({self.round_to}) rounds channel counts; method {self.method} removes no "
                             f"channels: remove round_to or use method channel")
        if self.schedule is not None:
            raise ValueError(f"schedule is iterative channel pruning; method {self.method} takes no schedule: "
                             f"remove schedule or use method channel")
        if self.importance not in ("l1", "l2"):
            raise ValueError(f"method {self.method} zeroes the smallest weights by magnitude; importance "
                             f"{self.importance!r} ranks channels: use l1 or l2")
        return self


class DistillSpec(_Section):
    """Distillation from the dense model in the brief fine-tune: ``(1 - alpha) * CE + alpha * T^2 * KL``.

    The dense model is the teacher (eval mode, no gradient, the same batch); Hinton et al.'s T^2 keeps the
    soft term's gradients on the scale of the hard one's, so ``alpha`` reads as a share.
    """

    alpha: float = Field(0.5, ge=0.0, le=1.0)  # weight of the KL term (0: plain cross-entropy)
    temperature: float = Field(4.0, gt=0.0)


class FinetuneSpec(_Section):
    steps: int = Field(100, ge=0)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    warmup_steps: int = Field(0, ge=0)  # linear warm-up of the lr before the cosine decay, as Transformers expect
    distill: DistillSpec | None = None  # null: no teacher


class ConstraintsSpec(_Section):
    max_accuracy_drop: float | None = Field(0.02, ge=0.0, le=1.0)
    max_latency_ms: float | None = Field(None, gt=0)
    max_energy_mj: float | None = Field(None, gt=0)
    max_macs: float | None = Field(None, gt=0)


class MeasureSpec(_Section):
    batch_size: int = Field(64, ge=1)
    warmup: int = Field(10, ge=0)
    repeats: int = Field(30, ge=3)
    energy_window_s: float = Field(2.0, gt=0)
    power_sample_ms: float = Field(10.0, gt=0)
    threads: int | None = Field(None, ge=1)
    cuda_graph: bool = False  # time GPU passes as CUDA-graph replays (small batches: launch overhead dominates)
    # A CPU timing round during which other processes used more than this share of our CPUs is taken again,
    # at most max_noisy_retries times (null = repeats); trials that could not get clean rounds say latency_noisy.
    max_other_cpu: float = Field(0.02, ge=0.0, le=1.0)
    max_noisy_retries: int | None = Field(None, ge=0)
    # Rounds continue past `repeats` until the 95% CI of the median speedup is within +-ci_half_width (relative),
    # up to max_repeats rounds (null = 8 x repeats); ci_half_width: null = exactly `repeats` rounds.
    ci_half_width: float | None = Field(0.02, gt=0.0, lt=1.0)
    max_repeats: int | None = Field(None, ge=3)


class ReevaluateSpec(_Section):
    top: int = Field(0, ge=0)  # Pareto candidates to re-fine-tune at the end of a run (0 = off)
    seeds: int = Field(2, ge=1)  # fresh fine-tune seeds for each


class ScreenSpec(_Section):
    """Screening (``moprune.search.screen``): ``plans`` plans scored cheaply, the best by Pareto rank fine-tuned."""

    plans: int = Field(0, ge=0)  # plans to screen in all (0 = off: every trial is fine-tuned)
    proxy: Literal["adaptive_bn", "finetune", "none"] = "adaptive_bn"
    batches: int = Field(8, ge=1)  # training batches the proxy uses (adaptive BN) or fine-tune steps (finetune)
    rounds: int = Field(4, ge=1)  # screen -> promote -> fine-tune rounds; the fine-tuned front steers the next
    neighbours: int = Field(2, ge=0)  # per fine-tuned front plan, neighbours queued to be screened next round


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


def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent, key = loc.rpartition(".")[0], loc.rpartition(".")[2]
        allowed = _allowed_keys(parent)
        return f"{source}: unknown key {loc!r}; allowed keys{' in ' + parent if parent else ''}: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{source}: {loc} is required"
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{source}: {loc}: {msg}{shown}"


def _allowed_keys(dotted: str) -> list[str]:
    model: type[BaseModel] = StudySpec
    for part in filter(None, dotted.split(".")):
        annotation = model.model_fields[part].annotation
        # an optional section (``DistillSpec | None``) names its keys as a required one does
        options = typing.get_args(annotation) or (annotation,)
        sections = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def parse_spec(data: Any, *, source: str = "spec") -> StudySpec:
    """Validate an already-parsed mapping; raises SpecError with one line naming key, value and fix."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a study spec is a YAML mapping of keys (got {type(data).__name__})")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc.errors()[0], source)) from None


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file written by moprune (an export's config.yaml): this module is the one YAML reader."""
    return yaml.safe_load(Path(path).read_text())


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML study spec."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file; see studies/ for examples") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:  # an empty file, or only comments: running the defaults would surprise, not help
        raise SpecError(f"{path}: the spec is empty (no keys); write at least `name: STUDY`, or start from "
                        "studies/quickstart.yaml")
    return parse_spec(data, source=str(path))
