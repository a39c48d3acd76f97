"""measure_architecture end to end: cache by shape, energy where a meter exists, exit 2 where none does."""

from __future__ import annotations

import dataclasses

import time

import pytest
import torch
import yaml
from torch import nn

from helpers import make_spec
from fake_hardware import FakePowercap, FakeProc
from moprune.errors import SpecError
from moprune.measure import ArchitectureCache, MeasureSettings, architecture_signature, measure_architecture
from moprune.record import TrialRecord
from moprune.measure import energy as energy_module
from moprune.measure.disturbance import CpuDisturbanceProbe
from moprune.measure.energy import NoEnergyMeter
from moprune.search import preflight

# clean rounds whatever else runs on this machine (the disturbance check has its own tests)
FAST = MeasureSettings(batch_size=4, warmup=1, repeats=4, max_other_cpu=1.0, ci_half_width=None,
                       energy_window_s=0.15)


def _net(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 8, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


class CpuDrivenEnergy:
    """A CPU package drawing 5 W idle plus 20 W per core this process keeps busy (its CPU time)."""

    def __init__(self) -> None:
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def __call__(self, t: float) -> float:
        return 5.0 * (t - self.t0) + 20.0 * (time.process_time() - self.cpu0)


@pytest.fixture
def no_meter(monkeypatch, tmp_path):
    """This machine as it is (no NVML, no RAPL), whatever machine the tests run on."""
    monkeypatch.setattr("moprune.measure.rapl.POWERCAP", tmp_path / "no-powercap")
    monkeypatch.setattr(energy_module, "_METERS", {})


@pytest.fixture
def rapl(monkeypatch, tmp_path):
    """A RAPL package meter under a stand-in /sys/class/powercap whose power follows this process's CPU use."""
    monkeypatch.setattr(energy_module, "_METERS", {})
    with FakePowercap(tmp_path / "powercap", joules=CpuDrivenEnergy()) as cap:
        monkeypatch.setattr("moprune.measure.rapl.POWERCAP", cap.root)
        yield cap


def test_the_signature_is_the_shape_not_the_weights():
    assert architecture_signature(_net(16, seed=1)) == architecture_signature(_net(16, seed=2))
    assert architecture_signature(_net(16)) != architecture_signature(_net(12))


def test_an_identical_shape_is_measured_once(no_meter):
    cache: ArchitectureCache = ArchitectureCache()
    x = torch.randn(4, 3, 12, 12)
    first = measure_architecture(_net(8, seed=1), _net(16), x, FAST, device=torch.device("cpu"),
                                 want_energy=False, cache=cache)
    again = measure_architecture(_net(8, seed=2), _net(16), x, FAST, device=torch.device("cpu"),
                                 want_energy=False, cache=cache)
    assert not first.cached and again.cached
    assert again.latency == first.latency
    assert TrialRecord.measured(again).attrs()["measure_cached"] is True and TrialRecord.measured(first).attrs()["measure_cached"] is False
    other_batch = measure_architecture(_net(8), _net(16), torch.randn(2, 3, 12, 12), FAST,
                                       device=torch.device("cpu"), want_energy=False, cache=cache)
    assert not other_batch.cached, "the batch size is part of the key"
    assert cache.hits == 1 and len(cache) == 2


def test_a_screen_takes_half_the_rounds_and_is_never_cached(no_meter):
    assert [MeasureSettings(repeats=r).screen().repeats for r in (2, 4, 10, 30)] == [2, 3, 5, 15]
    assert MeasureSettings(repeats=10).screen().ci_half_width is None
    cache: ArchitectureCache = ArchitectureCache()
    x = torch.randn(4, 3, 12, 12)
    # a precision target no 4-round measurement meets: a precise measurement would take up to max_repeats rounds
    precise = dataclasses.replace(FAST, ci_half_width=1e-6, max_repeats=400)
    screen = measure_architecture(_net(8), _net(16), x, precise, device=torch.device("cpu"), want_energy=True,
                                  screen=True, cache=cache)
    assert screen.screen and screen.energy is None, "a screen measures no energy"
    # half the rounds, or the one disturbance-check block (~50 ms) that a model this fast fills with more
    assert precise.screen().repeats <= screen.latency.info.taken <= 60
    assert TrialRecord.measured(screen).attrs()["latency_screen"] is True
    assert len(cache) == 0
    full = measure_architecture(_net(8), _net(16), x, precise, device=torch.device("cpu"), want_energy=False,
                                cache=cache)
    assert not full.cached and not full.screen and full.latency.info.rounds >= 400
    reused = measure_architecture(_net(8), _net(16), x, precise, device=torch.device("cpu"), want_energy=False,
                                  screen=True, cache=cache)
    assert reused.cached and not reused.screen, "a known precise measurement serves a screen"


def test_a_noisy_measurement_is_not_reused(no_meter, tmp_path, monkeypatch):
    proc = FakeProc(tmp_path / "proc")
    monkeypatch.setattr("moprune.measure.latency.default_probe",
                        lambda: CpuDisturbanceProbe(proc=tmp_path / "proc", cpus={0, 1}))
    monkeypatch.setattr("moprune.measure.rounds.MAX_QUIET_WAIT_S", 0.0)

    class Loaded(nn.Module):  # every pass shares the CPUs with another process
        def forward(self, x):
            proc.tick(other=30, cpu=1)
            return x

    spec = dataclasses.replace(FAST, max_other_cpu=0.1)
    cache: ArchitectureCache = ArchitectureCache()
    x = torch.randn(4, 3)
    noisy = measure_architecture(Loaded(), nn.Identity(), x, spec, device=torch.device("cpu"), want_energy=False,
                                 cache=cache)
    assert noisy.latency_noisy is True and TrialRecord.measured(noisy).attrs()["latency_noisy"] is True
    again = measure_architecture(Loaded(), nn.Identity(), x, spec, device=torch.device("cpu"), want_energy=False,
                                 cache=cache)
    assert not again.cached


def test_the_attrs_say_how_latency_was_measured(no_meter):
    torch.set_num_threads(torch.get_num_threads())
    m = measure_architecture(_net(8), _net(24), torch.randn(4, 3, 12, 12), FAST, device=torch.device("cpu"),
                             want_energy=False, cache=None)
    attrs = TrialRecord.measured(m).attrs()
    assert attrs["latency_ms"] == m.latency.candidate.median_ms
    assert attrs["latency_ms_p10"] <= attrs["latency_ms"] <= attrs["latency_ms_p90"]
    assert attrs["dense_latency_ms"] == m.latency.reference.median_ms
    assert attrs["speedup_ci95"][0] <= attrs["speedup"] <= attrs["speedup_ci95"][1]
    assert attrs["latency_timer"] == "perf_counter" and attrs["torch_threads"] == torch.get_num_threads()
    assert attrs["device"] == "cpu" and attrs["device_name"]
    assert attrs["latency_rounds"] >= FAST.repeats and attrs["latency_rounds_taken"] >= attrs["latency_rounds"]
    assert "energy_mj" not in attrs and "energy_method" not in attrs and "idle_power_w" not in attrs


def test_threads_from_the_spec_are_set_and_recorded(no_meter):
    before = torch.get_num_threads()
    try:
        m = measure_architecture(_net(8), _net(8), torch.randn(2, 3, 8, 8), dataclasses.replace(FAST, threads=1),
                                 device=torch.device("cpu"), want_energy=False, cache=None)
        assert TrialRecord.measured(m).attrs()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_energy_on_a_device_with_a_meter_is_measured_and_recorded(rapl):
    # one thread: the stand-in's energy follows CPU time, and idle OpenMP threads spin for CPU time on a busy machine
    before = torch.get_num_threads()
    try:
        m = measure_architecture(_net(8), _net(32), torch.randn(16, 3, 24, 24), dataclasses.replace(FAST, threads=1),
                                 device=torch.device("cpu"), want_energy=True, cache=None)
    finally:
        torch.set_num_threads(before)
    attrs = TrialRecord.measured(m).attrs()
    assert attrs["energy_method"] == "rapl"
    assert attrs["energy_mj"] > 0
    assert 4.0 < attrs["idle_power_w"] < 25.0, "idle is 5 W plus the little CPU the idle process uses"
    assert attrs["energy_window_s"] >= FAST.energy_window_s / 2 and attrs["energy_passes"] >= 1, "half each, paired"
    # the dense model's window right after: the plan's energy is the study's dense energy over the windows' ratio
    assert m.dense_energy is not None and attrs["dense_energy_mj"] > attrs["energy_mj_window"] > 0
    assert attrs["energy_saving"] == pytest.approx(attrs["dense_energy_mj"] / attrs["energy_mj_window"])
    paired = TrialRecord.measured(m, baseline_energy_mj=100.0)
    assert paired.energy_mj == pytest.approx(100.0 / paired.energy_saving)
    assert paired.energy_mj_window == attrs["energy_mj"], "without a baseline the window's own reading"


def test_energy_without_a_meter_is_refused_not_estimated(no_meter):
    with pytest.raises(NoEnergyMeter, match="RAPL"):
        measure_architecture(_net(8), _net(8), torch.randn(2, 3, 8, 8), FAST, device=torch.device("cpu"),
                             want_energy=True, cache=None)


# --- the spec check and the CLI -------------------------------------------------------------------------------------

@pytest.mark.parametrize("override", [{"objectives": ["accuracy", "energy_mj"]},
                                      {"constraints": {"max_energy_mj": 5.0}}])
def test_asking_for_energy_without_a_meter_is_a_spec_error_naming_the_meters_and_the_way_out(no_meter, override):
    with pytest.raises(SpecError) as err:
        preflight(make_spec(**override))
    message = str(err.value)
    assert ("objectives: energy_mj" if "objectives" in override else "constraints.max_energy_mj") in message
    assert "RAPL" in message and "no-powercap" in message
    assert "latency_ms" in message and "NVIDIA GPU" in message and "never estimates" in message


def test_moprune_run_exits_2_when_energy_has_no_meter(no_meter, tmp_path, capsys):
    from helpers import TINY_SPEC
    from moprune.cli import main

    path = tmp_path / "energy.yaml"
    path.write_text(yaml.safe_dump({**TINY_SPEC, "objectives": ["accuracy", "energy_mj"]}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moprune: error: objectives: energy_mj needs an energy meter on device 'cpu'")
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_study_on_a_metered_device_records_energy_and_shows_its_methods(rapl, tmp_path):
    """A real tiny study (small CNN on 8-px digits) with energy as an objective, on the stand-in RAPL meter."""
    from moprune.search import run_study
    from moprune.report import format_status, study_status

    spec = make_spec(
        name="energy", storage=f"sqlite:///{tmp_path / 'energy.db'}", model={"arch": "tiny_models:small_cnn",
                                                                             "pretrain": {"epochs": 1}},
        data={"name": "digits", "image_size": 8}, finetune={"steps": 1, "batch_size": 32},
        objectives=["accuracy", "energy_mj", "latency_ms"], constraints={"max_accuracy_drop": None},
        measure={"batch_size": 16, "warmup": 1, "repeats": 3, "energy_window_s": 0.1, "max_other_cpu": 1.0},
        search={"n_trials": 4, "population_size": 4, "uniform_count": 2, "seed_trials": ["dense", "uniform"],
                "sampler": "random"},
    )
    study = run_study(spec, progress=False)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) >= 3
    for t in done:
        a = t.user_attrs
        assert a["energy_method"] == "rapl" and a["idle_power_w"] > 0
        assert t.values[1] == a["energy_mj"] > 0, "the objective value is the measured energy"
        assert t.constraints["energy_mj"] == 0.0
    assert study.user_attrs["environment"]["energy_meter"] == "rapl"
    text = format_status(study_status(study, spec))
    assert "measured on cpu" in text and "energy: rapl" in text and "latency: perf_counter" in text
    assert "noisy" in text and "reused from an identical shape" in text


@pytest.mark.gpu
def test_on_a_gpu_the_attrs_hold_the_driver_clocks_and_the_nvml_method(monkeypatch):
    monkeypatch.setattr(energy_module, "_METERS", {})
    spec = MeasureSettings(batch_size=8, warmup=3, repeats=10, energy_window_s=1.5, cuda_graph=True)
    dev = torch.device("cuda:0")
    m = measure_architecture(_net(8).to(dev), _net(64).to(dev), torch.randn(8, 3, 32, 32), spec, device=dev,
                             want_energy=True, cache=None)
    attrs = TrialRecord.measured(m).attrs()
    processes = dict(m.device.conditions).get("compute_processes")  # None where NVML cannot list them
    assert attrs["latency_timer"] == "cuda-graph"
    assert attrs["latency_noisy"] is (None if processes is None else processes > 1), "alone on the GPU: clean"
    assert attrs["driver"] and attrs["sm_clock_mhz_start"] > 0 and attrs["sm_clock_mhz_end"] > 0
    assert attrs["energy_method"] in ("nvml-counter", "nvml-sampled") and attrs["energy_mj"] > 0
    assert attrs["idle_power_w"] > 0 and attrs["cudnn_benchmark"] is True


def test_another_process_on_the_gpu_makes_the_measurement_noisy():
    """Kernels of two processes time-slice one GPU and share its energy counter: NVML's process list says so."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()
    settings = MeasureSettings(batch_size=2, warmup=1, repeats=3, ci_half_width=None, max_other_cpu=1.0)
    m = measure_architecture(net, net, torch.randn(2, 3, 8, 8), settings, device=torch.device("cpu"),
                             want_energy=False)

    def on_gpu(processes: int):
        return dataclasses.replace(m, device=dataclasses.replace(m.device, device="cuda:0",
                                                                 conditions=(("compute_processes", processes),)))
    assert on_gpu(2).latency_noisy is True and on_gpu(1).latency_noisy is False
    assert TrialRecord.measured(on_gpu(2)).gpu_conditions == {"compute_processes": 2}
