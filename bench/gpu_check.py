"""The GPU check: what moprune can only show on an NVIDIA GPU, as one command, one line per check.

Run it on a machine with a CUDA GPU, NVML and the project installed (``make install``):

    .venv/bin/python bench/gpu_check.py [--device cuda:0] [--quick] [--tests] [--out DIR]

Each check prints one line, ``PASS``, ``WARN`` (works, but not as a deployment would want), ``FAIL`` or ``SKIP``
(cannot run here, and why), and all of them go to ``DIR/gpu_check.json``. The checks, in order:

- ``event timing``: CUDA events around 20 passes of a known kernel (a bf16 matmul) against a synchronised wall
  clock around the same passes: within 2% (what moprune's GPU latency is built on).
- ``graph on device``: a CUDA graph captured and replayed for a model on a device that is *not* the current one
  (the second GPU; with one GPU, the current one, and a WARN) takes at least 30% of an eager pass's time: the
  replay does the work (an empty graph, captured on the wrong device's stream, times near zero).
- ``speedup eager`` / ``speedup graph`` / ``speedup bf16+cl``: dense vs 50%-uniform ResNet-18 at batch 256,
  paired, in each mode, with the ratio speedup / MAC reduction: PASS above 1.5x, WARN above 1.1x (launch-bound;
  eager passes above 1.0x).
- ``nvml period``: the energy counter's update period, measured (about 20-100 ms), not assumed.
- ``counter vs samples``: the counter's energy over a loaded window against the integral of instant power sampled
  every 10 ms over the same window: within 5%.
- ``energy repeat``: three paired energy readings of the pruned and the dense model: spread (max-min over median)
  within 5% each, and the pruned model below dense in every pair.
- ``study``: a 30-trial ResNet-18 study on FakeData (10 with ``--quick``) on the device, with energy: GPU memory
  allocated after the study within 64 MiB of after its first trials, and the median share of a trial's time spent
  outside the fine-tune (PASS below 50%).

``--tests`` also runs ``pytest -m gpu`` (the GPU-only unit tests) first. Exit 0 when nothing FAILed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
TIMING_TOLERANCE = 0.02
ENERGY_TOLERANCE = 0.05
GRAPH_MIN_SHARE = 0.3
MEMORY_GROWTH_MIB = 64.0


@dataclass(frozen=True)
class Check:
    name: str
    state: str
    detail: str
    values: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.state:<5} {self.name}: {self.detail}"


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far apart repeated readings are."""
    return (max(values) - min(values)) / statistics.median(values)


def check_event_timing(run: Callable[[], None], timer, sync: Callable[[], None], *, calls: int = 5,
                       passes: int = 20, clock: Callable[[], float] = time.perf_counter) -> Check:
    """``timer`` (start/stop in ms) around ``passes`` runs against ``clock`` around as many, synchronised; the
    medians of ``calls`` interleaved calls within 2%."""
    event_ms, wall_ms = [], []
    for _ in range(calls):
        sync()
        timer.start()
        for _ in range(passes):
            run()
        event_ms.append(timer.stop())
        sync()
        t0 = clock()
        for _ in range(passes):
            run()
        sync()
        wall_ms.append((clock() - t0) * 1e3)
    event, wall = statistics.median(event_ms), statistics.median(wall_ms)
    gap = event / wall - 1
    state = PASS if abs(gap) <= TIMING_TOLERANCE else FAIL
    return Check("event timing", state, f"events {event:.3f} ms, wall clock {wall:.3f} ms for {passes} passes "
                 f"({gap:+.1%}; tolerance {TIMING_TOLERANCE:.0%})", {"event_ms": event, "wall_ms": wall})


def graph_verdict(graph_ms: float | None, eager_ms: float, *, model_device: str, current_device: str) -> Check:
    """Did a CUDA graph's replay do the model's work? ``graph_ms`` None: the capture failed."""
    where = f"model on {model_device}, current device {current_device}"
    values = {"graph_ms": graph_ms, "eager_ms": eager_ms, "model_device": model_device, "current": current_device}
    if graph_ms is None:
        return Check("graph on device", FAIL, f"capture failed ({where}); moprune would time eager passes", values)
    share = graph_ms / eager_ms
    if share < GRAPH_MIN_SHARE:
        return Check("graph on device", FAIL, f"replay {graph_ms:.3f} ms against eager {eager_ms:.3f} ms "
                     f"({share:.0%}): the graph does not do the work ({where})", values)
    state = PASS if model_device != current_device else WARN
    note = "" if state == PASS else "; one GPU: the non-current-device case needs two"
    return Check("graph on device", state, f"replay {graph_ms:.3f} ms, eager {eager_ms:.3f} ms ({where}){note}",
                 values)


def speedup_verdict(mode: str, speedup: float, mac_reduction: float, ran: str) -> Check:
    """Eager passes of a small model are launch-bound on a fast GPU (an H200 read 1.10-1.23x for ResNet-18 at 32 px,
    batch 256, where graphs read 1.73-1.77x): there only a pruned model slower than dense fails."""
    floor = 1.0 if mode == "eager" else 1.1
    state = PASS if speedup >= 1.5 else WARN if speedup >= floor else FAIL
    note = "" if state == PASS else " (the passes are launch-bound: a larger batch or CUDA graphs)"
    return Check(f"speedup {mode}", state, f"{speedup:.2f}x for {mac_reduction:.2f}x fewer MACs (ratio "
                 f"{speedup / mac_reduction:.2f}; {ran}){note}", {"speedup": speedup, "mac_reduction": mac_reduction})


def period_verdict(period_s: float, measured: bool) -> Check:
    values = {"period_ms": period_s * 1e3, "measured": measured}
    if not measured:
        return Check("nvml period", WARN, f"the counter did not move: {period_s * 1e3:.0f} ms assumed", values)
    state = PASS if 0.001 <= period_s <= 1.0 else FAIL
    return Check("nvml period", state, f"energy counter updates every {period_s * 1e3:.1f} ms (measured)", values)


def counter_vs_samples(start_load: Callable[[], Callable[[], None]], counter, sampler, *,
                       window_s: float) -> Check:
    """The counter's energy over one of its windows against the sampled power integrated over the same span.

    ``start_load()`` starts work that lasts ``window_s`` plus a few counter periods without waiting for it (a GPU's
    queued passes) and returns what waits for it: the counter's closing step then falls while the load still runs,
    so the two meters read the same power, and the samples are cut at the counter's own step times.
    """
    from moprune.measure.integrate import window_energy_mj

    sampler.start()
    counter.start()
    t_start = time.perf_counter()
    wait = start_load()
    time.sleep(window_s)
    counted = counter.stop()
    t_end = time.perf_counter()
    wait()
    sampler.stop()
    sampled = window_energy_mj(sampler.times_s, sampler.power_w, t_start, t_end)
    gap = counted / sampled - 1
    state = PASS if abs(gap) <= ENERGY_TOLERANCE else FAIL
    return Check("counter vs samples", state, f"counter {counted / 1e3:.2f} J, sampled power {sampled / 1e3:.2f} J "
                 f"over the counter's {t_end - t_start:.2f} s ({gap:+.1%}; tolerance {ENERGY_TOLERANCE:.0%})",
                 {"counter_mj": counted, "sampled_mj": sampled})


def energy_verdict(pruned_mj: Sequence[float], dense_mj: Sequence[float]) -> Check:
    """Repeated paired readings: each model's spread within 5%, the pruned model below dense in every pair."""
    sp, sd = spread(pruned_mj), spread(dense_mj)
    below = all(p < d for p, d in zip(pruned_mj, dense_mj))
    state = PASS if sp <= ENERGY_TOLERANCE and sd <= ENERGY_TOLERANCE and below else FAIL
    return Check("energy repeat", state, f"pruned {statistics.median(pruned_mj):.2f} mJ/pass (spread {sp:.1%}), "
                 f"dense {statistics.median(dense_mj):.2f} (spread {sd:.1%}); pruned below dense in "
                 f"{sum(p < d for p, d in zip(pruned_mj, dense_mj))} of {len(dense_mj)} pairs",
                 {"pruned_mj": list(pruned_mj), "dense_mj": list(dense_mj)})


def study_verdict(memory_mib: Sequence[float], timings: Sequence[dict[str, float]]) -> Check:
    """GPU memory after the first trials and after the study; the median share of trial time not fine-tuning."""
    growth = memory_mib[-1] - memory_mib[0]
    shares = [1 - t.get("finetune", 0.0) / total for t in timings if (total := sum(t.values())) > 0]
    outside = statistics.median(shares) if shares else float("nan")
    ok_memory = growth <= MEMORY_GROWTH_MIB
    state = FAIL if not ok_memory or not shares else PASS if outside < 0.5 else WARN
    stages = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in sorted({k for t in timings for k in t})}
    where = ", ".join(f"{k} {v:.2f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:4])
    return Check("study", state, f"{len(timings)} trials; GPU memory {memory_mib[0]:.0f} -> {memory_mib[-1]:.0f} "
                 f"MiB allocated ({growth:+.0f}; limit +{MEMORY_GROWTH_MIB:.0f}); median {outside:.0%} of a trial "
                 f"outside the fine-tune (median s: {where})",
                 {"memory_mib": list(memory_mib), "outside_finetune": outside, "stage_median_s": stages})


def study_spec(device: str, n_trials: int, folder: Path) -> dict:
    """The study the check runs: ResNet-18 on FakeData at 32 px, energy on, batch 256 as CUDA graphs."""
    return {"name": "gpu_check", "seed": 0, "device": device, "storage": f"sqlite:///{folder / 'gpu_check.db'}",
            "model": {"arch": "resnet18", "pretrain": {"epochs": 1, "lr": 0.05, "batch_size": 128}},
            "data": {"name": "fake", "image_size": 32},
            "prune": {"ratio": {"low": 0.0, "high": 0.8, "step": 0.05}},
            "finetune": {"steps": 50, "lr": 0.01, "batch_size": 128},
            "objectives": ["accuracy", "latency_ms", "energy_mj"],
            "measure": {"batch_size": 256, "cuda_graph": True, "repeats": 10},
            "search": {"sampler": "tpe", "n_trials": n_trials, "seed_trials": ["dense", "uniform"],
                       "uniform_count": 2}}


# ---- on the GPU: each function measures, then hands the numbers to its verdict above ------------------------------

def _pruned_resnet(device):
    import torch
    import torchvision

    from moprune.measure import count_complexity
    from moprune.pruning import apply_plan, discover_groups

    torch.manual_seed(0)
    dense = torchvision.models.resnet18(num_classes=10).eval().to(device)
    x1 = torch.randn(1, 3, 32, 32, device=device)
    pruned = apply_plan(dense, {g.root: 0.5 for g in discover_groups(dense, x1)}, x1).model.eval()
    return dense, pruned, count_complexity(dense, x1).macs / count_complexity(pruned, x1).macs


def run_event_timing(device) -> Check:
    import torch

    from moprune.measure.timers import CudaTimer

    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # cuBLAS's first call picks its kernel: not what is compared
        a @ a
    torch.cuda.synchronize(device)
    return check_event_timing(lambda: a @ a, CudaTimer(device), lambda: torch.cuda.synchronize(device))


def run_graph_on_device(device) -> Check:
    import torch

    from moprune.measure.timers import CudaTimer, cuda_graph_runner

    others = [i for i in range(torch.cuda.device_count()) if i != device.index]
    model_device = torch.device("cuda", others[0]) if others else device
    current = device  # the model lives on another GPU where there is one
    dense, _, _ = _pruned_resnet(model_device)
    x = torch.randn(256, 3, 32, 32, device=model_device)
    timer = CudaTimer(model_device)
    with torch.cuda.device(current), torch.no_grad():
        replay = cuda_graph_runner(dense, x)
        eager = [_timed(timer, lambda: dense(x)) for _ in range(10)]
        graph = [_timed(timer, replay) for _ in range(10)] if replay is not None else None
    return graph_verdict(statistics.median(graph) if graph else None, statistics.median(eager),
                         model_device=str(model_device), current_device=str(current))


def _timed(timer, fn) -> float:
    timer.start()
    fn()
    return timer.stop()


def run_speedups(device) -> list[Check]:
    import torch

    from moprune.measure import MeasureSettings, measure_architecture
    from moprune.spec import parse_spec

    dense, pruned, reduction = _pruned_resnet(device)
    x = torch.randn(256, 3, 32, 32, device=device)
    checks = []
    for mode, measure in (("eager", {}), ("graph", {"cuda_graph": True}),
                          ("bf16+cl", {"dtype": "bfloat16", "channels_last": True, "cuda_graph": True})):
        spec = parse_spec({"device": str(device), "measure": {"batch_size": 256, **measure}}, source="gpu_check")
        m = measure_architecture(pruned, dense, x, MeasureSettings.from_spec(spec.measure), device=device,
                                 want_energy=False)
        checks.append(speedup_verdict(mode, m.latency.speedup, reduction, m.runtime))
    return checks


def run_energy_checks(device) -> list[Check]:
    import torch

    from moprune.measure import MeasureSettings, measure_architecture
    from moprune.measure.device import nvml_device
    from moprune.measure.energy import NvmlCounterMeter, NvmlSampledMeter
    from moprune.measure.timers import CudaTimer
    from moprune.spec import parse_spec

    gpu = nvml_device(str(device))
    if gpu is None or not gpu.has_energy_counter():
        return [Check("nvml period", SKIP, "no NVML energy counter on this device")]
    counter = NvmlCounterMeter(gpu)
    dense, pruned, _ = _pruned_resnet(device)
    x = torch.randn(256, 3, 32, 32, device=device)
    window_s = 5.0
    with torch.no_grad():
        timer = CudaTimer(device)
        pass_ms = statistics.median(_timed(timer, lambda: dense(x)) for _ in range(5))

        def queue(seconds: float) -> Callable[[], None]:  # passes queued for ``seconds`` of GPU time, not waited on
            for _ in range(math.ceil(seconds * 1e3 / pass_ms)):
                dense(x)
            return lambda: torch.cuda.synchronize(device)

        wait = queue(3.0)  # some counters stand still on an idle GPU: time their updates under load
        counter.measure_update_period()
        wait()
        checks = [period_verdict(counter.update_period_s, counter.period_measured)]
        checks.append(counter_vs_samples(lambda: queue(window_s + 3 * counter.update_period_s), counter,
                                         NvmlSampledMeter(gpu, sample_ms=10.0), window_s=window_s))
    spec = parse_spec({"device": str(device), "measure": {"batch_size": 256, "cuda_graph": True}}, source="gpu_check")
    settings = MeasureSettings.from_spec(spec.measure)
    readings = [measure_architecture(pruned, dense, x, settings, device=device, want_energy=True) for _ in range(3)]
    checks.append(energy_verdict([m.energy.energy_mj for m in readings],
                                 [m.dense_energy.energy_mj for m in readings]))
    return checks


def run_study_check(device, n_trials: int, folder: Path) -> Check:
    import torch

    from moprune.record import TrialRecord
    from moprune.search import run_study
    from moprune.spec import parse_spec

    memory = []
    first = max(2, n_trials // 3)
    for count in (first, n_trials):  # the same study, resumed: memory after its first trials and after all
        data = study_spec(str(device), count, folder)
        study = run_study(parse_spec(data, source="gpu_check"), progress=False)
        torch.cuda.synchronize(device)
        gc.collect()  # what is still referenced, not what the collector has yet to reach
        memory.append(torch.cuda.memory_allocated(device) / 2 ** 20)
    timings = [TrialRecord.of(t).timings_s or {} for t in study.trials if t.state.name == "COMPLETE"]
    return study_verdict(memory, timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__[__doc__.index("Each check"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--quick", action="store_true", help="a 10-trial study instead of 30")
    parser.add_argument("--tests", action="store_true", help="run pytest -m gpu first")
    parser.add_argument("--out", default=None, help="folder for gpu_check.json and the study (default: a temp dir)")
    args = parser.parse_args()
    import torch

    from moprune.measure.device import gpu_conditions

    if not torch.cuda.is_available():
        print("no CUDA device: this script checks what only a GPU can show")
        return 2
    device = torch.device(args.device)
    if device.index is None:  # "cuda": the current device, by number, so "another device" means another GPU
        device = torch.device("cuda", torch.cuda.current_device())
    out = Path(args.out or tempfile.mkdtemp(prefix="moprune-gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": str(device), "name": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "cuda": torch.version.cuda, "conditions": gpu_conditions(device), "checks": []}
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, default=str), flush=True)
    if args.tests:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], cwd=ROOT).returncode
        report["checks"].append(asdict(Check("gpu tests", PASS if rc == 0 else FAIL, f"pytest -m gpu exit {rc}")))
    steps = [("event timing", lambda: [run_event_timing(device)]),
             ("graph on device", lambda: [run_graph_on_device(device)]),
             ("speedups", lambda: run_speedups(device)), ("energy", lambda: run_energy_checks(device)),
             ("study", lambda: [run_study_check(device, 10 if args.quick else 30, out)])]
    for name, fn in steps:
        t0 = time.perf_counter()
        try:
            checks = fn()
        except Exception as exc:  # noqa: BLE001  (one line per check: a crash is that check's FAIL)
            checks = [Check(name, FAIL, f"{type(exc).__name__}: {exc}")]
            traceback.print_exc(file=sys.stdout)  # where it broke: a GPU's lease is too short to rerun for it
        for c in checks:
            print(f"{c.line()}  [{time.perf_counter() - t0:.0f} s]", flush=True)
            report["checks"].append(asdict(c))
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"written to {out / 'gpu_check.json'}")
    return 1 if any(c["state"] == FAIL for c in report["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
