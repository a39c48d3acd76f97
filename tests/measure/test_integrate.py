"""The trapezoid integrator on exact synthetic power traces, against the analytic energy."""

from __future__ import annotations

import random

import pytest

from moprune.measure.integrate import power_at, trapezoid_energy_mj, window_energy_mj


def test_constant_power_is_power_times_time():
    times = [0.0, 0.5, 1.0, 2.0]
    assert trapezoid_energy_mj(times, [80.0] * 4) == pytest.approx(80.0 * 2.0 * 1e3)  # 80 W for 2 s = 160 J


def test_a_step_sampled_on_both_sides_of_one_instant_is_exact():
    # 50 W for 1.5 s, then 250 W for 0.5 s: the sampler saw both sides of the step at t = 1.5
    times = [0.0, 0.7, 1.5, 1.5, 1.8, 2.0]
    power = [50.0, 50.0, 50.0, 250.0, 250.0, 250.0]
    assert trapezoid_energy_mj(times, power) == pytest.approx((50 * 1.5 + 250 * 0.5) * 1e3)


def test_a_step_between_samples_is_off_by_at_most_half_the_step_times_the_gap():
    times = [0.0, 1.0, 1.1, 2.0]  # the step happens at 1.04, between the samples at 1.0 and 1.1
    power = [50.0, 50.0, 250.0, 250.0]
    exact = (50 * 1.04 + 250 * 0.96) * 1e3
    assert abs(trapezoid_energy_mj(times, power) - exact) <= 0.5 * 200 * 0.1 * 1e3


def test_a_ramp_is_exact_at_any_sample_times():
    def watts(t):
        return 20.0 + 30.0 * t  # W

    rng = random.Random(3)
    times = sorted({0.0, 4.0, *(rng.uniform(0, 4) for _ in range(37))})
    exact_j = 20.0 * 4 + 15.0 * 16  # integral of 20 + 30 t over [0, 4]
    assert trapezoid_energy_mj(times, [watts(t) for t in times]) == pytest.approx(exact_j * 1e3)


def test_irregular_sample_times_weigh_each_interval_by_its_width():
    # a sampler that woke at 0, 10, 35, 36, 90, 100 ms on a piecewise-linear trace with kinks at sample times
    times = [0.000, 0.010, 0.035, 0.036, 0.090, 0.100]
    power = [100.0, 100.0, 300.0, 300.0, 120.0, 120.0]
    exact_j = (100 * 0.010 + 200 * 0.025 + 300 * 0.001 + 210 * 0.054 + 120 * 0.010)
    assert trapezoid_energy_mj(times, power) == pytest.approx(exact_j * 1e3)
    # the naive mean power times duration is wrong for irregular samples: the integrator must not be it
    naive_j = sum(power) / len(power) * 0.100
    assert abs(naive_j - exact_j) > 0.01 * exact_j


def test_window_edges_are_interpolated_inside_the_trace():
    times = [0.0, 1.0, 2.0, 3.0]
    power = [0.0, 10.0, 20.0, 30.0]  # 10 W/s ramp
    # energy of the ramp between t = 0.5 and 2.5: integral of 10 t = 5 (2.5^2 - 0.5^2) = 30 J
    assert window_energy_mj(times, power, 0.5, 2.5) == pytest.approx(30.0 * 1e3)
    assert power_at(times, power, 1.25) == pytest.approx(12.5)


@pytest.mark.parametrize("times, power, message", [
    ([0.0, 1.0], [1.0], "sample times"),
    ([0.0], [1.0], "at least 2"),
    ([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], "must not decrease"),
])
def test_bad_traces_are_refused(times, power, message):
    with pytest.raises(ValueError, match=message):
        trapezoid_energy_mj(times, power)


def test_a_window_outside_the_trace_is_refused():
    with pytest.raises(ValueError, match="outside"):
        window_energy_mj([0.0, 1.0], [5.0, 5.0], 0.5, 1.5)
