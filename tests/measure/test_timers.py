"""CUDA graphs are captured and replayed on the model's own device, whichever device is current (stand-in CUDA)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from moprune.measure import timers


class FakeCuda:
    """The parts of ``torch.cuda`` a capture touches, recording which device was current at each step."""

    def __init__(self) -> None:
        self.current = 0  # a fresh process: cuda:0 is current
        self.log: list[tuple[str, int]] = []
        self.streams: list = []  # the streams warm-up passes ran on
        fake = self

        class Stream:
            def __init__(self, device=None):
                self.device = device

            def wait_stream(self, other) -> None:
                pass

        class CUDAGraph:
            def replay(self) -> None:
                fake.log.append(("replay", fake.current))

        self.Stream, self.CUDAGraph = Stream, CUDAGraph

    @contextmanager
    def device(self, device):
        old, self.current = self.current, torch.device(device).index
        try:
            yield
        finally:
            self.current = old

    @contextmanager
    def stream(self, stream):
        self.streams.append(stream)
        yield

    @contextmanager
    def graph(self, _graph, stream=None, **_):
        self.log.append(("capture", self.current))
        yield

    def current_stream(self, device=None):
        return self.Stream(device)

    def synchronize(self, device=None) -> None:
        pass


class OnDevice:
    """Stands in for a batch on cuda:1 (only its device is read)."""

    device = torch.device("cuda:1")


@pytest.fixture()
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    for name in ("device", "stream", "graph", "current_stream", "synchronize", "Stream", "CUDAGraph"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    timers.capture_stream.cache_clear()  # no fake stream may outlive the fake (a GPU test would capture on it)
    yield fake
    timers.capture_stream.cache_clear()


def test_graphs_are_captured_on_one_stream_per_device(fake_cuda):
    """A new stream per capture cycles through torch's 32 and cuBLAS keeps a workspace for each: +1023 MiB over 40
    captures on an H200, +33 MiB on one stream."""
    for _ in range(3):
        timers.cuda_graph_runner(lambda x: None, OnDevice())
    assert len(fake_cuda.streams) == 3 and len({id(s) for s in fake_cuda.streams}) == 1


def test_a_graph_of_a_model_on_cuda_1_is_captured_and_replayed_on_cuda_1(fake_cuda):
    passes = []
    replay = timers.cuda_graph_runner(lambda x: passes.append(fake_cuda.current), OnDevice())
    assert replay is not None
    replay()
    assert passes == [1, 1, 1, 1], "warm-up passes and the captured pass ran with the model's device current"
    assert fake_cuda.log == [("capture", 1), ("replay", 1)]
    assert fake_cuda.current == 0, "the caller's current device is restored"


def test_a_failed_capture_warns_and_falls_back_to_eager(fake_cuda):
    def broken(_x):
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        assert timers.cuda_graph_runner(broken, OnDevice()) is None


def test_a_gpu_call_runs_enough_passes_to_hide_the_launch_gap_and_reads_one():
    from moprune.measure.timers import MAX_PASSES_PER_CALL, PerPass, passes_per_call, repeated

    assert passes_per_call(5.0) == 1, "a pass longer than a millisecond is timed alone"
    assert passes_per_call(0.1) == 10 and passes_per_call(0.0) == MAX_PASSES_PER_CALL
    calls = []
    run = repeated(lambda: calls.append(1), 4)
    run()
    assert len(calls) == 4

    class Ten:
        method, unit = "cuda-events", "ms"

        def start(self):
            pass

        def stop(self):
            return 10.0

    per = PerPass(Ten(), 4)
    per.start()
    assert per.stop() == 2.5 and per.method == "cuda-events"


def test_a_pass_that_launches_as_slowly_as_it_runs_is_host_bound():
    from moprune.measure.timers import host_bound

    assert host_bound(enqueue_ms=0.9, gpu_ms=1.0) and not host_bound(enqueue_ms=0.1, gpu_ms=1.0)
