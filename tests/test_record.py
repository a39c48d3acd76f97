"""The one trial record: what is written to a trial is read back field for field; what a trial's state means for the
study; the study's own attrs; and the contract that no other module of moprune names a user attr."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from torch import nn

import moprune
from moprune.measure import MeasureSettings, measure_architecture
from moprune.record import (INTERRUPTED, MEASURE_FIELDS, TRACEBACK_CHARS, WORKER_DIED, Baseline, TrialRecord,
                            baseline_of, bounded_traceback, counts_as_result, environment_of, fail_reason,
                            reevaluations, retry_of, sensitivity_of, spec_of, write_baseline, write_reevaluation,
                            write_study)

def value_for(field: dataclasses.Field, i: int):
    """A JSON-able value of the field's type, unlike every other field's (so a field read back under another name
    would show); a field of a type not known here fails the test rather than go unchecked."""
    kind = str(field.type).replace(" ", "").removesuffix("|None")
    values = {"str": f"{field.name}-{i}", "int": 1000 + i, "float": i + 0.25, "bool": i % 2 == 0,
              "dict[str,float]": {f"{field.name}.a": i + 0.5, "conv1": 0.25}, "dict[str,int]": {field.name: i, "fc": 10},
              "list[float]": [i + 0.1, i + 0.9],
              "dict[str,Any]": {"clock_reasons": ["power cap"], "temperature_c": 60 + i, "mig": False}}
    assert kind in values, f"TrialRecord.{field.name}: no test value for type {field.type}"
    return values[kind]


EVERY_FIELD = {f.name: value_for(f, i) for i, f in enumerate(dataclasses.fields(TrialRecord))}


def stored(record: TrialRecord, **extra_attrs) -> optuna.trial.FrozenTrial:
    """``record`` written to a real running trial of an in-memory study (plus other attrs), then the trial stored."""
    study = optuna.create_study()
    trial = study.ask()
    record.write(trial)
    for key, value in extra_attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 1.0)
    return study.trials[0]


def test_every_field_written_to_a_trial_reads_back_the_same():
    assert {"plan", "latency_other_cpu_max", "timings_s", "fail_traceback"} <= set(EVERY_FIELD)
    record = TrialRecord(**EVERY_FIELD)
    frozen = stored(record)
    assert frozen.user_attrs == EVERY_FIELD, "each field is stored as a user attr of its own name"
    assert TrialRecord.of(frozen) == record


def test_unrecorded_fields_are_not_written_and_read_back_as_none():
    frozen = stored(TrialRecord(plan={"conv1": 0.5}, macs=10))
    assert frozen.user_attrs == {"plan": {"conv1": 0.5}, "macs": 10}
    back = TrialRecord.of(frozen)
    assert back == TrialRecord(plan={"conv1": 0.5}, macs=10) and back.latency_ms is None


def test_attrs_this_version_does_not_know_are_ignored():
    frozen = stored(TrialRecord(macs=10, finetune_seed=7), from_a_newer_moprune={"x": 1}, note="by hand")
    assert TrialRecord.of(frozen) == TrialRecord(macs=10, finetune_seed=7)


def test_fine_tuned_means_a_seed_was_recorded_and_the_trial_not_rejected():
    assert TrialRecord(finetune_seed=3).fine_tuned
    assert not TrialRecord().fine_tuned and not TrialRecord(finetune_seed=3, rejected=True).fine_tuned


def _net(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10)).eval()


def test_a_real_measurement_records_how_its_rounds_went():
    settings = MeasureSettings(batch_size=4, warmup=1, repeats=4, max_other_cpu=1.0, ci_half_width=None)
    m = measure_architecture(_net(8), _net(16), torch.randn(4, 3, 12, 12), settings, device=torch.device("cpu"),
                             want_energy=False)
    info = m.latency.info
    record = TrialRecord.measured(m)
    assert record.latency_ms == m.latency.candidate.median_ms == record.latency_ms_rounds, "no baseline given"
    assert record.speedup == m.latency.speedup
    assert record.latency_rounds == info.rounds >= settings.repeats
    assert record.latency_rounds_taken == info.taken >= info.rounds
    assert record.latency_rounds_clean == info.clean <= info.taken
    if info.disturbance_check is not None:  # Linux: rounds checked against /proc/stat
        assert record.latency_other_cpu == info.other_cpu and record.latency_other_cpu_max == info.other_cpu_max
        assert 0.0 <= record.latency_other_cpu <= record.latency_other_cpu_max <= 1.0
        assert record.latency_noisy is False, "max_other_cpu 1.0: every round is clean"
    assert record.device == "cpu" and record.measure_cached is False and record.latency_screen is False
    assert record.energy_mj is None and record.driver is None, "no energy asked; no GPU"
    how = record.how_measured()
    assert set(how) <= set(MEASURE_FIELDS)
    assert {"latency_timer", "torch_threads", "latency_rounds", "latency_rounds_taken", "latency_rounds_clean",
            "dense_latency_ms"} <= set(how)
    assert ("latency_other_cpu_max" in how) == (info.disturbance_check is not None)
    assert TrialRecord.of(stored(record)) == record, "a measurement survives the storage too"
    assert record.how_measured()["latency_runtime"] == "eager float32"


def test_latency_is_the_studys_dense_latency_over_the_paired_speedup():
    """A plan's own median drifts with the machine; the ratio in alternating rounds does not."""
    settings = MeasureSettings(batch_size=4, warmup=1, repeats=4, max_other_cpu=1.0, ci_half_width=None)
    m = measure_architecture(_net(8), _net(16), torch.randn(4, 3, 12, 12), settings, device=torch.device("cpu"),
                             want_energy=False)
    record = TrialRecord.measured(m, baseline_latency_ms=5.0)
    assert record.latency_ms == pytest.approx(5.0 / m.latency.speedup)
    assert record.latency_ms_rounds == m.latency.candidate.median_ms, "its own median is kept beside it"
    scale = record.latency_ms / m.latency.candidate.median_ms
    assert record.latency_ms_p10 == pytest.approx(m.latency.candidate.p10_ms * scale)
    assert record.latency_ms_p90 == pytest.approx(m.latency.candidate.p90_ms * scale)
    alone = measure_architecture(_net(8), None, torch.randn(4, 3, 12, 12), settings, device=torch.device("cpu"),
                                 want_energy=False)
    assert TrialRecord.measured(alone, baseline_latency_ms=5.0).latency_ms == alone.latency.candidate.median_ms, \
        "timed alone there is no ratio to correct by"


# --- what a finished trial means -------------------------------------------------------------------------------------

@pytest.mark.parametrize("state, attrs, reason, counts", [
    (TrialState.COMPLETE, {}, None, True),
    (TrialState.COMPLETE, {"fail_reason": "rejected before fine-tune: over budget on macs", "rejected": True},
     "rejected before fine-tune: over budget on macs", True),
    (TrialState.PRUNED, {}, None, True),
    (TrialState.FAIL, {"fail_reason": "non-finite loss at step 3"}, "non-finite loss at step 3", True),
    (TrialState.FAIL, {"fail_reason": INTERRUPTED}, INTERRUPTED, False),
    (TrialState.FAIL, {}, WORKER_DIED, False),  # failed by the heartbeat check: the worker could not say why
    (TrialState.FAIL, {"fail_reason": ""}, WORKER_DIED, False),
    (TrialState.RUNNING, {}, None, False),
    (TrialState.WAITING, {}, None, False),
], ids=["complete", "rejected", "pruned", "failed-on-its-own", "interrupted", "worker-died", "empty-reason",
        "running", "waiting"])
def test_fail_reason_and_what_counts_toward_n_trials(state, attrs, reason, counts):
    values = {"values": [0.9]} if state == TrialState.COMPLETE else {}
    trial = create_trial(state=state, user_attrs=attrs, **values)
    assert fail_reason(trial) == reason
    assert counts_as_result(trial) is counts


def test_a_rerun_names_the_trial_it_reruns_optunas_retry_first():
    assert retry_of(create_trial(values=[1.0])) is None
    assert retry_of(create_trial(values=[1.0], user_attrs=TrialRecord(retry_of=4).attrs())) == 4
    # Optuna copies the dead trial's user attrs (an older retry_of among them) into its re-run: its own attr wins
    both = create_trial(values=[1.0], user_attrs={"retry_of": 1}, system_attrs={"failed_trial": 7})
    assert retry_of(both) == 7


def test_a_traceback_keeps_its_end_within_the_bound():
    short = "Traceback (most recent call last):\n  ...\nValueError: x"
    assert bounded_traceback(short) == short
    long = "Traceback (most recent call last):\n" + "".join(f"  frame {i}\n" for i in range(2000)) + "ValueError: x"
    kept = bounded_traceback(long)
    assert kept.startswith("...\n") and kept.endswith("ValueError: x")
    assert len(kept) == TRACEBACK_CHARS + len("...\n") and long.endswith(kept.removeprefix("...\n"))


# --- the study's own attrs -------------------------------------------------------------------------------------------

def test_study_attrs_read_back_through_their_helpers():
    study = optuna.create_study()
    assert baseline_of(study) is None and spec_of(study) is None and environment_of(study) == {}
    assert sensitivity_of(study) is None and reevaluations(study) == {}
    spec = {"name": "x"}  # any JSON mapping stands for the resolved spec here
    write_study(study, spec=spec, environment={"torch": torch.__version__}, sensitivity=[{"unit": "conv1"}])
    assert baseline_of(study) is None, "written last: a study without it is still being created"
    baseline = Baseline(accuracy=0.9, latency_ms=10.0, latency_ms_p10=9.0, latency_ms_p90=11.0, macs=100, params=10,
                        source="cache", sha256="0" * 64)
    write_baseline(study, baseline)
    write_reevaluation(study, 3, [0.5, 0.25])
    write_reevaluation(study, 12, [0.75])
    assert baseline_of(study) == baseline and baseline.value("latency_ms") == 10.0 and baseline.value("energy_mj") is None
    assert spec_of(study) == {"name": "x"} and environment_of(study) == {"torch": torch.__version__}
    assert sensitivity_of(study) == [{"unit": "conv1"}]
    assert reevaluations(study) == {3: [0.5, 0.25], 12: [0.75]}


def test_a_baseline_from_a_newer_version_drops_what_it_does_not_know():
    study = optuna.create_study()
    study.set_user_attr("baseline", {"accuracy": 0.9, "latency_ms": 1.0, "latency_ms_p10": 0.9,
                                     "latency_ms_p90": 1.1, "macs": 5, "params": 2, "source": "checkpoint",
                                     "sha256": "f" * 64, "measured_by": "a future field"})
    assert baseline_of(study).macs == 5


# --- the contract: record.py is the only module that names an attr ---------------------------------------------------

def attr_names_outside_the_record(source: str) -> list[str]:
    """Where ``source`` writes a user attr, or reads one by a literal name (``.user_attrs["x"]``, ``.get("x")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "set_user_attr":
                found.append(f"line {node.lineno}: set_user_attr")
            elif (node.func.attr == "get" and isinstance(node.func.value, ast.Attribute)
                  and node.func.value.attr == "user_attrs" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.append(f"line {node.lineno}: user_attrs.get({node.args[0].value!r})")
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "user_attrs" and isinstance(node.slice, ast.Constant)
              and isinstance(node.slice.value, str)):
            found.append(f"line {node.lineno}: user_attrs[{node.slice.value!r}]")
    return found


def test_the_contract_check_finds_each_way_of_naming_an_attr():
    source = ('trial.set_user_attr("plan", p)\nx = t.user_attrs["plan"]\ny = t.user_attrs.get("macs", 0)\n'
              'ok = dict(t.user_attrs)\nalso_ok = TrialRecord.of(t).plan\n')
    assert attr_names_outside_the_record(source) == [
        "line 1: set_user_attr", "line 2: user_attrs['plan']", "line 3: user_attrs.get('macs')"]


def test_no_module_but_record_names_a_user_attr():
    package = Path(moprune.__file__).parent
    sources = sorted(p for p in package.rglob("*.py") if p != package / "record.py")
    assert len(sources) > 30, "the package's modules were found"
    offenders = {str(p.relative_to(package)): found for p in sources
                 if (found := attr_names_outside_the_record(p.read_text()))}
    assert offenders == {}, "read and write trial and study attrs through moprune.record"
