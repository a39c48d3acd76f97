"""How every latency and energy measurement of a study is taken: one frozen settings object, built once.

The trial, the dense baseline, the sensitivity scan and ``moprune evaluate`` all measure with the same settings,
made here from the spec's ``measure`` section; a quick budget check is the same settings with the precision rule
off (``screen``). Nothing else turns spec keys into meter options, so no caller can drop one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .runtimes import Runtime

if TYPE_CHECKING:
    from ..spec import MeasureSpec


@dataclass(frozen=True)
class MeasureSettings:
    batch_size: int = 64
    warmup: int = 10  # untimed passes first (at least 2 on a GPU: cuDNN autotuning)
    repeats: int = 30  # rounds at least
    cuda_graph: bool = False  # time GPU passes as CUDA-graph replays
    max_other_cpu: float = 0.02  # a CPU round with more of our CPUs used by others is taken again
    max_retries: int | None = None  # disturbed rounds allowed (None: repeats + clean rounds so far)
    ci_half_width: float | None = 0.02  # more rounds until the median's 95% CI is this tight (None: exactly repeats)
    max_repeats: int | None = None  # at most this many rounds (None: 8 x repeats)
    energy_window_s: float = 2.0  # each energy reading spans at least this long
    power_sample_ms: float = 10.0  # the power sampler's period where there is no energy counter
    threads: int | None = None  # torch intra-op threads while measuring (None: as the process has them)
    runtime: Runtime = Runtime()  # eager / compile / onnxruntime, dtype, channels_last: the candidate and dense alike

    @classmethod
    def from_spec(cls, measure: MeasureSpec) -> MeasureSettings:
        return cls(batch_size=measure.batch_size, warmup=measure.warmup, repeats=measure.repeats,
                   cuda_graph=measure.cuda_graph, max_other_cpu=measure.max_other_cpu,
                   max_retries=measure.max_noisy_retries, ci_half_width=measure.ci_half_width,
                   max_repeats=measure.max_repeats, energy_window_s=measure.energy_window_s,
                   power_sample_ms=measure.power_sample_ms, threads=measure.threads,
                   runtime=Runtime(measure.runtime, measure.dtype, measure.channels_last))

    def screen(self) -> MeasureSettings:
        """Half the rounds (at least 3), no precision target: enough to see a plan clearly over a latency budget,
        or to rank screened plans (the dense model is timed in every round too: it is most of a round's cost)."""
        repeats = min(self.repeats, max(3, self.repeats // 2))
        return dataclasses.replace(self, repeats=repeats, ci_half_width=None, max_repeats=repeats)

    def latency_options(self) -> dict[str, Any]:
        """The keyword options of ``measure_paired`` / ``measure_single``."""
        return {"warmup": self.warmup, "repeats": self.repeats, "cuda_graph": self.cuda_graph,
                "max_other_cpu": self.max_other_cpu, "max_retries": self.max_retries,
                "ci_half_width": self.ci_half_width, "max_repeats": self.max_repeats}

    def key(self) -> tuple[Any, ...]:
        """What a cached measurement must match (every setting changes the numbers or how they were taken)."""
        return dataclasses.astuple(self)
