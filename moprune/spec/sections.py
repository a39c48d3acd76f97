"""The spec's sections for the model, data, pruning, fine-tune, constraints and measurement: frozen pydantic v2
models whose fields carry the defaults README.md documents and whose validators name the key, the value and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    # to the builder: a ViT's image_size, patch_size, num_heads; a Swin's depths and num_heads per stage (lists)
    kwargs: dict[str, int | float | bool | str | list[int | float]] = {}
    checkpoint: Path | None = None
    pretrain: PretrainSpec = PretrainSpec()
    sparsity_training: SparsityTrainingSpec | None = None  # null: the dense model as it is

    @field_validator("kwargs", mode="before")
    @classmethod
    def _plain_kwargs(cls, kwargs: object) -> object:
        """Name the key and what it may be, rather than pydantic's first union branch ("valid integer")."""
        if isinstance(kwargs, dict):
            for key, value in kwargs.items():
                scalar = isinstance(value, (int, float, bool, str))
                numbers = isinstance(value, list) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                if not (scalar or numbers):
                    raise ValueError(f"{key!r} is {value!r}; a builder argument is a number, a string, "
                                     "a boolean or a list of numbers (e.g. depths: [2, 2, 6, 2])")
        return kwargs

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
    # the search may also drop whole residual blocks (moprune.pruning.depth): where a layer's fixed cost dominates
    # the latency, width pruning stops paying long before depth does; the uniform and global sweeps never drop
    drop_blocks: bool = False

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
        if self.drop_blocks:
            raise ValueError(f"drop_blocks removes whole residual blocks; method {self.method} zeroes weights and "
                             f"keeps every layer: remove drop_blocks or use method channel")
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
    # training batches that re-estimate every BatchNorm layer's running statistics after the fine-tune (adaptive
    # BN, no gradient; 0: keep the statistics the fine-tune left). A brief fine-tune leaves them stale: on the
    # bench's VGG, 30 steps then evaluation read the uniform 0.85 plan at 0.66-0.83, 8 batches of recalibration at
    # 0.89-0.94 (bench/recalibration.py, 2 dense models x 2 fine-tune seeds)
    recalibrate_bn: int = Field(8, ge=0)


class ConstraintsSpec(_Section):
    max_accuracy_drop: float | None = Field(0.02, ge=0.0, le=1.0)
    max_latency_ms: float | None = Field(None, gt=0)
    max_energy_mj: float | None = Field(None, gt=0)
    max_macs: float | None = Field(None, gt=0)


def _runtime_problem(runtime: str) -> str | None:
    """What ``measure.runtime`` lacks on this machine, naming what to install: checked with the spec, before any
    compute (``moprune.measure.runtimes`` then assumes it)."""
    import importlib.util
    import shutil

    if runtime == "onnxruntime":
        missing = [p for p in ("onnx", "onnxruntime") if importlib.util.find_spec(p) is None]
        if missing:
            return (f"onnxruntime needs {' and '.join(missing)} (not installed): install the onnx extra, pip install "
                    "'moprune[onnx]' (onnxruntime-gpu for the CUDA and TensorRT providers)")
    if runtime == "compile" and not any(shutil.which(c) for c in ("cc", "gcc", "g++", "clang", "clang++")):
        return ("compile: torch.compile's inductor backend needs a C++ compiler, and none of cc, gcc, g++, clang is "
                "on PATH: install one (e.g. apt install g++), or use runtime eager")
    return None


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
    # The runtime latency and energy are measured in, for the candidate and the dense model alike
    # (moprune.measure.runtimes): eager PyTorch, torch.compile (inductor), or ONNX Runtime (CPU, CUDA or TensorRT
    # provider); compiling and exporting are recorded, never timed.
    runtime: Literal["eager", "compile", "onnxruntime"] = "eager"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    channels_last: bool = False  # 4-D inputs and weights in NHWC (what cuDNN and oneDNN prefer for convolutions)

    @field_validator("runtime")
    @classmethod
    def _runtime_installed(cls, runtime: str) -> str:
        problem = _runtime_problem(runtime)
        if problem:
            raise ValueError(problem)
        return runtime

    @model_validator(mode="after")
    def _runtime_combinations(self) -> MeasureSpec:
        if self.runtime == "onnxruntime" and self.cuda_graph:
            raise ValueError("cuda_graph: ONNX Runtime runs its own streams, which a CUDA graph cannot capture: set "
                             "cuda_graph false (TensorRT's provider fuses launches itself) or use runtime eager or "
                             "compile")
        if self.runtime == "onnxruntime" and self.dtype == "bfloat16":
            raise ValueError("dtype bfloat16: ONNX Runtime's inputs have no bfloat16 type; use float16 or float32")
        return self
