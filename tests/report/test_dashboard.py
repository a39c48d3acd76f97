"""The dashboard's data (what each figure shows) on the real tiny study, on a copy enriched with a sensitivity scan
and a re-evaluation, and on small hand-made studies for the edge cases; plus the written HTML and the CLI command."""

from __future__ import annotations

import re
import warnings

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from helpers import make_spec
from moprune.cli import main
from moprune.report.html import render_html, sections, write_dashboard
from moprune.report.figures import front_figure
from moprune.pareto import hypervolume, is_feasible, trials_frame
from moprune.record import Baseline, write_baseline
from moprune.report import plan_summary
from moprune.report.data import SENSITIVITY_COLUMNS, importance_target, report_data, sensitivity_frame


def test_front_is_optunas_best_trials_and_every_trial_has_its_style(tiny_study):
    spec, study = tiny_study
    d = report_data(study, spec)
    assert set(d.front["number"]) == {t.number for t in study.best_trials}
    assert len(d.trials) == len(study.trials) and sum(d.counts.values()) == len(study.trials)
    for t in study.trials:
        status = d.trials.set_index("number").at[t.number, "status"]
        if t.state != TrialState.COMPLETE:
            assert status == "failed"
        elif not is_feasible(t):
            assert status == "infeasible"
        else:
            assert status == ("front" if t in study.best_trials else "dominated")


def test_heat_map_rows_are_exactly_the_pareto_trials_in_front_order(tiny_study):
    spec, study = tiny_study
    d = report_data(study, spec)
    assert list(d.ratios.index) == list(d.front["number"]) == list(d.kept.index)
    accuracy = d.front["accuracy"].tolist()
    assert accuracy == sorted(accuracy, reverse=True)  # along the front: most accurate first
    for number in d.ratios.index:
        attrs = study.trials[number].user_attrs
        assert list(d.ratios.columns) == list(attrs["plan"])  # group roots, network order
        assert d.ratios.loc[number].to_dict() == pytest.approx(attrs["plan"])
        assert d.kept.loc[number].to_dict() == {g: attrs["channels"][g] for g in attrs["plan"]}
    dense = study.trials[0].user_attrs  # the dense seed trial gives the full channel counts for the hover
    assert d.dense_channels == {g: dense["channels"][g] for g in dense["plan"]}


def test_baseline_constraint_lines_and_hover(tiny_study):
    spec, study = tiny_study
    d = report_data(study, spec)
    base = study.user_attrs["baseline"]
    assert d.baseline_point == {"accuracy": base["accuracy"], "latency_ms": base["latency_ms"],
                                "macs": base["macs"]}
    assert d.constraint_lines == {"accuracy": pytest.approx(base["accuracy"] - spec.constraints.max_accuracy_drop)}
    for _, row in d.trials.iterrows():
        t = study.trials[row["number"]]
        assert f"trial {t.number}</b>" in row["hover"]
        assert f"plan: {plan_summary(t.user_attrs['plan'])}" in row["hover"]
        assert f"speedup: {t.user_attrs['speedup']:.2f}x" in row["hover"]


def check_front_figure(d) -> None:
    """Each status is one trace (its own style) holding exactly its trials; latency error bars are p10 to p90."""
    acc_lat = [tr for tr in front_figure(d).data if tr.xaxis == "x"]  # first pair: latency (x), accuracy (y)
    drawn = {tr.name: tr for tr in acc_lat}
    styles = set()
    for status, label in (("front", "feasible Pareto front"), ("dominated", "feasible, dominated"),
                          ("infeasible", "infeasible")):
        rows = d.trials[d.trials["status"] == status]
        if rows.empty:
            assert label not in drawn
            continue
        tr = drawn[label]
        assert list(tr.y) == rows["accuracy"].tolist() and list(tr.x) == rows["latency_ms"].tolist()
        assert list(tr.error_x.array) == pytest.approx((rows["latency_ms_p90"] - rows["latency_ms"]).tolist())
        assert list(tr.error_x.arrayminus) == pytest.approx((rows["latency_ms"] - rows["latency_ms_p10"]).tolist())
        styles.add((tr.marker.symbol, tr.marker.color))
    assert len(styles) == len(d.trials[d.trials["status"] != "failed"]["status"].unique())
    assert drawn["dense baseline"].marker.symbol == "star"
    assert list(drawn["dense baseline"].x) == [d.baseline_point["latency_ms"]]


def test_front_figure_styles_statuses_apart_with_latency_spreads(tiny_study):
    spec, study = tiny_study
    check_front_figure(report_data(study, spec))


def test_history_is_the_hypervolume_after_each_complete_trial(tiny_study):
    spec, study = tiny_study
    d = report_data(study, spec)
    assert d.history_kind == "hypervolume"
    assert list(d.history["number"]) == [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert d.history["hypervolume"].is_monotonic_increasing and (d.history["hypervolume"] >= 0).all()
    # the last point is the study's hypervolume now (it may be 0 in a tiny study: a noisy latency beyond 1.1 x dense)
    final = hypervolume(trials_frame(study), d.objectives, d.directions, study.user_attrs["baseline"],
                        spec.constraints.max_accuracy_drop)
    assert d.history["hypervolume"].iloc[-1] == pytest.approx(final)


def test_importances_flip_the_sign_of_maximised_objectives(tiny_study):
    spec, study = tiny_study
    d = report_data(study, spec)
    t = study.best_trials[0]
    assert importance_target("maximize", 0)(t) == -t.values[0]
    assert importance_target("minimize", 1)(t) == t.values[1]
    for i, (name, sign) in enumerate(zip(d.objectives, (-1, 1, 1))):
        if name in d.importance_notes:
            continue
        expected = optuna.importance.get_param_importances(study, target=lambda t, i=i, s=sign: s * t.values[i])
        assert d.importances[name] == pytest.approx(expected)


def _toy_study(values: list[tuple[float, float]], *, baseline: bool = True) -> optuna.Study:
    """accuracy (max) x latency_ms (min); accuracy must stay above 0.6; one failed trial at the end."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    if baseline:
        write_baseline(study, Baseline(accuracy=0.9, latency_ms=10.0, latency_ms_p10=9.0, latency_ms_p90=11.0,
                                       macs=100, params=10, source="test", sha256="0" * 64))
    dist = {"ratio/a": FloatDistribution(0, 1), "ratio/b": FloatDistribution(0, 1)}
    for i, (acc, lat) in enumerate(values):
        x, y = round(i / max(1, len(values) - 1), 3), round((i * 0.37) % 1, 3)
        study.add_trial(create_trial(
            values=[acc, lat], params={"ratio/a": x, "ratio/b": y}, distributions=dist,
            constraints={"accuracy_drop": 0.6 - acc, "latency_ms": 0.0},
            user_attrs={"plan": {"a": x, "b": y}, "channels": {"a": 10, "b": 20}, "latency_ms_p10": lat * 0.9,
                        "latency_ms_p90": lat * 1.1, "speedup": 10.0 / lat}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "out of memory"}))
    return study


def test_toy_study_infeasible_and_failed_trials_and_flipped_importances():
    rows = [(0.70 + 0.02 * i, 10.0 - 0.5 * i) for i in range(8)] + [(0.90, 6.0), (0.85, 3.0), (0.5, 1.0)]
    study = _toy_study(rows)
    d = report_data(study, make_spec(objectives=["accuracy", "latency_ms"]))
    assert d.counts == {"front": 2, "dominated": 8, "infeasible": 1, "failed": 1}
    assert set(d.front["number"]) == {t.number for t in study.best_trials} == {8, 9}
    assert list(d.ratios.index) == [8, 9]  # along the front: most accurate first
    check_front_figure(d)
    flipped = optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
    raw = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    assert d.importances["accuracy"] == pytest.approx(flipped)
    assert flipped != pytest.approx(raw)  # the sign matters here, so the check above is not vacuous


def test_too_few_trials_degrade_importances_to_a_note_and_no_baseline_to_best_values():
    study = _toy_study([(0.95, 5.0)], baseline=False)
    d = report_data(study, make_spec(objectives=["accuracy", "latency_ms"]))
    assert d.importances == {} and set(d.importance_notes) == {"accuracy", "latency_ms"}
    assert d.history_kind == "best values" and d.history.iloc[-1].to_dict() == {"number": 0, "accuracy": 0.95,
                                                                                  "latency_ms": 5.0}
    page = render_html(d)
    assert "needs at least 2 complete trials" in page and 'id="fig-importance"' not in page


def test_sensitivity_uses_exactly_the_scan_record_shape(enriched_study, tiny_study):
    spec, study = enriched_study
    d = report_data(study, spec)
    records = study.user_attrs["sensitivity"]
    assert list(d.sensitivity.columns) == list(SENSITIVITY_COLUMNS)
    assert d.sensitivity.to_dict(orient="records") == [{k: r[k] for k in SENSITIVITY_COLUMNS} for r in records]
    assert sensitivity_frame(None) is None and sensitivity_frame([{"unit": "x"}]) is None
    assert "sensitivity" in [s.id for s in sections(d)]
    assert report_data(tiny_study[1], tiny_study[0]).sensitivity is None  # no scan: no figure, no error


def test_reevaluated_accuracy_shows_its_spread(enriched_study):
    spec, study = enriched_study
    d = report_data(study, spec)
    spread = d.trials[d.trials["accuracy_std"].notna()]
    reevaluated = [int(k.removeprefix("reeval:")) for k in study.user_attrs if k.startswith("reeval:")]
    assert list(spread["number"]) == reevaluated, "the re-evaluated trial, and only it, shows a spread"
    row = spread.iloc[0]
    assert row["accuracy_n"] == 2 and f"± {row['accuracy_std']:.4f} (n=2)" in row["hover"]


def test_written_report_is_self_contained_with_table_and_setup(tiny_study, tmp_path):
    spec, study = tiny_study
    out = write_dashboard(study, spec, tmp_path / "deep" / "index.html")
    page = out.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", page), "no external scripts"
    assert not re.search(r"<link[^>]*href=[\"']?https?:", page)
    assert "Plotly" in page and len(page) > 3_000_000  # plotly.js embedded (about 4.9 MB)
    d = report_data(study, spec)
    for s in sections(d):
        if s.figure is not None:
            assert f'id="fig-{s.id}"' in page
    table = page[page.index("<table class=pareto>"):page.index("</table>")]
    assert len(re.findall(r"<tr", table)) == len(d.front) + 1
    env = study.user_attrs["environment"]
    assert env["torch"] in page and "resnet18 on digits" in page and "l2 importance" in page


def test_cli_writes_the_default_report_path(tiny_study, tmp_path, monkeypatch, capsys):
    spec, _ = tiny_study
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", str(path)]) == 0
    assert (tmp_path / "dashboards" / "tiny" / "index.html").stat().st_size > 3_000_000
    assert "dashboards/tiny/index.html" in capsys.readouterr().out


def test_dashboard_pick_marks_the_trial_export_would_take(tiny_study, tmp_path, capsys):
    from moprune.pareto import directions_of, objective_names, pick_trial
    from moprune.record import baseline_of

    spec, study = tiny_study
    rule = "weighted:accuracy=1,latency_ms=0.5"
    chosen = pick_trial(rule, trials_frame(study), objective_names(study), directions_of(study), baseline_of(study))
    d = report_data(study, spec, pick=rule)
    assert d.pick == chosen
    figure = front_figure(d)
    marked = [t for t in figure.data if t.name == f"pick (trial {chosen.number})"]
    assert marked and all(len(t.x) == 1 for t in marked)
    page = render_html(d)
    assert f"--pick {rule}: trial {chosen.number}" in page
    if chosen.number in set(d.front["number"]):
        assert f"<tr class=pick><td>{chosen.number}" in page
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert main(["dashboard", str(path), "--out", str(tmp_path / "r.html"), "--pick", "weighted:speed=1"]) == 2
    assert "'speed' cannot be weighted" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_group_labels_drop_the_prefix_every_group_shares_and_cnn_names_stay_whole():
    from moprune.report.figures import short_names

    vit = ["encoder.layers.encoder_layer_0.self_attention", "encoder.layers.encoder_layer_0.mlp",
           "encoder.layers.encoder_layer_1.mlp"]
    assert short_names(vit) == ["encoder_layer_0.self_attention", "encoder_layer_0.mlp", "encoder_layer_1.mlp"]
    assert short_names(["conv1", "layer1.0.conv1"]) == ["conv1", "layer1.0.conv1"]
    assert short_names(["features.1.conv.0", "features.1.conv.0"]) == ["0", "0"], "a name keeps its last part"
