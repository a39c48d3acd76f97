"""Timed rounds: every model timed once per round, back to back; rounds disturbed by other processes are repeated.

A round is the unit of comparison: when the machine slows down for a while (another process, a clock change), it
slows every model of the round alike, so per-round ratios survive what absolute times do not. A round during which
other processes took more than ``max_other_cpu`` of our CPUs is set aside, the machine is given a moment to go
quiet, and the round is taken again. When clean rounds cannot be had, the least disturbed rounds are used and the
result says ``noisy``.

How many rounds: at least ``repeats`` clean ones, then more (up to ``max_repeats``) until the statistic the caller
cares about is known precisely enough (``enough``), e.g. the 95% confidence interval of the median speedup.

The kernel counts CPU time in 10 ms ticks, so a round of a small model (a millisecond) cannot be judged alone:
consecutive rounds are checked together in blocks of at least ``MIN_CHECK_S``, and a disturbed block is retaken whole.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .disturbance import CpuDisturbanceProbe
from .timers import Meter, time_call_ms

#: After a disturbed round, wait at most this long for the machine to go quiet before the next round.
MAX_QUIET_WAIT_S = 0.5
#: The slices in which the machine is watched while waiting (idle ourselves, so every busy tick is another's).
QUIET_SLICE_S = 0.05
#: How often (in clean rounds) the stopping rule is evaluated once ``repeats`` clean rounds exist.
CHECK_EVERY = 10
#: Rounds are checked for disturbance in blocks at least this long (a few ticks; see the module docstring).
MIN_CHECK_S = 0.05


@dataclass(frozen=True)
class Round:
    times_ms: tuple[float, ...]  # one per model, in the order the models were given (not the order they ran)
    other_fraction: float | None  # share of our CPUs other processes used in the round's check block; None = unchecked


@dataclass(frozen=True)
class Rounds:
    used: tuple[Round, ...]  # the clean rounds, topped up to ``repeats`` with the least disturbed when too few
    taken: int  # rounds run in all (used + discarded)
    clean: int  # rounds under the disturbance threshold
    checked: bool  # False where no disturbance probe exists (the rounds are then all counted as clean)

    @property
    def noisy(self) -> bool:
        """True when fewer than the asked number of undisturbed rounds could be had."""
        return self.clean < len(self.used)

    @property
    def discarded(self) -> int:
        return self.taken - len(self.used)

    def series(self, model: int) -> list[float]:
        return [r.times_ms[model] for r in self.used]


def median_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median, from order statistics (binomial, normal approx.)."""
    ordered = sorted(values)
    n = len(ordered)
    spread = 1.96 * math.sqrt(n)
    lo_rank = max(1, round((n - spread) / 2))  # 1-based ranks, symmetric: n=30 -> 10..21, n=100 -> 40..61
    hi_rank = n + 1 - lo_rank
    return ordered[max(0, lo_rank - 1)], ordered[min(n - 1, hi_rank - 1)]


def run_rounds(runs: Sequence[Callable[[], object]], timer: Meter, *, repeats: int, probe: CpuDisturbanceProbe | None,
               max_other_cpu: float = 0.02, max_retries: int | None = None, max_repeats: int | None = None,
               enough: Callable[[list[Round]], bool] | None = None, min_check_s: float = MIN_CHECK_S,
               sleep: Callable[[float], None] = time.sleep) -> Rounds:
    """Time every runner once per round: ``repeats`` clean rounds, then more until ``enough`` or ``max_repeats``.

    Rounds come in check blocks of about ``min_check_s`` (at most 50 rounds), so a fast model gets more rounds than
    asked: they cost no more than one block.

    The order of the models rotates from round to round, so that none always runs right after another (on a warm
    cache, or in the other's thermal shadow). Disturbed rounds are allowed up to ``max_retries``; by default up to
    ``repeats`` more than the clean rounds so far, so a steadily loaded machine gives up after about ``repeats``
    disturbed rounds while light background noise never exhausts the budget.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (got {repeats})")
    limit = max(repeats, max_repeats or repeats)
    clean: list[Round] = []
    disturbed: list[Round] = []
    n, block, next_check = len(runs), 1, repeats
    while len(clean) < limit:
        if len(clean) >= next_check:
            if enough is None or enough(clean):
                break
            next_check = len(clean) + CHECK_EVERY
        before = probe.snapshot() if probe is not None else None
        times = []
        for _ in range(block):
            offset = (len(clean) + len(disturbed) + len(times)) % n
            row = [0.0] * n
            for i in [(offset + k) % n for k in range(n)]:
                row[i] = time_call_ms(timer, runs[i])
            times.append(tuple(row))
        seen = probe.between(before, probe.snapshot()) if probe is not None else None
        share = seen.other_fraction if seen is not None else None
        block_rounds = [Round(row, share) for row in times]
        # the next block spans about MIN_CHECK_S, so that a few ticks can tell a disturbance from rounding
        round_s = sum(map(sum, times)) / 1e3 / len(times)
        block = max(1, min(50, math.ceil(min_check_s / max(round_s, 1e-6))))
        if seen is None or not seen.exceeds(max_other_cpu):
            clean.extend(block_rounds)
            continue
        disturbed.extend(block_rounds)
        budget = max_retries if max_retries is not None else repeats + len(clean)
        if len(disturbed) > budget:
            break
        assert probe is not None
        wait_for_quiet(probe, max_other_cpu, MAX_QUIET_WAIT_S, sleep=sleep)
        for run in runs:  # caches went cold while waiting: one untimed pass each
            run()
    fill = sorted(disturbed, key=lambda r: r.other_fraction or 0.0)[:max(0, repeats - len(clean))]
    return Rounds(tuple(clean + fill), len(clean) + len(disturbed), len(clean), probe is not None)


def wait_for_quiet(probe: CpuDisturbanceProbe, max_other_cpu: float, max_wait_s: float, *,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Sleep in short slices until one passes with other processes under ``max_other_cpu``; False on timeout.

    Competing work often comes in bursts (a test run, a compile): a round taken right after one has passed is
    clean, where one taken at once would be disturbed again.
    """
    deadline = time.perf_counter() + max_wait_s
    while time.perf_counter() < deadline:
        before = probe.snapshot()
        sleep(QUIET_SLICE_S)
        if not probe.between(before, probe.snapshot()).exceeds(max_other_cpu):
            return True
    return False
