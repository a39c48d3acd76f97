"""The study spec: YAML in, a frozen, validated StudySpec out. The only module that reads YAML.

pydantic does the checking (``extra="forbid"``: unknown keys are errors); ``load_spec`` turns its first error into
one line that names the key, the value and the fix. The checks that depend on this machine (device, files, energy
meters) live with the search (``moprune.search.preflight``): spec imports nothing of moprune but its exceptions.
"""

from .load import load_spec, parse_spec, read_yaml
from .sections import (DATASETS_WITH_ROOT, HF_PREFIXES, OBJECTIVES, TEXT_DATASETS, ConstraintsSpec, DataSpec,
                       DistillSpec, FinetuneSpec, MeasureSpec, ModelSpec, PretrainSpec, PruneSpec, RatioSpec,
                       ScheduleSpec, SparsityTrainingSpec)
from .study import SAMPLER_CLASSES, ReevaluateSpec, ScreenSpec, SearchSpec, StudySpec, sampler_option_names

__all__ = ["ConstraintsSpec", "DATASETS_WITH_ROOT", "DataSpec", "DistillSpec", "FinetuneSpec", "HF_PREFIXES",
           "MeasureSpec", "ModelSpec", "OBJECTIVES", "PretrainSpec", "PruneSpec", "RatioSpec", "ReevaluateSpec",
           "SAMPLER_CLASSES", "ScheduleSpec", "ScreenSpec", "SearchSpec", "SparsityTrainingSpec", "StudySpec",
           "TEXT_DATASETS", "load_spec", "parse_spec", "read_yaml", "sampler_option_names"]
