"""glibc's malloc thresholds are fixed once for CPU timing, and left alone where they are not glibc's to fix."""

from __future__ import annotations

import platform

import pytest

from moprune.measure import allocator


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.answer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in (*allocator._ENV, "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)


def test_both_thresholds_are_fixed_so_freed_blocks_are_reused_not_mapped_again():
    libc = FakeLibc()
    state = allocator.steady_cpu_allocator(libc)
    assert libc.calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 1 << 30)]
    assert "mmap threshold fixed at 32 MiB" in state


def test_tunables_the_user_set_are_left_as_they_are(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    libc = FakeLibc()
    assert "set by the environment" in allocator.steady_cpu_allocator(libc) and libc.calls == []
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert "set by the environment" in allocator.steady_cpu_allocator(libc) and libc.calls == []


def test_a_refused_mallopt_is_reported_not_hidden():
    assert "refused" in allocator.steady_cpu_allocator(FakeLibc(answer=0))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_this_process_gets_it_once_and_the_study_environment_records_it():
    import torch

    from moprune.search.context import environment

    first = allocator.steady_cpu_allocator()
    assert allocator.steady_cpu_allocator() is first, "once per process"
    assert environment(torch.device("cpu"))["cpu_allocator"] == first
