"""Alternating timing rounds: disturbed rounds are taken again, the order rotates, the median's CI decides when
enough rounds were taken."""

from __future__ import annotations

from fake_hardware import FakeProc
from moprune.measure.disturbance import CpuDisturbanceProbe
from moprune.measure.rounds import median_ci95, run_rounds
from moprune.measure.timers import CpuTimer

NO_SLEEP = {"sleep": lambda _s: None, "min_check_s": 0.0}  # one round per check: the script decides each


class Scripted:
    """Runners whose rounds are disturbed as a script says, by advancing a fake /proc between the passes."""

    def __init__(self, proc: FakeProc, disturbed: set[int]):
        self.proc, self.disturbed, self.order, self.calls = proc, disturbed, [], 0

    def runner(self, name: str):
        def run() -> None:
            self.order.append(name)
            if name == "A":
                self.calls += 1
                if self.calls in self.disturbed:
                    self.proc.tick(other=40, cpu=0)
            self.proc.tick(own=1)
        return run


def test_disturbed_rounds_are_taken_again_and_the_order_rotates(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed={2, 4})  # A's 2nd and 4th passes: rounds 2 and 3 (an untimed re-warm in between)
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=5,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.clean == 5 and rounds.taken == 7 and not rounds.noisy
    assert all(r.other_fraction == 0 for r in rounds.used)
    # A B, then B A, ...: neither model always runs first (untimed re-warm passes follow each disturbed round)
    timed = [s.order[i:i + 2] for i in range(0, 4, 2)]
    assert timed == [["A", "B"], ["B", "A"]]


def test_a_machine_that_stays_loaded_gives_up_and_says_noisy(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed=set(range(1, 1000)))
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=4,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.noisy and rounds.clean == 0
    assert rounds.taken == 5, "at most `repeats` disturbed rounds beyond the clean ones"
    assert len(rounds.used) == 4, "the least disturbed rounds fill in"


def test_max_retries_bounds_the_disturbed_rounds(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed={1, 2, 3})
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=3, max_retries=1,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.taken == 2 and rounds.noisy


def test_rounds_continue_until_enough_but_not_past_max_repeats(tmp_path):
    calls = []
    rounds = run_rounds([lambda: None], CpuTimer(), repeats=5, probe=None, max_repeats=40,
                        enough=lambda rs: calls.append(len(rs)) or len(rs) >= 25, min_check_s=0.0)
    assert len(rounds.used) == 25 and calls == [5, 15, 25]
    never = run_rounds([lambda: None], CpuTimer(), repeats=5, probe=None, max_repeats=12, enough=lambda rs: False,
                       min_check_s=0.0)
    assert len(never.used) == 12 and not never.checked


class OneMillisecond:
    """A timer that reads every pass as 1 ms: the block sizes follow from the durations, not from this machine."""

    method, unit = "fake", "ms"

    def start(self) -> None:
        pass

    def stop(self) -> float:
        return 1.0


def test_fast_rounds_are_checked_in_blocks_long_enough_for_the_tick_counters(tmp_path):
    """A 2 ms round cannot be judged by 10 ms ticks: rounds are grouped into ~20 ms blocks, retaken whole."""
    proc = FakeProc(tmp_path)
    calls = []

    def run() -> None:
        pass

    def loaded() -> None:
        calls.append(1)
        if len(calls) == 5:  # one pass in the second block (the first block is a single round, the next ten)
            proc.tick(other=5, cpu=0)

    rounds = run_rounds([run, loaded], OneMillisecond(), repeats=10,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), min_check_s=0.02,
                        sleep=lambda _s: None)
    assert rounds.clean >= 10 and not rounds.noisy
    # rounds of 2 ms: blocks of ceil(20 / 2) = 10 rounds after the first, and the disturbed one is retaken whole
    assert rounds.taken - rounds.clean == 10, "the disturbed block is discarded whole, not just its one round"
    assert all(r.other_fraction == 0 for r in rounds.used)


def test_median_ci95_uses_the_textbook_order_statistics():
    assert median_ci95(list(range(1, 31))) == (10, 21)
    assert median_ci95(list(range(1, 101))) == (40, 61)
    assert median_ci95([7.0]) == (7.0, 7.0)
