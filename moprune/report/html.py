"""``moprune dashboard``: the study as one self-contained HTML report (plotly.js embedded, opens without a network).

``data`` computes what to show; ``figures`` draws it; this module lays the page out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go

from ..spec import StudySpec
from . import figures as figs
from .data import ReportData, report_data
from .tables import format_value

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    caption: str  # plain text
    figure: go.Figure | None = None
    html: str = ""  # tables and notes under the figure (already escaped)


def sections(d: ReportData) -> list[Section]:
    """The report's sections in page order; a section without data is left out or replaced by a note."""
    out: list[Section] = []
    plotted = len(d.trials) - d.counts.get("failed", 0)
    if not plotted:
        return [Section("front", "Pareto front", "No trial has finished with values yet: run the study first.")]
    lines = ", ".join(f"{name} {limit:.4g}" for name, limit in d.constraint_lines.items()) or "none"
    out.append(Section(
        "front", "Pareto front: every pair of objectives",
        "Blue: the feasible Pareto front; grey: feasible but dominated; red crosses: infeasible (a constraint is "
        "violated); black star: the dense model; orange ring: the knee point"
        + (f"; green diamond: the pick ({d.pick_rule}, trial {d.pick.number})" if d.pick is not None else "")
        + f". Latency bars span p10 to p90 of the timed repeats. Dashed red lines: constraint limits ({lines}). "
        "Hover a point for its plan and speedup.",
        figs.front_figure(d)))
    if len(d.objectives) >= 3:
        out.append(Section("front3d", f"Pareto front in 3-D ({', '.join(d.objectives[:3])})",
                           "Drag to rotate; the same styling as above.", figs.front_3d_figure(d)))
    kind = d.history_kind
    out.append(Section(
        "history", f"Search progress: {kind} after each trial",
        "Hypervolume of the feasible trials so far, each objective divided by the dense model's value; the "
        "reference point is 1.1 x dense for costs and dense accuracy minus twice the allowed drop. A flat line "
        "means recent trials added nothing to the front." if kind == "hypervolume" else
        "The best feasible value of each objective so far (no hypervolume: the dense baseline lacks an objective).",
        figs.history_figure(d)))
    if not d.front.empty and d.ratios.shape[1]:
        out.append(Section(
            "ratios", "Where the front prunes: ratio per group",
            f"One row per Pareto trial, ordered along the front by {d.objectives[0]}; one column per pruning group "
            "(coupled layers share one ratio), in network order. Hover for the kept channels.",
            figs.heatmap_figure(d)))
    if not d.parallel.empty:
        out.append(Section(
            "parallel", "Ratios against objectives",
            "One line per complete trial, coloured by status; drag along an axis to filter. "
            + (d.parallel_note + "." if d.parallel_note else ""), figs.parallel_figure(d)))
    notes = "".join(f"<p class=note>{html.escape(name)}: {html.escape(text)}</p>"
                    for name, text in d.importance_notes.items())
    out.append(Section(
        "importance", "Parameter importances per objective",
        "Optuna's default evaluator (PED-ANOVA) over the complete trials; maximised objectives are negated first, "
        "since the evaluator treats lower as better. Trial parameters are the sampled ones (ratios or offsets).",
        figs.importance_figure(d) if d.importances else None, notes))
    if d.sensitivity is not None:
        out.append(Section(
            "sensitivity", "Sensitivity scan: each unit pruned alone, no fine-tune",
            "Accuracy lost (top) and latency gained (bottom) when only this unit is pruned; units that cost little "
            "accuracy per millisecond saved are the cheap ones to prune.", figs.sensitivity_figure(d)))
    if d.screen is not None and not d.screen.empty:
        from .screen import screen_figure

        promoted = int(d.screen["promoted_as"].notna().sum())
        out.append(Section(
            "screen", f"Screening: {len(d.screen)} plans scored cheaply, {promoted} promoted and fine-tuned",
            "Screened plans were pruned, "
            + ("given a latency predicted by the study's latency model (never a measurement)"
               if d.screen_cost == "latency_predicted_ms" else "timed with the quick paired measurement")
            + " and scored by a proxy of their "
            "accuracy after the fine-tune; they were never fine-tuned and are not trials of this study. Promoted "
            "first: the plans whose accuracy, read off the proxy (calibrated on the fine-tuned plans), could add "
            "most to the fine-tuned front; then the best by Pareto rank on the proxy and the cost"
            + ("; and, while the proxy at the accuracy budget was an untested extrapolation, one plan a round from "
               "under it, to test it" if d.screen_probe else "")
            + ". Right: how the proxy ranked the promoted plans against what their fine-tune gave.",
            screen_figure(d.screen, d.screen_cost)))
    out.append(Section("table", "The Pareto set and how it was measured", "", None,
                       pareto_table_html(d) + setup_html(d)))
    return out


def pareto_table_html(d: ReportData) -> str:
    if d.front.empty:
        return "<p class=note>No feasible trial yet: the front is empty.</p>"
    extra = [e for e in ("macs", "params") if e not in d.objectives]
    head = ["trial", *d.objectives, "latency p10-p90", "speedup", *extra, "plan", "from"]
    spread = d.front["accuracy_std"].notna().any()
    if spread:
        head.insert(len(d.objectives) + 1, "accuracy ± std (n)")
    rows = []
    for _, r in d.front.iterrows():
        cells = [f"{int(r['number'])}{' (knee)' if r['number'] == d.knee else ''}"
                 f"{' (pick)' if d.pick is not None and r['number'] == d.pick.number else ''}",
                 *[format_value(o, r[o]) for o in d.objectives]]
        if spread:
            cells.append(f"± {r['accuracy_std']:.4f} ({int(r['accuracy_n'])})" if pd.notna(r["accuracy_std"]) else "-")
        cells.append(f"{r['latency_ms_p10']:.2f}-{r['latency_ms_p90']:.2f} ms" if pd.notna(r["latency_ms_p10"])
                     else "-")
        cells.append(f"{r['speedup']:.2f}x" if pd.notna(r["speedup"]) else "-")
        cells += [*(format_value(e, r[e]) for e in extra), r["plan_summary"], r.get("origin") or "-"]
        cls = " class=knee" if r["number"] == d.knee else ""
        if d.pick is not None and r["number"] == d.pick.number:
            cls = " class=pick"
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table class=pareto><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def setup_html(d: ReportData) -> str:
    blocks = []
    for title, items in d.setup.items():
        if not items:
            continue
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items.items())
        blocks.append(f"<div><h3>{html.escape(title)}</h3><table class=kv>{body}</table></div>")
    return f"<div class=setup>{''.join(blocks)}</div>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;
padding:0 24px 48px;color:#1d2430}
h1{margin:24px 0 4px}h2{margin:36px 0 4px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
.summary{color:#4a5563;margin:0 0 8px}.caption{color:#4a5563;margin:4px 0 8px;max-width:1100px}
.note{color:#8a5a00;background:#fff6e0;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #e6e9ee;
text-align:left}table.pareto th{background:#f2f4f7}tr.knee td{background:#fff1e0;font-weight:600}
tr.pick td{background:#e3f4e6;font-weight:600}
.setup{display:flex;flex-wrap:wrap;gap:8px 40px}.setup h3{margin:12px 0 0;font-size:15px}table.kv th{color:#4a5563;
font-weight:500}
"""


def render_html(d: ReportData) -> str:
    """The whole page; plotly.js is embedded once, with the first figure."""
    parts, embedded = [], False
    for s in sections(d):
        parts.append(f"<section id={s.id}><h2>{html.escape(s.title)}</h2>")
        if s.caption:
            parts.append(f"<p class=caption>{html.escape(s.caption)}</p>")
        if s.figure is not None:
            parts.append(s.figure.to_html(full_html=False, include_plotlyjs=not embedded, div_id=f"fig-{s.id}",
                                          config=PLOTLY_CONFIG))
            embedded = True
        parts.append(s.html + "</section>")
    c = d.counts
    summary = (f"{sum(c.values())} trials: {c.get('front', 0)} on the feasible Pareto front, "
               f"{c.get('dominated', 0)} dominated, {c.get('infeasible', 0)} infeasible, {c.get('failed', 0)} failed"
               + (f"; knee point: trial {d.knee}" if d.knee is not None else "")
               + (f"; --pick {d.pick_rule}: trial {d.pick.number} ({d.pick.reason})" if d.pick is not None else "")
               + f". Objectives: {', '.join(f'{o} ({dr})' for o, dr in zip(d.objectives, d.directions))}.")
    title = f"moprune report: {d.study_name}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=summary>{html.escape(summary)}</p>"
            + (f"<p class=note>{html.escape(d.sparsity_note)}</p>" if d.sparsity_note else "")
            + f"{''.join(parts)}</body></html>")


def write_dashboard(study: optuna.Study, spec: StudySpec, out: Path, screened: optuna.Study | None = None,
                    pick: str | None = None) -> Path:
    """Compute the report's data from the study (and its screen study), draw it, write one self-contained file.

    ``pick``: an export pick rule whose trial the report marks (SpecError before anything is written if it fails).
    """
    out = Path(out)
    data = report_data(study, spec, screened, pick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    return out
