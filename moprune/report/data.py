"""What the dashboard shows, computed from the study as plain data (DataFrames and dicts); ``dashboard.py`` draws it.

Everything a figure needs is decided here (which trials are on the front and in which order, the hover text, the
constraint lines, the importances with the sign of maximised objectives flipped), so tests check this object and
the drawing stays free of logic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from ..pareto import (Pick, directions_of, hypervolume_history, knee_point, objective_names, pick_trial,
                      sort_by_first, trials_frame)
from ..pruning.depth import DROP_KEY
from ..record import baseline_of, environment_of, sensitivity_of
from ..spec import StudySpec
from .tables import format_value, plan_summary, sparsity_note

#: How each trial is styled: on the feasible front, feasible but dominated, infeasible, or failed (no values).
STATUSES = ("front", "dominated", "infeasible", "failed")
SENSITIVITY_COLUMNS = ("unit", "ratio", "accuracy_drop", "latency_gain_ms")
MAX_PARALLEL_GROUPS = 16  # more axes than this are unreadable; the groups whose ratios vary most are kept
TRIAL_COLUMNS = ("number", "state", "status", "feasible", "on_front", "latency_ms_p10", "latency_ms_p90",
                 "accuracy_std", "accuracy_n", "speedup", "speedup_p10", "speedup_p90", "macs", "params",
                 "plan_summary", "origin", "hover")


@dataclass(frozen=True)
class ReportData:
    study_name: str
    objectives: list[str]
    directions: list[str]  # "maximize" | "minimize", in objective order
    trials: pd.DataFrame  # every trial: TRIAL_COLUMNS plus one column per objective
    front: pd.DataFrame  # the feasible Pareto set, rows ordered along the front (as ``moprune pareto`` lists them)
    knee: int | None  # trial number of the front's knee point
    baseline: dict[str, Any]  # the dense model's measured values (study user attr ``baseline``)
    baseline_point: dict[str, float]  # objective -> dense value, for the objectives the baseline has
    constraint_lines: dict[str, float]  # objective -> the limit a constraint puts on it, in the objective's units
    history: pd.DataFrame  # number + "hypervolume", or number + one running-best column per objective
    history_kind: str  # "hypervolume" | "best values"
    ratios: pd.DataFrame  # index: front trial numbers in front order; columns: group roots; values: pruning ratio
    kept: pd.DataFrame  # same shape: kept out-channels of each group's root layer
    dense_channels: dict[str, int]  # group root -> out-channels of the dense model, where known
    parallel: pd.DataFrame  # complete trials: number, status, the chosen group ratios, the objectives
    parallel_note: str
    importances: dict[str, dict[str, float]]  # objective -> parameter -> importance, largest first
    importance_notes: dict[str, str]  # objective -> why its importances are missing
    setup: dict[str, dict[str, str]]  # section ("device", "methods", "environment", "baseline") -> label -> text
    sensitivity: pd.DataFrame | None  # SENSITIVITY_COLUMNS, when the study has a scan
    counts: dict[str, int] = field(default_factory=dict)  # trials per status
    screen: pd.DataFrame | None = None  # moprune.report.screen.SCREEN_COLUMNS, when the study screens
    screen_cost: str = "latency_ms"
    screen_probe: bool = False  # search.screen.probe: promotion tested the proxy floor
    pick: Pick | None = None  # the trial `dashboard --pick RULE` chose (e.g. a weighted pick), marked in the report
    pick_rule: str | None = None
    sparsity_note: str | None = None  # unstructured / N:M: zeroed weights run at dense speed (with what was measured)


def report_data(study: optuna.Study, spec: StudySpec, screened: optuna.Study | None = None,
                pick: str | None = None) -> ReportData:
    """Compute everything the report shows from a loaded study, its spec and its screen study (if any).

    ``pick`` is an export pick rule (``weighted:accuracy=1,latency_ms=0.5``, ``knee``, ...): the trial it chooses is
    marked, so the user sees where the model they would export sits; a rule that matches nothing raises SpecError.
    """
    from .screen import screen_frame

    objectives = objective_names(study)
    directions = directions_of(study)
    found = baseline_of(study)
    baseline = found.as_dict() if found is not None else {}
    frame = trials_frame(study)
    trials = _trials(frame, objectives)
    front = sort_by_first(frame, objectives, directions)
    front = trials.set_index("number").loc[front["number"].tolist()].reset_index()
    max_drop = spec.constraints.max_accuracy_drop
    ratios, kept, dense = _group_tables(front["number"].tolist(), frame)
    parallel, note = _parallel(trials, frame, objectives)
    importances, notes = parameter_importances(study, objectives, directions)
    history, kind = _history(trials, objectives, directions, baseline, max_drop)
    picked = pick_trial(pick, frame, objectives, directions, found) if pick else None
    return ReportData(
        study_name=study.study_name, objectives=objectives, directions=directions, trials=trials, front=front,
        knee=knee_point(front, objectives, directions) if not front.empty else None,
        baseline=baseline, baseline_point={o: float(baseline[o]) for o in objectives if baseline.get(o) is not None},
        constraint_lines=constraint_lines(spec, objectives, baseline), history=history, history_kind=kind,
        ratios=ratios, kept=kept, dense_channels=dense, parallel=parallel, parallel_note=note,
        importances=importances, importance_notes=notes, setup=_setup(study, spec, baseline),
        sensitivity=sensitivity_frame(sensitivity_of(study)),
        counts={s: int((trials["status"] == s).sum()) for s in STATUSES}, pick=picked, pick_rule=pick,
        sparsity_note=sparsity_note(study),
        **(dict(zip(("screen", "screen_cost"), screen_frame(screened, study))) if screened is not None else {}),
        screen_probe=spec.search.screen.probe,
    )


def _status(row: pd.Series, objectives: list[str]) -> str:
    if row["state"] != "COMPLETE" or any(pd.isna(row[o]) for o in objectives):
        return "failed"
    if not row["feasible"]:
        return "infeasible"
    return "front" if row["on_front"] else "dominated"


def _trials(frame: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    out = frame.copy()
    out["notes"] = ""
    for col in TRIAL_COLUMNS:
        if col not in out.columns:
            out[col] = None
    for i, row in out.iterrows():
        notes = []
        if row["latency_noisy"] is True:
            notes.append("latency noisy (no clean timing rounds)")
        if "energy_mj" not in objectives and pd.notna(row["energy_mj"]):
            notes.append(f"energy: {row['energy_mj']:.1f} mJ ({row['energy_method'] or '?'})")
        out.at[i, "notes"] = "; ".join(notes)
    out["status"] = [_status(r, objectives) for _, r in out.iterrows()]
    out["plan_summary"] = out["plan"].map(lambda p: plan_summary(p or {}))
    out["hover"] = [hover_text(r, objectives) for _, r in out.iterrows()]
    return out[[*TRIAL_COLUMNS, *[o for o in objectives if o not in TRIAL_COLUMNS]]].reset_index(drop=True)


def hover_text(row: pd.Series, objectives: list[str]) -> str:
    """``trial 12 (front)``, each objective with its spread, speedup, plan summary: one trial at a glance."""
    lines = [f"<b>trial {int(row['number'])}</b> ({row['status']})"]
    for name in objectives:
        text = f"{name}: {format_value(name, row[name])}"
        if name == "latency_ms" and pd.notna(row.get("latency_ms_p10")):
            text += f" [p10 {row['latency_ms_p10']:.2f}, p90 {row['latency_ms_p90']:.2f}]"
        if name == "accuracy" and pd.notna(row.get("accuracy_std")):
            text += f" ± {row['accuracy_std']:.4f} (n={int(row['accuracy_n'])})"
        lines.append(text)
    if pd.notna(row.get("speedup")):
        lines.append(f"speedup: {row['speedup']:.2f}x [p10 {row['speedup_p10']:.2f}, p90 {row['speedup_p90']:.2f}]"
                     if pd.notna(row.get("speedup_p10")) else f"speedup: {row['speedup']:.2f}x")
    lines.append(f"plan: {row['plan_summary']}")
    if row.get("notes"):
        lines.append(str(row["notes"]))
    return "<br>".join(lines)


def constraint_lines(spec: StudySpec, objectives: list[str], baseline: dict[str, Any]) -> dict[str, float]:
    """Objective -> the limit a constraint puts on it (accuracy: dense accuracy minus the allowed drop)."""
    c, lines = spec.constraints, {}
    if "accuracy" in objectives and c.max_accuracy_drop is not None and baseline.get("accuracy") is not None:
        lines["accuracy"] = float(baseline["accuracy"]) - c.max_accuracy_drop
    for name, limit in (("latency_ms", c.max_latency_ms), ("energy_mj", c.max_energy_mj), ("macs", c.max_macs)):
        if name in objectives and limit is not None:
            lines[name] = float(limit)
    return lines


def _group_tables(numbers: list[int], frame: pd.DataFrame
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Ratios and kept channels of each group (columns in network order) for the given trials (rows in order)."""
    plans = dict(zip(frame["number"], frame["plan"]))
    kept_channels = dict(zip(frame["number"], frame["channels"]))
    groups: list[str] = []
    for plan in plans.values():
        groups += [g for g in (plan or {}) if g not in groups]
    dense: dict[str, int] = {}
    for number, plan in plans.items():  # the dense seed trial (every ratio 0) knows the full channel counts
        channels = kept_channels.get(number) or {}
        if plan and channels and not any(plan.values()):
            dense = {g: int(channels[g]) for g in groups if g in channels}
            break
    # a block's column reads 1 where the plan dropped it (every channel gone) and 0 where it kept it
    ratios = pd.DataFrame([[(plans[n] or {}).get(g, 0.0 if g.startswith(DROP_KEY) else None) for g in groups]
                           for n in numbers],
                          index=pd.Index(numbers, name="number"), columns=groups, dtype=float)
    kept = pd.DataFrame([[(kept_channels[n] or {}).get(g) for g in groups] for n in numbers],
                        index=pd.Index(numbers, name="number"), columns=groups, dtype=float)
    return ratios, kept, dense


def _parallel(trials: pd.DataFrame, frame: pd.DataFrame, objectives: list[str]) -> tuple[pd.DataFrame, str]:
    done = trials[trials["status"] != "failed"]
    ratios, _, _ = _group_tables(done["number"].tolist(), frame)
    note = ""
    if ratios.shape[1] > MAX_PARALLEL_GROUPS:
        spread = ratios.std(ddof=0).fillna(0.0)
        chosen = sorted(spread.nlargest(MAX_PARALLEL_GROUPS).index, key=list(ratios.columns).index)
        note = f"{len(chosen)} of {ratios.shape[1]} groups shown: those whose ratios vary most across trials"
        ratios = ratios[chosen]
    table = pd.concat([done[["number", "status"]].reset_index(drop=True), ratios.reset_index(drop=True),
                       done[objectives].reset_index(drop=True)], axis=1)
    return table, note


def importance_target(direction: str, index: int) -> Callable[[FrozenTrial], float]:
    """Optuna's evaluators treat lower as better: a maximised objective's values are negated."""
    sign = -1.0 if direction == "maximize" else 1.0
    return lambda t: sign * t.values[index]


def parameter_importances(study: optuna.Study, objectives: list[str], directions: list[str]
                          ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Optuna's parameter importances per objective; an objective where they cannot be computed gets a note."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values is not None]
    result: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    for i, (name, direction) in enumerate(zip(objectives, directions)):
        if len(done) < 2:
            notes[name] = f"needs at least 2 complete trials (the study has {len(done)})"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study, target=importance_target(direction, i))
        except Exception as exc:  # Optuna refuses some inputs (e.g. no parameter varies): say so, draw the rest
            notes[name] = f"not computed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            continue
        if not values:
            notes[name] = "not computed: no parameter is shared by every complete trial"
            continue
        result[name] = dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
    return result, notes


def _history(trials: pd.DataFrame, objectives: list[str], directions: list[str], baseline: dict[str, Any],
             max_drop: float | None) -> tuple[pd.DataFrame, str]:
    """Hypervolume after each finished trial; the running best of each objective when there is no hypervolume."""
    frame = trials[trials["status"] != "failed"].assign(
        feasible=lambda f: f["status"].isin(["front", "dominated"]), state="COMPLETE")
    if all(baseline.get(o) is not None for o in objectives):
        try:
            return hypervolume_history(frame, objectives, directions, baseline, max_drop), "hypervolume"
        except Exception:  # moocore refuses degenerate input: fall back to best values below
            pass
    rows, best = [], {}
    for _, row in frame.sort_values("number").iterrows():
        if row["feasible"]:
            for name, direction in zip(objectives, directions):
                pick = max if direction == "maximize" else min
                best[name] = row[name] if name not in best else pick(best[name], row[name])
        rows.append({"number": int(row["number"]), **{o: best.get(o) for o in objectives}})
    return pd.DataFrame(rows, columns=["number", *objectives]), "best values"


def sensitivity_frame(records: Any) -> pd.DataFrame | None:
    """The sensitivity scan's records (``unit``, ``ratio``, ``accuracy_drop``, ``latency_gain_ms``), or None."""
    if not records or not isinstance(records, list):
        return None
    rows = [{k: rec[k] for k in SENSITIVITY_COLUMNS} for rec in records
            if isinstance(rec, dict) and all(k in rec for k in SENSITIVITY_COLUMNS)]
    if not rows:
        return None
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


def _setup(study: optuna.Study, spec: StudySpec, baseline: dict[str, Any]) -> dict[str, dict[str, str]]:
    env = environment_of(study)
    p, f, s, m, c = spec.prune, spec.finetune, spec.search, spec.measure, spec.constraints
    ratio = f"{p.ratio.low}-{p.ratio.high}" + (f" step {p.ratio.step}" if p.ratio.step else "")
    device = {"spec device": spec.device, "measured on": f"{env.get('device', '?')} ({env.get('device_name', '?')})",
              "threads": str(env.get("threads", "?")),
              "latency timer": str(env.get("latency_timer") or (
                  "CUDA events" if str(env.get("device", "")).startswith("cuda") else "perf_counter"))}
    if env.get("driver"):
        device["driver"] = str(env["driver"])
    methods = {
        "model": f"{spec.model.arch} on {spec.data.name} ({spec.data.image_size} px)"
                 + (f"; sparsity-trained dense model (L1 {spec.model.sparsity_training.l1:g} on BatchNorm scales, "
                    f"{spec.model.sparsity_training.epochs} epoch{'' if spec.model.sparsity_training.epochs == 1 else 's'})"
                    if spec.model.sparsity_training else ""),
        "pruning": f"{p.method}" + (f" {p.nm}" if p.method == "nm" else "")
                   + f", {p.importance} importance, per {p.granularity}, ratio {ratio}"
                   + (f", offsets up to ±{p.offset_max}" if getattr(p, "offset_max", None) else "")
                   + (f", round to {p.round_to}" if p.round_to else "")
                   + (f", iteratively in {p.schedule.steps} steps with {p.schedule.finetune_steps} fine-tune steps "
                      f"between them" if p.iterative else ""),
        "fine-tune": f"{f.steps} steps, {f.optimizer}, lr {f.lr}, batch {f.batch_size}"
                     + (f", distilled from the dense model (alpha {f.distill.alpha}, temperature "
                        f"{f.distill.temperature})" if f.distill is not None else "")
                     + (f", then BatchNorm statistics re-estimated from {f.recalibrate_bn} batches"
                        if f.recalibrate_bn else ""),
        "search": f"{s.sampler}, {s.n_trials} trials" + (f", population {s.population_size}"
                                                           if s.sampler in ("nsga2", "nsga3") else "")
                  + f"; starting plans {', '.join(s.seed_trials) or 'none'}",
        **({"screening": f"{s.screen.plans} plans, {s.screen.proxy} proxy ({s.screen.batches} batches), "
                         f"latency {'predicted by the latency model' if s.screen.latency == 'model' else 'timed'}, "
                         f"starting plans {'screened' if s.screen.starts == 'screen' else 'fine-tuned first'}, "
                         f"{s.screen.rounds} rounds, {s.screen.neighbours} neighbours per front plan, "
                         + (f"{s.screen.allocate:.0%} of each later round from the allocation model"
                            if s.screen.allocate else "no allocation model")
                         + (f", at least {s.screen.explore:.0%} from the sampler" if s.screen.explore else "")
                         + ("; the proxy floor probed" if s.screen.probe else "")}
           if s.screen.plans else {}),
        "measurement": f"batch {m.batch_size}, {m.warmup} warm-up, {m.repeats} repeats",
        "constraints": ", ".join(f"{k} {v}" for k, v in c.model_dump().items() if v is not None) or "none",
        "objectives": ", ".join(f"{o} ({d})" for o, d in zip(spec.objectives, spec.directions)),
    }
    shown = ("device", "device_name", "threads", "driver", "latency_timer")
    environment = {k: str(v) for k, v in env.items() if k not in shown and v is not None}
    base = {}
    if baseline:
        for key in ("accuracy", "latency_ms", "energy_mj", "macs", "params"):
            if baseline.get(key) is not None:
                base[key] = format_value(key, baseline[key])
        if baseline.get("latency_ms_p10") is not None:
            base["latency p10-p90"] = f"{baseline['latency_ms_p10']:.2f}-{baseline['latency_ms_p90']:.2f} ms"
        base["source"] = str(baseline.get("source", "?"))
        if baseline.get("sha256"):
            base["weights sha256"] = str(baseline["sha256"])[:12]
        if baseline.get("sparsity_trained_from"):
            base["sparsity-trained from"] = str(baseline["sparsity_trained_from"])[:12]
    return {"device": device, "methods": methods, "environment": environment, "dense baseline": base}
