"""RAPL through a temporary directory laid out as /sys/class/powercap: zones, permissions, wrap-around."""

from __future__ import annotations

import time

import pytest

from fake_hardware import FakePowercap
from moprune.measure.energy import NoEnergyMeter, open_energy_meter
from moprune.measure.rapl import RaplMeter, RaplUnavailable, counter_delta_uj, find_packages

MAX_UJ = 262_143_328_850


def test_only_package_zones_are_summed(tmp_path):
    FakePowercap(tmp_path)  # package-0, package-1, a dram sub-zone and a psys zone
    zones = find_packages(tmp_path)
    assert [z.name for z in zones] == ["package-0", "package-1"]
    assert all(z.max_energy_range_uj == MAX_UJ for z in zones)


def test_a_window_sums_the_packages(tmp_path):
    cap = FakePowercap(tmp_path, start_uj=1_000)
    meter = RaplMeter.open(tmp_path)
    meter.start()
    cap.write(0, 1_000 + 2_500_000)  # package-0 used 2.5 J
    cap.write(1, 1_000 + 500_000)  # package-1 used 0.5 J
    assert meter.stop() == pytest.approx(3_000.0)  # mJ


def test_the_counter_wrapping_around_is_one_more_lap_not_a_negative_energy(tmp_path):
    cap = FakePowercap(tmp_path, start_uj=MAX_UJ - 400)
    meter = RaplMeter.open(tmp_path)
    meter.start()
    cap.write(0, 600)  # passed max_energy_range_uj: 400 µJ to the top, then 600 more
    cap.write(1, MAX_UJ - 400)  # package-1 idle
    assert meter.stop() == pytest.approx(1.0)  # 1000 µJ = 1 mJ
    assert counter_delta_uj(10, 30, MAX_UJ) == 20


def test_a_wrapping_counter_under_a_running_power_reads_the_true_energy(tmp_path):
    # 2 J of range at 10 W a package wraps every 200 ms; windows of 120 ms (3 of 5 straddle a wrap over 600 ms).
    with FakePowercap(tmp_path, watts=20.0, max_energy_range_uj=2_000_000) as cap:
        meter = RaplMeter.open(cap.root)
        readings = []
        for _ in range(5):
            meter.start()
            time.sleep(0.12)
            readings.append(meter.stop() / meter.window_s)
    assert min(readings) > 0
    assert readings == pytest.approx([20.0 * 1e3] * 5, rel=0.01)


def test_no_powercap_directory_says_so(tmp_path):
    with pytest.raises(RaplUnavailable, match="does not exist"):
        find_packages(tmp_path / "absent")
    with pytest.raises(NoEnergyMeter, match="RAPL: .*does not exist"):
        open_energy_meter("cpu", powercap=tmp_path / "absent")


def test_no_package_zone_says_so(tmp_path):
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "name").write_text("psys\n")
    with pytest.raises(RaplUnavailable, match="no intel-rapl:N package zone"):
        find_packages(tmp_path)


def test_an_unreadable_counter_names_the_file_and_the_fix(tmp_path, monkeypatch):
    FakePowercap(tmp_path)
    # energy_uj is mode 0400 root since Linux 5.10; the permission check is the OS's (faked: tests may run as root)
    monkeypatch.setattr("moprune.measure.rapl.os.access", lambda path, mode: not str(path).endswith("energy_uj"))
    with pytest.raises(RaplUnavailable, match="intel-rapl:0/energy_uj is not readable .*root only since Linux 5.10"):
        find_packages(tmp_path)


def test_the_cpu_meter_is_rapl_where_powercap_is_readable(tmp_path):
    FakePowercap(tmp_path)
    assert open_energy_meter("cpu", powercap=tmp_path).method == "rapl"
