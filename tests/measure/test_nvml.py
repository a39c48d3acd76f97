"""The NVML adapter against a stand-in pynvml: Volta+, pre-Volta, NotSupported, no library; device lookup."""

from __future__ import annotations

import pytest
import torch

from fake_hardware import KEPLER, VOLTA, FakeNvml
from moprune.measure.energy import NoEnergyMeter, NvmlCounterMeter, NvmlSampledMeter, open_energy_meter
from moprune.measure.nvml import NvmlDevice, NvmlUnavailable


def test_volta_and_newer_use_the_total_energy_counter():
    meter = open_energy_meter("cuda:0", nvml=FakeNvml("volta"))
    assert isinstance(meter, NvmlCounterMeter) and meter.method == "nvml-counter"


def test_a_volta_gpu_reporting_its_architecture_exactly_uses_the_counter():
    assert isinstance(open_energy_meter("cuda:0", nvml=FakeNvml("volta", arch=VOLTA)), NvmlCounterMeter)


def test_pre_volta_falls_back_to_power_sampling_at_the_spec_rate():
    meter = open_energy_meter("cuda:0", nvml=FakeNvml("pascal"), sample_ms=25.0)
    assert isinstance(meter, NvmlSampledMeter) and meter.method == "nvml-sampled"
    assert meter.update_period_s == pytest.approx(0.025)


def test_a_known_old_architecture_is_not_asked_for_the_counter():
    nvml = FakeNvml("volta", arch=KEPLER)  # would even answer the counter; the architecture decides first
    assert isinstance(open_energy_meter("cuda:0", nvml=nvml), NvmlSampledMeter)


def test_unknown_architecture_lets_the_counter_answer_for_itself():
    nvml = FakeNvml("pascal", arch=0xFFFFFFFF)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        assert gpu.has_energy_counter() is False  # NVMLError_NotSupported from the counter itself
        assert gpu.can_read_power() is True


def test_neither_counter_nor_power_is_no_meter_and_says_which_gpu():
    nvml = FakeNvml("unsupported")
    with pytest.raises(NoEnergyMeter, match="Quadro K600 reports neither total energy nor power") as err:
        open_energy_meter("cuda:0", nvml=nvml)
    assert err.value.looked_for[0].startswith("NVML:")
    assert nvml.inits == 0, "a GPU without a meter must not keep NVML open"


def test_no_library_is_no_meter_with_the_reason():
    with pytest.raises(NoEnergyMeter, match="NVML did not initialise.*Library Not Found"):
        open_energy_meter("cuda:0", nvml=FakeNvml("no-library"))


def test_a_missing_gpu_index_is_unavailable_and_releases_nvml():
    nvml = FakeNvml("volta", gpus=1)
    with pytest.raises(NvmlUnavailable, match="does not know cuda:3"):
        NvmlDevice.open("cuda:3", nvml=nvml)
    assert nvml.inits == 0


def test_the_adapter_speaks_in_moprunes_units():
    nvml = FakeNvml("volta", watts=87.5)
    with NvmlDevice.open("cuda:1", nvml=nvml) as gpu:
        assert gpu.name() == "NVIDIA A100-SXM4-40GB"  # bytes from old pynvml versions are decoded
        assert gpu.driver_version() == "550.54.15"
        assert gpu.sm_clock_mhz() == 1410
        assert gpu.power_w() == pytest.approx(87.5)  # NVML reports mW
        assert isinstance(gpu.total_energy_mj(), int)
    assert nvml.inits == 0


def test_cuda_visible_devices_maps_torchs_index_to_nvmls(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no PCI ids from torch: use the mapping
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    nvml = FakeNvml("volta")
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        assert gpu.label == "NVML index 1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa-0001")
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        assert gpu.label == "UUID GPU-aaaa-0001"
    assert nvml.lookups == [("index", 1), ("uuid", "GPU-aaaa-0001")]


def test_a_cpu_device_is_not_an_nvml_device():
    with pytest.raises(NvmlUnavailable, match="GPUs only"):
        NvmlDevice.open("cpu", nvml=FakeNvml("volta"))


@pytest.mark.gpu
def test_the_real_gpu_is_found_by_pci_bus_id_and_named_like_torch_names_it():
    with NvmlDevice.open("cuda:0") as gpu:
        assert gpu.label.startswith("PCI ")
        assert gpu.name() == torch.cuda.get_device_name(0)
        assert gpu.power_w() > 0


def test_what_holds_the_clocks_back_is_read_by_name_with_temperature_limit_and_mig():
    nvml = FakeNvml("volta")
    nvml.clock_mask = 0x4 | 0x40  # power cap, hardware thermal
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        assert gpu.clock_reasons() == ["power cap", "hardware thermal"]
        assert gpu.temperature_c() == 61 and gpu.power_limit_w() == 400.0 and gpu.mig_enabled() is False
        assert gpu.compute_processes() == 1
        nvml.processes = 3
        assert gpu.compute_processes() == 3
    with NvmlDevice.open("cuda:0", nvml=FakeNvml("pascal")) as old:
        assert old.mig_enabled() is None, "not reported: left out, not guessed"


def test_power_is_the_instant_field_where_the_driver_has_it():
    class Field:
        nvmlReturn = 0

        class value:  # noqa: N801 (ctypes union stand-in)
            uiVal = 123_000

    nvml = FakeNvml("volta", watts=60.0)
    nvml.NVML_FI_DEV_POWER_INSTANT = 186
    nvml.nvmlDeviceGetFieldValues = lambda handle, ids: [Field()]
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        assert gpu.power_w() == 123.0
    with NvmlDevice.open("cuda:0", nvml=FakeNvml("volta", watts=60.0)) as gpu:
        assert gpu.power_w() == pytest.approx(60.0, abs=0.01), "else the usage (an average on Ampere+)"
