"""The study loop on a real tiny study: seed trials, user attrs, constraints, resume, failures."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from helpers import FAST, SMALL_CNN, fast_spec, make_spec
from moprune.cli import main
from moprune.errors import SpecError
from moprune.pareto import is_feasible
from moprune.record import TRACEBACK_CHARS, TrialRecord, origin
from moprune.search import finished_count, open_study, run_study

QUIET = {"progress": False}


def test_tiny_study_finishes_its_trials_with_the_recorded_attrs(tiny_study):
    spec, study = tiny_study
    assert finished_count(study) == spec.search.n_trials
    assert study.metric_names == ["accuracy", "latency_ms", "macs"]
    assert {"spec", "baseline", "environment"} <= set(study.user_attrs)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        attrs = t.user_attrs
        for key in ("plan", "channels", "macs", "params", "latency_ms_p10", "latency_ms_p90", "speedup",
                    "device_name", "timings_s", "finetune_seed", "accuracy_pre_ft"):
            assert key in attrs, key
        assert set(attrs["timings_s"]) >= {"prune", "measure", "finetune", "evaluate"}
        assert attrs["latency_ms_p10"] <= t.values[1] <= attrs["latency_ms_p90"]
        assert t.values[2] == attrs["macs"]
        assert set(t.constraints) == {"accuracy_drop", "latency_ms", "energy_mj", "macs"}


def test_seed_trials_come_first_dense_then_uniform_then_global(tiny_study):
    spec, study = tiny_study
    trials = study.get_trials()
    records = [TrialRecord.of(t) for t in trials]
    assert [r.start for r in records[:3]] == ["dense", "uniform 0.80", "global 0.80"]
    assert all(r.start is None for r in records[3:]), "the sampler's trials are not starting plans"
    assert set(trials[0].params.values()) == {0.0} and set(records[0].plan.values()) == {0.0}
    assert set(records[1].plan.values()) == {0.8}  # uniform_count 2: both ends, dense deduplicated
    baseline = study.user_attrs["baseline"]
    assert trials[0].values[2] == baseline["macs"], "the dense seed trial is the unpruned model"
    assert trials[1].values[2] < baseline["macs"] / 10
    assert origin(trials[2]) == "start: global 0.80" and origin(trials[4]) == "sampler"


def test_a_global_starting_trial_prunes_what_torch_prunings_global_pruner_prunes(tiny_study):
    """The 'rank channels globally and sweep' baseline, pruned exactly, not its nearest point in the space."""
    from moprune.search.context import prepare_context

    spec, study = tiny_study
    trial = study.get_trials()[2]
    record = TrialRecord.of(trial)
    assert record.plan == record.fixed_plan and len(set(record.plan.values())) > 2, "an uneven allocation"
    ctx = prepare_context(spec)
    assert record.plan == ctx.global_plan(0.8)
    assert record.channels == ctx.prune(ctx.global_plan(0.8)).channels


def test_accuracy_constraint_uses_the_dense_baseline(tiny_study):
    spec, study = tiny_study
    dense_acc = study.user_attrs["baseline"]["accuracy"]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        drop = dense_acc - t.values[0]
        assert is_feasible(t) == (drop <= spec.constraints.max_accuracy_drop + 1e-12)


def test_pareto_json_has_the_documented_keys(tiny_study, capsys):
    spec, study = tiny_study
    path = spec_file(spec)
    assert main(["pareto", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {"number", "values", "plan", "macs", "params", "speedup"} <= set(rows[0])
    assert set(rows[0]["values"]) == {"accuracy", "latency_ms", "macs"}
    assert {r["number"] for r in rows} == {t.number for t in study.best_trials}


def test_pareto_table_says_where_and_how_its_numbers_were_measured(tiny_study, capsys):
    spec, study = tiny_study
    assert main(["pareto", str(spec_file(spec))]) == 0
    out = capsys.readouterr().out
    device = study.user_attrs["environment"]["device_name"]
    assert f"measured on cpu ({device})" in out and "latency: perf_counter" in out and "energy: not measured" in out
    assert out.index("measured on") > out.index("accuracy"), "a footer under the table"


def test_status_names_counts_baseline_and_best(tiny_study, capsys):
    spec, _ = tiny_study
    assert main(["status", str(spec_file(spec))]) == 0
    out = capsys.readouterr().out
    assert "6 finished of 6" in out and "dense baseline: accuracy" in out and "fastest feasible" in out


def spec_file(spec):
    """Write a spec back to YAML, as a user's file would be."""
    import yaml
    from pathlib import Path

    path = Path(f"{spec.name}.yaml")
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


@pytest.mark.slow
def test_resume_continues_to_n_trials_without_duplicates(session_cwd):
    spec = make_spec(name="resume", storage=f"sqlite:///{session_cwd / 'resume.db'}", model=SMALL_CNN,
                     search={"n_trials": 3})
    run_study(spec, **QUIET)
    study = run_study(spec, n_trials=5, **QUIET)
    numbers = [t.number for t in study.get_trials()]
    assert numbers == [0, 1, 2, 3, 4]
    assert finished_count(study) == 5
    assert finished_count(run_study(spec, n_trials=5, **QUIET)) == 5, "a finished study runs nothing more"


@pytest.mark.slow
def test_a_changed_spec_cannot_resume_the_study(session_cwd):
    url = f"sqlite:///{session_cwd / 'changed.db'}"
    spec = fast_spec("changed", n_trials=1).model_copy(update={"storage": url})
    run_study(spec, **QUIET)
    changed = spec.model_copy(update={"finetune": spec.finetune.model_copy(update={"steps": 7})})
    with pytest.raises(SpecError, match=r"study 'changed' already exists with a different finetune\.steps;"):
        run_study(changed, n_trials=2, **QUIET)
    assert len(optuna.load_study(study_name="changed", storage=url).trials) == 1, "no trial ran under the new spec"


@pytest.mark.slow
def test_a_failing_trial_records_why_and_the_study_goes_on(session_cwd):
    spec = make_spec(name="nan", storage=f"sqlite:///{session_cwd / 'nan.db'}", model=SMALL_CNN, search={"n_trials": 2},
                     finetune={"steps": 30, "lr": 1e12})
    study = run_study(spec, **QUIET)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert finished_count(study) == 2 and failed
    assert all("non-finite loss" in t.user_attrs["fail_reason"] for t in failed)
    for t in failed:  # and where: the end of the traceback, bounded so a storage row stays small
        tb = t.user_attrs["fail_traceback"]
        assert tb.rstrip().endswith(t.user_attrs["fail_reason"]) and "NonFiniteLoss" in tb.splitlines()[-1]
        assert "Traceback (most recent call last)" in tb or tb.startswith("...\n")
        assert len(tb) <= TRACEBACK_CHARS + len("...\n")


def test_open_study_without_a_database_says_run_first(session_cwd):
    with pytest.raises(SpecError, match="run `moprune run`"):
        open_study(make_spec(name="never", storage=f"sqlite:///{session_cwd / 'never.db'}"))
    assert not (session_cwd / "never.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])  # (random proposals depend on nothing but the seed)
def test_same_spec_and_seed_propose_the_same_plans(session_cwd, sampler):
    # 6 trials: past NSGA-II's first generation (population 4) and TPE's startup trials, where proposals depend on
    # the values of earlier trials; accuracy and MACs are deterministic on the CPU for a seed (latency is not).
    plans = []
    for i in range(2):
        spec = make_spec(name=f"repro-{sampler}", storage=f"sqlite:///{session_cwd / f'repro-{sampler}{i}.db'}",
                         model=SMALL_CNN,
                         objectives=["accuracy", "macs"], measure=FAST["measure"],
                         search={"n_trials": 6, "sampler": sampler, "seed_trials": ["dense"],
                                 **({"sampler_options": {"n_startup_trials": 4}} if sampler == "tpe" else {})},
                         finetune={"steps": 2})
        study = run_study(spec, **QUIET)
        plans.append([t.params for t in study.get_trials()])
    assert plans[0] == plans[1]
    assert len({json.dumps(p, sort_keys=True) for p in plans[0]}) >= 5, "the plans are not all one"


@pytest.mark.slow
def test_a_study_measured_in_onnx_runtime_times_both_models_there(session_cwd):
    pytest.importorskip("onnxruntime")
    spec = make_spec(name="ort", storage=f"sqlite:///{session_cwd / 'ort.db'}", measure={**FAST["measure"],
                     "runtime": "onnxruntime"}, search={"n_trials": 2, "seed_trials": ["dense", "uniform"]})
    study = run_study(spec, **QUIET)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2
    for t in done:  # the dense reference and the plan both ran in ONNX Runtime, exported before any timed pass
        record = TrialRecord.of(t)
        assert record.latency_runtime.startswith("onnxruntime") and "CPUExecutionProvider" in record.latency_runtime
        assert record.runtime_prepare_s > 0 and record.speedup > 0
    assert TrialRecord.of(done[1]).speedup > 1.2, "the uniform plan is faster than dense in ONNX Runtime too"


@pytest.mark.slow
def test_a_distilled_study_runs_end_to_end_and_says_so(session_cwd):
    from moprune.report.data import report_data

    spec = make_spec(name="distilled", storage=f"sqlite:///{session_cwd / 'distilled.db'}",
                     objectives=["accuracy", "macs"], measure=FAST["measure"],
                     search={"n_trials": 2, "seed_trials": ["dense", "uniform"]},
                     finetune={"steps": 4, "distill": {"alpha": 0.7, "temperature": 3.0}})
    study = run_study(spec, **QUIET)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2 and all(TrialRecord.of(t).fine_tuned for t in done)
    assert study.user_attrs["spec"]["finetune"]["distill"] == {"alpha": 0.7, "temperature": 3.0}
    methods = report_data(study, spec).setup["methods"]["fine-tune"]
    assert "distilled from the dense model (alpha 0.7, temperature 3.0)" in methods
    assert methods.endswith("then BatchNorm statistics re-estimated from 8 batches")


@pytest.mark.slow
def test_an_iteratively_pruned_study_runs_end_to_end_at_one_shots_widths(session_cwd):
    from moprune.report.data import report_data
    from moprune.search.context import prepare_context

    spec = make_spec(name="stepped", storage=f"sqlite:///{session_cwd / 'stepped.db'}",
                     objectives=["accuracy", "macs"], measure=FAST["measure"],
                     search={"n_trials": 2, "seed_trials": ["dense", "uniform"]},
                     prune={"schedule": {"steps": 3, "finetune_steps": 2}}, finetune={"steps": 4})
    study = run_study(spec, **QUIET)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2 and all(TrialRecord.of(t).fine_tuned for t in done)
    ctx = prepare_context(spec)
    for t in done:
        record = TrialRecord.of(t)
        assert record.channels == ctx.prune(record.plan).channels  # the widths that were measured
    assert "iteratively in 3 steps with 2 fine-tune steps between them" in \
        report_data(study, spec).setup["methods"]["pruning"]


@pytest.mark.slow
def test_a_study_on_a_sparsity_trained_dense_model_records_which_dense_model_it_used(session_cwd):
    from moprune.record import baseline_of
    from moprune.report.data import report_data
    from moprune.train import dense_weights_path, file_sha256

    slim = {"l1": 1e-4, "epochs": 1, "lr": 0.01, "batch_size": 128}
    spec = make_spec(name="slimmed", storage=f"sqlite:///{session_cwd / 'slimmed.db'}",
                     model={"sparsity_training": slim}, prune={"importance": "bn_scale"},
                     objectives=["accuracy", "macs"], measure=FAST["measure"],
                     search={"n_trials": 2, "seed_trials": ["dense", "uniform"]})
    study = run_study(spec, **QUIET)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    baseline = baseline_of(study)
    base = make_spec(name="slimmed")  # the same recipe without the sparsity stage: the weights it started from
    assert baseline.sparsity_trained_from == file_sha256(dense_weights_path(base, 10))
    assert baseline.sha256 == file_sha256(dense_weights_path(spec, 10)) != baseline.sparsity_trained_from
    setup = report_data(study, spec).setup
    assert "sparsity-trained dense model (L1 0.0001 on BatchNorm scales, 1 epoch)" in setup["methods"]["model"]
    assert setup["dense baseline"]["sparsity-trained from"] == baseline.sparsity_trained_from[:12]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["unstructured", "nm"])
def test_a_sparse_study_runs_end_to_end_and_says_zeroed_weights_run_at_dense_speed(session_cwd, method, capsys):
    from moprune.report.data import report_data

    spec = make_spec(name=f"sparse-{method}", storage=f"sqlite:///{session_cwd / f'sparse-{method}.db'}",
                     prune={"method": method, "importance": "l1"}, objectives=["accuracy", "latency_ms", "params"],
                     measure=FAST["measure"], search={"n_trials": 2, "seed_trials": ["dense", "uniform"]})
    study = run_study(spec, **QUIET)
    done = [TrialRecord.of(t) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(done) == 2 and all(r.fine_tuned for r in done)
    dense = study.user_attrs["baseline"]
    sparse = [r for r in done if any(r.plan.values())]
    assert sparse and all(r.macs == dense["macs"] for r in done), "a dense kernel multiplies the zeros too"
    assert all(r.params < 0.75 * dense["params"] for r in sparse), "params count the non-zeros"
    assert all(r.channels == done[0].channels for r in done), "no channel is removed"
    assert main(["pareto", str(spec_file(spec)), "--all"]) == 0
    out = capsys.readouterr().out
    assert f"prune.method {method}" in out and "dense kernels run them at the dense speed" in out
    assert f"measured speedups of the {len(sparse)} sparse trials: median" in out
    assert "dense speed" in report_data(study, spec).sparsity_note
    # the export holds the zeros as plain weights (no masks or hooks to carry)
    import torch

    trial = max(sparse, key=lambda r: r.params)  # any sparse trial
    number = next(t.number for t in study.get_trials() if TrialRecord.of(t).plan == trial.plan)
    out = session_cwd / f"export-{method}"
    assert main(["export", str(spec_file(spec)), "--pick", f"trial:{number}", "--out", str(out)]) == 0
    state = torch.load(out / "weights.pt", weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    convs = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 4 and v.shape[1] > 3]
    zeros = sum(int((v == 0).sum()) for v in convs) / sum(v.numel() for v in convs)
    assert zeros > 0.3, f"the exported convolutions keep their zeros ({zeros:.0%})"
