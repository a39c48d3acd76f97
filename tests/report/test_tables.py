"""The Pareto table and JSON, and the note under them that says where and how their numbers were measured."""

from __future__ import annotations

import pytest

from helpers import copy_with_best
from moprune.pareto import pareto_frame
from moprune.report import format_table, measured_note, to_records


def test_the_measured_note_names_device_timer_and_energy(tiny_study):
    _, study = tiny_study
    text = "\n".join(measured_note(study))
    assert f"measured on cpu ({study.user_attrs['environment']['device_name']}): {len(study.trials)} trials" in text
    assert "latency: perf_counter" in text and "paired rounds against dense" in text
    assert "energy: not measured; no meter here" in text


def test_pareto_table_and_json_show_the_spread_of_reevaluated_accuracy(tiny_study):
    copy, best = copy_with_best(tiny_study[1])
    copy.set_user_attr(f"reeval:{best.number}", [best.values[0], best.values[0] - 0.02])
    frame = pareto_frame(copy, include_all=True)
    objectives = ["accuracy", "latency_ms", "macs"]
    line = next(l for l in format_table(frame, objectives).splitlines() if l.split()[0] == str(best.number))
    mean = (3 * best.values[0] - 0.02) / 3
    assert f"{mean:.4f} ± 0.0115 (n=3)" in line  # sd of (a, a, a - 0.02) = 0.02 / sqrt(3)
    record = next(r for r in to_records(frame, objectives) if r["number"] == best.number)
    assert record["accuracy_n"] == 3 and record["accuracy_first"] == best.values[0]
    assert record["values"]["accuracy"] == pytest.approx(mean)


def test_a_plan_summary_counts_the_dropped_blocks_apart_from_the_ratios():
    from moprune.report import plan_summary

    assert plan_summary({"a": 0.5, "b": 0.5, "drop:layer1.1": 1.0}) == "uniform 0.50; 1 block dropped"
    assert plan_summary({"a": 0.0, "drop:x": 1.0, "drop:y": 1.0}) == "2 blocks dropped"
    assert plan_summary({"a": 0.2, "b": 0.4, "drop:x": 0.0}) == "mean 0.30 [0.20-0.40] over 2 groups"
    assert plan_summary({"a": 0.0}) == "dense"


def test_a_plan_rejected_before_its_fine_tune_shows_no_accuracy_and_why():
    """Its stored value is the accuracy before any fine-tune (0.10 on a heavily pruned plan): beside fine-tuned
    accuracies it would read as a plan that fine-tuned to chance."""
    import optuna
    from optuna.distributions import FloatDistribution

    from moprune.record import REJECTED_PREFIX, TrialRecord

    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["accuracy", "latency_ms"])
    for value, latency, record, over in (
            (0.95, 5.0, TrialRecord(plan={"a": 0.5}, macs=2e6, speedup=2.0), -0.1),
            (0.10, 2.0, TrialRecord(plan={"a": 0.9}, macs=9e6, speedup=5.0, rejected=True,
                                    fail_reason=REJECTED_PREFIX + "macs"), 0.5)):
        study.add_trial(optuna.trial.create_trial(
            values=[value, latency], params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
            user_attrs=record.attrs(), system_attrs={"constraints": [over]}))
    table = format_table(pareto_frame(study, include_all=True), ["accuracy", "latency_ms"]).splitlines()
    fine_tuned, rejected = (next(l for l in table if l.split()[0] == str(n)) for n in (0, 1))
    assert "0.9500" in fine_tuned and " yes " in fine_tuned + " "
    assert "0.1000" not in rejected and "not fine-tuned" in rejected and "no: over macs" in rejected
