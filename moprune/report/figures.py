"""Plotly figures of a ReportData: drawing only; what to draw was decided in ``report_data``."""

from __future__ import annotations

import math
from itertools import combinations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .data import ReportData
from .tables import format_value

STYLE = {  # status -> marker; the front stands out, dominated trials recede, infeasible ones are crossed out
    "front": dict(color="#1f63b4", size=10, symbol="circle", line=dict(color="white", width=1)),
    "dominated": dict(color="rgba(120,130,145,0.55)", size=7, symbol="circle"),
    "infeasible": dict(color="#d62728", size=8, symbol="x"),
}
LABEL = {"front": "feasible Pareto front", "dominated": "feasible, dominated", "infeasible": "infeasible"}
BASELINE = dict(color="black", size=15, symbol="star")
KNEE = dict(color="#ff7f0e", size=19, symbol="circle-open", line=dict(width=3))
PICK = dict(color="#2ca02c", size=23, symbol="diamond-open", line=dict(width=3))
RANK = {"front": 1, "dominated": 2, "infeasible": 3, "knee": 4, "pick": 5, "baseline": 6}  # legend order
AXIS_TITLE = {"accuracy": "accuracy (top-1, fraction)", "latency_ms": "latency (ms)", "energy_mj": "energy (mJ)",
              "macs": "MACs", "params": "parameters"}
BASE_LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=70, r=30, t=60, b=60),
                   hoverlabel=dict(align="left"))


def axis_title(name: str) -> str:
    return AXIS_TITLE.get(name, name)


COSTS = ("latency_ms", "energy_mj", "macs", "params")


def _axis_format(name: str) -> dict:
    return {"tickformat": "~s"} if name in ("macs", "params") else {}


def _axis(d: ReportData, name: str, values: pd.Series) -> dict:
    """Cost axes are logarithmic (costs span decades; one noisy latency must not squash the front), their range
    fitted to the points, the baseline and the constraint lines (error bars may run off the edge)."""
    fmt = {**_axis_format(name), "title_text": axis_title(name)}
    if name not in COSTS:
        return fmt
    points = [*values.dropna().astype(float), d.baseline_point.get(name), d.constraint_lines.get(name)]
    points = [v for v in points if v is not None]
    if not points or min(points) <= 0:
        return fmt
    lo, hi = math.log10(min(points)), math.log10(max(points))
    pad = max(0.05, (hi - lo) * 0.06)
    lo, hi = lo - pad, hi + pad
    ticks = [m * 10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)
             if lo <= math.log10(m) + k <= hi]
    return {**fmt, "type": "log", "range": [lo, hi], "tickvals": ticks, "title_text": f"{axis_title(name)}, log scale"}


def pairs(objectives: list[str]) -> list[tuple[str, str]]:
    """(x, y) per objective pair; accuracy goes on y so that 'up and left' reads as better-and-cheaper."""
    out = []
    for a, b in combinations(objectives, 2):
        out.append((b, a) if a == "accuracy" else (a, b))
    return out


def _errors(frame: pd.DataFrame, name: str) -> dict | None:
    if name == "latency_ms" and frame["latency_ms_p10"].notna().any():
        return dict(type="data", array=(frame["latency_ms_p90"] - frame[name]).clip(lower=0).tolist(),
                    arrayminus=(frame[name] - frame["latency_ms_p10"]).clip(lower=0).tolist(),
                    thickness=1, width=0)
    if name == "accuracy" and frame["accuracy_std"].notna().any():
        return dict(type="data", array=frame["accuracy_std"].astype(float).fillna(0).tolist(), thickness=1, width=0)
    return None


def front_figure(d: ReportData) -> go.Figure:
    """Every objective pair: front, dominated and infeasible trials, the dense baseline, the knee, constraints."""
    plotted = d.trials[d.trials["status"] != "failed"]
    pair_list = pairs(d.objectives) or [("number", d.objectives[0])]
    cols = min(3, len(pair_list))
    rows = math.ceil(len(pair_list) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.08, vertical_spacing=0.12 / rows)
    for k, (x, y) in enumerate(pair_list):
        r, c = k // cols + 1, k % cols + 1
        for status in ("dominated", "infeasible", "front"):
            part = plotted[plotted["status"] == status]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[x], y=part[y], mode="markers", name=LABEL[status], legendgroup=status, showlegend=k == 0,
                legendrank=RANK[status],
                marker=STYLE[status], text=part["hover"], hovertemplate="%{text}<extra></extra>",
                error_x=_errors(part, x), error_y=_errors(part, y)), row=r, col=c)
        if d.knee is not None:
            knee = plotted[plotted["number"] == d.knee]
            fig.add_trace(go.Scatter(x=knee[x], y=knee[y], mode="markers", name=f"knee (trial {d.knee})",
                                     legendgroup="knee", showlegend=k == 0, legendrank=RANK["knee"], marker=KNEE,
                                     hoverinfo="skip"),
                          row=r, col=c)
        if d.pick is not None:
            chosen = plotted[plotted["number"] == d.pick.number]
            fig.add_trace(go.Scatter(x=chosen[x], y=chosen[y], mode="markers", name=f"pick (trial {d.pick.number})",
                                     legendgroup="pick", showlegend=k == 0, legendrank=RANK["pick"], marker=PICK,
                                     hoverinfo="skip"),
                          row=r, col=c)
        if x in d.baseline_point and y in d.baseline_point:
            fig.add_trace(go.Scatter(
                x=[d.baseline_point[x]], y=[d.baseline_point[y]], mode="markers", name="dense baseline",
                legendgroup="baseline", showlegend=k == 0, legendrank=RANK["baseline"], marker=BASELINE,
                hovertemplate=f"<b>dense baseline</b><br>{x}: %{{x:.4g}}<br>{y}: %{{y:.4g}}<extra></extra>"),
                row=r, col=c)
        for name, limit in d.constraint_lines.items():
            line = dict(dash="dash", color="#d62728", width=1.5)
            label = f"{'min' if name == 'accuracy' else 'max'} {name} {limit:.4g}"
            if name == x:
                fig.add_vline(x=limit, line=line, annotation_text=label, annotation_position="top right",
                              annotation_font_color="#d62728", row=r, col=c)
            elif name == y:
                fig.add_hline(y=limit, line=line, annotation_text=label, annotation_position="bottom right",
                              annotation_font_color="#d62728", row=r, col=c)
        fig.update_xaxes(row=r, col=c, **_axis(d, x, plotted[x]))
        fig.update_yaxes(row=r, col=c, **_axis(d, y, plotted[y]))
    fig.update_layout(**BASE_LAYOUT, height=460 * rows + 90,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02 + 0.03 / rows, x=0))
    return fig


def front_3d_figure(d: ReportData) -> go.Figure:
    x, y, z = d.objectives[:3]
    plotted = d.trials[d.trials["status"] != "failed"]
    fig = go.Figure()
    # WebGL markers are font glyphs: keep to circles and diamonds, which every font has
    style3d = {"front": dict(color="#1f63b4", size=7), "dominated": dict(color="rgba(120,130,145,0.7)", size=5),
               "infeasible": dict(color="#d62728", size=6, symbol="circle-open")}
    for status in ("front", "dominated", "infeasible"):
        part = plotted[plotted["status"] == status]
        if not part.empty:
            fig.add_trace(go.Scatter3d(x=part[x], y=part[y], z=part[z], mode="markers", name=LABEL[status],
                                       marker=style3d[status], text=part["hover"],
                                       hovertemplate="%{text}<extra></extra>"))
    if all(o in d.baseline_point for o in (x, y, z)):
        fig.add_trace(go.Scatter3d(x=[d.baseline_point[x]], y=[d.baseline_point[y]], z=[d.baseline_point[z]],
                                   mode="markers", name="dense baseline",
                                   marker=dict(color="black", size=8, symbol="diamond")))
    scene = {}
    for key, name in (("xaxis", x), ("yaxis", y), ("zaxis", z)):
        ax = _axis(d, name, plotted[name])
        scene[key] = {"title": dict(text=ax.pop("title_text")), **ax}
    fig.update_layout(**{**BASE_LAYOUT, "margin": dict(l=0, r=0, t=40, b=0)}, height=700,
                      scene=dict(**scene, aspectmode="cube",  # camera: the whole cube in view, axis titles unclipped
                                 camera=dict(eye=dict(x=1.35, y=-1.45, z=0.95), center=dict(x=0, y=0, z=-0.12))),
                      legend=dict(orientation="h", y=1.02, x=0))
    return fig


def history_figure(d: ReportData) -> go.Figure:
    h = d.history
    if d.history_kind == "hypervolume":
        fig = go.Figure(go.Scatter(x=h["number"], y=h["hypervolume"], mode="lines+markers", line_shape="hv",
                                   name="hypervolume", hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>"))
        fig.update_yaxes(title_text="hypervolume (dense = 1 per axis)", rangemode="tozero")
        fig.update_xaxes(title_text="trial number")
        height = 380
    else:
        fig = make_subplots(rows=len(d.objectives), cols=1, shared_xaxes=True, vertical_spacing=0.06)
        for i, name in enumerate(d.objectives, start=1):
            fig.add_trace(go.Scatter(x=h["number"], y=h[name], mode="lines+markers", line_shape="hv",
                                     name=f"best {name}"), row=i, col=1)
            fig.update_yaxes(title_text=f"best {axis_title(name)}", row=i, col=1, **_axis_format(name))
        fig.update_xaxes(title_text="trial number", row=len(d.objectives), col=1)
        height = 220 * len(d.objectives) + 80
    fig.update_layout(**BASE_LAYOUT, height=height, showlegend=False)
    return fig


def heatmap_figure(d: ReportData) -> go.Figure:
    """Ratios of each group (columns, network order) for the front's trials (rows, in front order)."""
    ratios, kept = d.ratios, d.kept
    first = d.objectives[0]
    front = d.front.set_index("number")
    labels = [f"trial {n}{' (knee)' if n == d.knee else ''} · "
              + " · ".join(format_value(o, front.at[n, o]) for o in d.objectives[:2]) for n in ratios.index]
    dense = [d.dense_channels.get(g) for g in ratios.columns]
    names = list(ratios.columns)
    custom = [[[_int(kept.iat[i, j]), _int(dense[j]), names[j]] for j in range(ratios.shape[1])]
              for i in range(len(ratios))]
    small = ratios.shape[1] <= 24 and len(ratios) <= 30
    fig = go.Figure(go.Heatmap(
        z=ratios.to_numpy(), x=short_names(names), y=labels, customdata=custom, zmin=0.0,
        zmax=max(0.8, float(ratios.max().max()) if ratios.size else 0.8), colorscale="Blues",
        colorbar=dict(title=dict(text="pruning ratio")), texttemplate="%{z:.2f}" if small else None,
        hovertemplate="%{y}<br>group %{customdata[2]}<br>ratio %{z:.2f}<br>kept %{customdata[0]} of "
                      "%{customdata[1]} channels<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text=f"Pareto trials, ordered by {first}")
    fig.update_xaxes(title_text="pruning group (root layer, network order)", tickangle=-40, automargin=True)
    fig.update_layout(**BASE_LAYOUT, height=max(360, 34 * len(ratios) + 260))
    return fig


def short_names(names: list[str]) -> list[str]:
    """Group names without the dotted prefix they all share (a ViT's ``encoder.layers.``), so tick labels fit; a
    name left empty keeps its last part."""
    parts = [n.split(".") for n in names]
    common = 0
    while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return [".".join(p[common:]) for p in parts]


def _int(value) -> int | str:
    return "?" if value is None or pd.isna(value) else int(value)


def parallel_figure(d: ReportData) -> go.Figure:
    order = {"infeasible": 0, "dominated": 1, "front": 2}  # later lines are drawn on top: the front last
    p = d.parallel.sort_values("status", key=lambda s: s.map(order), kind="stable")
    code = p["status"].map({"infeasible": 0, "dominated": 1, "front": 2}).astype(float)
    groups = [c for c in p.columns if c not in ("number", "status", *d.objectives)]
    dims = [dict(label=short, values=p[g], range=[0, max(0.8, float(p[g].max()))])
            for g, short in zip(groups, short_names(groups))]
    dims += [dict(label=axis_title(o), values=p[o], tickformat=".3f" if o == "accuracy" else "~s")
             for o in d.objectives]
    fig = go.Figure(go.Parcoords(
        line=dict(color=code, cmin=0, cmax=2, showscale=True,
                  colorscale=[[0, "#d62728"], [0.33, "#d62728"], [0.33, "#b8bec6"], [0.67, "#b8bec6"],
                              [0.67, "#1f63b4"], [1, "#1f63b4"]],
                  colorbar=dict(tickvals=[0.33, 1, 1.67], ticktext=["infeasible", "dominated", "front"],
                                thickness=14)),
        dimensions=dims, labelangle=-30, labelside="top", labelfont=dict(size=11), tickfont=dict(size=10)))
    fig.update_layout(**{**BASE_LAYOUT, "margin": dict(l=60, r=60, t=150, b=40)}, height=560)
    return fig


def importance_figure(d: ReportData) -> go.Figure:
    names = list(d.importances)
    params = sorted({p for imp in d.importances.values() for p in imp},
                    key=lambda p: -sum(imp.get(p, 0.0) for imp in d.importances.values()))[:15]
    fig = go.Figure([go.Bar(x=params, y=[d.importances[n].get(p, 0.0) for p in params], name=n,
                            hovertemplate=f"{n}<br>%{{x}}: %{{y:.3f}}<extra></extra>") for n in names])
    fig.update_layout(**{**BASE_LAYOUT, "margin": dict(l=70, r=30, t=80, b=60)}, barmode="group", height=480,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(tickangle=-35, title_text="trial parameter")
    fig.update_yaxes(title_text="importance (sums to 1)")
    return fig


def sensitivity_figure(d: ReportData) -> go.Figure:
    s = d.sensitivity
    units = list(dict.fromkeys(s["unit"]))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    palette = ["#9ecae1", "#3182bd", "#08519c", "#6baed6", "#2171b5"]
    for k, (ratio, part) in enumerate(s.groupby("ratio", sort=True)):
        part = part.set_index("unit").reindex(units)
        color = palette[k % len(palette)]
        for row, col in ((1, "accuracy_drop"), (2, "latency_gain_ms")):
            fig.add_trace(go.Bar(x=units, y=part[col], name=f"ratio {ratio:g}", legendgroup=str(ratio),
                                 showlegend=row == 1, marker_color=color,
                                 hovertemplate=f"%{{x}} at ratio {ratio:g}<br>{col}: %{{y:.4g}}<extra></extra>"),
                          row=row, col=1)
    fig.update_yaxes(title_text="accuracy drop (no fine-tune)", row=1, col=1)
    fig.update_yaxes(title_text="latency gain (ms)", row=2, col=1)
    fig.update_xaxes(tickangle=-40, row=2, col=1, title_text="search unit (pruned alone)")
    fig.update_layout(**{**BASE_LAYOUT, "margin": dict(l=70, r=30, t=80, b=60)}, barmode="group", height=640,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig
