"""The screened plans beside a study: a table of them and the figure that shows what the screen promoted.

Screened plans were never fine-tuned: their first value is a proxy (``accuracy_proxy``), so they are drawn in a
figure of their own, on the proxy's axis, and never among the study's trials or on its front.
"""

from __future__ import annotations

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..pareto import objective_names
from ..record import TrialRecord

SCREEN_COLUMNS = ["number", "proxy", "cost", "proposer", "promoted_as", "accuracy"]


def proposer_of(trial: optuna.trial.FrozenTrial) -> str:
    """Who proposed a screened plan: "sweep" (a uniform or global level), "allocation", "neighbour" or "sampler"."""
    record = TrialRecord.of(trial)
    return "sweep" if record.start else (record.proposer or "sampler")


def screen_frame(screened: optuna.Study, study: optuna.Study) -> tuple[pd.DataFrame, str]:
    """Scored screened plans: proxy, first cost, the fine-tuned trial each promoted plan became and its accuracy."""
    names = objective_names(study)
    cost = objective_names(screened)[1] if len(screened.directions) > 1 else "macs"
    became = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        if record.screen_trial is not None and not record.rejected:
            became[record.screen_trial] = (t.number, t.values[names.index("accuracy")] if "accuracy" in names
                                           else None)
    rows = []
    for t in screened.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        number, accuracy = became.get(t.number, (None, None))
        rows.append({"number": t.number, "proxy": t.values[0], "cost": t.values[1] if len(t.values) > 1 else None,
                     "proposer": proposer_of(t), "promoted_as": number, "accuracy": accuracy})
    return pd.DataFrame(rows, columns=SCREEN_COLUMNS), cost


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with fewer than 3 pairs or a constant side."""
    if len(xs) < 3:
        return None
    r = pd.Series(xs).rank().corr(pd.Series(ys).rank())
    return None if pd.isna(r) else float(r)


def screen_figure(frame: pd.DataFrame, cost: str) -> go.Figure:
    """Left: every scored plan, proxy against its cost, the promoted ones ringed. Right: proxy against the accuracy
    the fine-tune then gave, for the promoted plans: how well the proxy ranked in this study."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"screened plans: proxy against {cost}", "promoted plans: proxy against accuracy after the fine-tune"))
    rest, up = frame[frame["promoted_as"].isna()], frame[frame["promoted_as"].notna()]
    fig.add_trace(go.Scatter(x=rest["cost"], y=rest["proxy"], mode="markers", name="screened",
                             marker=dict(color="rgba(120,130,145,0.55)", size=6),
                             hovertext=[f"screened plan {n} ({p})" for n, p in zip(rest["number"], rest["proposer"])],
                             hoverinfo="text+x+y"), 1, 1)
    fig.add_trace(go.Scatter(x=up["cost"], y=up["proxy"], mode="markers", name="promoted (fine-tuned)",
                             marker=dict(color="#1f63b4", size=10, line=dict(color="white", width=1)),
                             hovertext=[f"screened plan {n} ({p}) -> trial {int(m)}" for n, p, m in
                                        zip(up["number"], up["proposer"], up["promoted_as"])],
                             hoverinfo="text+x+y"), 1, 1)
    fig.add_trace(go.Scatter(x=up["proxy"], y=up["accuracy"], mode="markers", showlegend=False,
                             marker=dict(color="#1f63b4", size=10),
                             hovertext=[f"trial {int(m)}" for m in up["promoted_as"]], hoverinfo="text+x+y"), 1, 2)
    fig.update_xaxes(title_text=cost, row=1, col=1)
    fig.update_yaxes(title_text="accuracy proxy (not an accuracy)", row=1, col=1)
    fig.update_xaxes(title_text="accuracy proxy", row=1, col=2)
    fig.update_yaxes(title_text="accuracy after the fine-tune", row=1, col=2)
    fig.update_layout(template="plotly_white", font=dict(size=13), height=460, margin=dict(l=70, r=30, t=60, b=60))
    return fig
