"""Charts (plotly): train loss smoothed over its raw line, validation loss as a line with markers; preference
rewards. Titles, axes and legends are in the page's language (webui.i18n.say).

Plotly rather than gr.LinePlot: LinePlot fixes its colour legend at the first non-empty draw,
so an eval series that appears later was never drawn.
"""

from __future__ import annotations

import plotly.graph_objects as go

from backend.events import loss_points, metric_points
from webui.i18n import say

TRAIN_COLOR, EVAL_COLOR = "#d97706", "#2563eb"


def smoothed(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    out, last = [], 0.0
    for i, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**i) if weight else value)
    return out


def add_series(figure: go.Figure, points, name: str, color: str, smoothing: float, **extra) -> None:
    """A train-like series: the raw values faint, and over them the smoothed line (hover shows both)."""
    steps, values = zip(*points, strict=True)
    hover = "%{y:.4f} · " + say("chart.step") + " %{x}"
    if smoothing > 0:
        figure.add_scatter(
            x=steps,
            y=values,
            name=f"{name} ({say('chart.raw')})",
            mode="lines",
            opacity=0.3,
            line={"color": color, "width": 1},
            hovertemplate=hover,
            showlegend=False,
            **extra,
        )
        values = smoothed(list(values), smoothing)
    figure.add_scatter(x=steps, y=values, name=name, mode="lines", line={"color": color}, hovertemplate=hover, **extra)


def loss_figure(events: list[dict], title: str | None = None, smoothing: float = 0.6) -> go.Figure | None:
    """Train loss smoothed over its faint raw line, validation loss as a line with its points."""
    train, evals = loss_points(events)
    if not train and not evals:
        return None
    figure = go.Figure()
    if train:
        add_series(figure, train, say("chart.train"), TRAIN_COLOR, smoothing)
    if evals:
        steps, losses = zip(*evals, strict=True)
        hover = "%{y:.4f} · " + say("chart.step") + " %{x}"
        figure.add_scatter(
            x=steps,
            y=losses,
            name=say("chart.eval"),
            mode="lines+markers",
            line={"color": EVAL_COLOR},
            hovertemplate=hover,
        )
    figure.update_layout(
        title=title or say("chart.loss"),
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title=say("chart.step"),
        yaxis_title=say("chart.loss_axis"),
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        uirevision="keep",  # keep the user's zoom while points stream in
    )
    return figure


REWARD_SERIES = (  # TRL's name, legend key, colour
    ("rewards/chosen", "chart.chosen", "#059669"),
    ("rewards/rejected", "chart.rejected", "#dc2626"),
    ("rewards/margins", "chart.margin", "#7c3aed"),
)


REWARD_COLORS = ("#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626")


def grpo_figure(events: list[dict], smoothing: float = 0.6) -> go.Figure | None:
    """grpo runs: the mean total reward and each component, with completion length and KL on axes of their own."""
    figure = go.Figure()
    total = metric_points(events, "reward")
    if not total:
        return None
    add_series(figure, total, say("chart.total_reward"), TRAIN_COLOR, smoothing)
    components = dict.fromkeys(k for e in events if e["type"] == "log" for k in e if k.startswith("reward/"))
    for i, key in enumerate(components):
        add_series(figure, metric_points(events, key), key, REWARD_COLORS[i % len(REWARD_COLORS)], smoothing)
    lengths = metric_points(events, "completion_length")
    if lengths:
        add_series(figure, lengths, say("chart.completion_length"), "#6b7280", smoothing, yaxis="y2")
    kl = metric_points(events, "kl")
    if kl:
        add_series(figure, kl, "kl", EVAL_COLOR, smoothing, yaxis="y3")
    figure.update_layout(
        title=say("chart.grpo_rewards"),
        height=320,
        margin={"l": 50, "r": 90, "t": 40, "b": 40},
        xaxis_title=say("chart.step"),
        yaxis_title=say("chart.reward"),
        yaxis2={"title": say("chart.completion_length"), "overlaying": "y", "side": "right"},
        yaxis3={"title": "kl", "overlaying": "y", "side": "right", "anchor": "free", "autoshift": True},
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.15, "x": 1, "xanchor": "right"},
        uirevision="keep",
    )
    return figure


def reward_figure(events: list[dict], smoothing: float = 0.6) -> go.Figure | None:
    """Preference runs: the rewards of chosen and rejected answers and their margin, with the share of pairs
    ranked right (rewards/accuracies) on a 0-1 axis of its own; each smoothed over its faint raw line.
    grpo runs: their rewards (grpo_figure)."""
    if metric_points(events, "reward"):
        return grpo_figure(events, smoothing)
    figure = go.Figure()
    for key, name, color in REWARD_SERIES:
        points = metric_points(events, key)
        if points:
            add_series(figure, points, say(name), color, smoothing)
    accuracies = metric_points(events, "rewards/accuracies")
    if accuracies:
        add_series(figure, accuracies, say("chart.accuracy"), "#6b7280", smoothing, yaxis="y2")
    if not figure.data:
        return None
    figure.update_layout(
        title=say("chart.rewards"),
        height=300,
        margin={"l": 50, "r": 50, "t": 40, "b": 40},
        xaxis_title=say("chart.step"),
        yaxis_title=say("chart.reward"),
        yaxis2={"title": say("chart.accuracy"), "overlaying": "y", "side": "right", "range": [0, 1]},
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.15, "x": 1, "xanchor": "right"},
        uirevision="keep",
    )
    return figure


RUN_COLORS = ("#d97706", "#2563eb", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")


def compare_figure(events_by_run: dict[str, list[dict]]) -> go.Figure | None:
    """Several runs' losses on one chart: one colour a run, train solid, eval dashed with markers."""
    figure = go.Figure()
    for i, (run_id, events) in enumerate(events_by_run.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        train, evals = loss_points(events)
        for kind, points, dash, mode in (("train", train, "solid", "lines"), ("eval", evals, "dash", "lines+markers")):
            if points:
                steps, losses = zip(*points, strict=True)
                figure.add_scatter(
                    x=steps,
                    y=losses,
                    name=f"{run_id} {say('chart.' + kind)}",
                    mode=mode,
                    line={"color": color, "dash": dash},
                )
    if not figure.data:
        return None
    figure.update_layout(
        title=say("chart.loss_by_run"),
        height=360,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title=say("chart.step"),
        yaxis_title=say("chart.loss_axis"),
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def length_histogram(lengths: list[int], cutoff_len: int, truncated_share: float, sampled_note: str) -> go.Figure:
    """Token lengths per row, with cutoff_len marked and the share that would be truncated."""
    figure = go.Figure()
    figure.add_histogram(x=lengths, nbinsx=40, marker={"color": TRAIN_COLOR}, name="rows")
    figure.add_vline(x=cutoff_len, line={"color": "#b91c1c", "dash": "dash"})
    figure.add_annotation(
        x=cutoff_len,
        y=1,
        yref="paper",
        text=say("chart.truncated", cutoff_len=cutoff_len, share=f"{truncated_share:.1%}"),
        showarrow=False,
        xanchor="left",
        font={"color": "#b91c1c"},
    )
    figure.update_layout(
        title=say("chart.tokens_per_row") + sampled_note,
        height=280,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title=say("chart.tokens"),
        yaxis_title=say("chart.rows"),
        showlegend=False,
    )
    return figure


def confusion_figure(matrix: list[list[int]], labels: list[str]) -> go.Figure:
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=labels, y=labels, colorscale="Oranges", text=matrix, texttemplate="%{text}", showscale=False
        )
    )
    figure.update_layout(
        title=say("chart.confusion"),
        height=320,
        margin={"l": 60, "r": 10, "t": 40, "b": 50},
        xaxis_title=say("chart.predicted"),
        yaxis_title=say("chart.true"),
        yaxis={"autorange": "reversed"},
    )
    return figure


def roc_figure(curves: dict[str, list[list[float]]], auc: float | None) -> go.Figure:
    figure = go.Figure()
    for label, (fpr, tpr) in curves.items():
        figure.add_scatter(x=fpr, y=tpr, mode="lines", name=say("chart.vs_rest", label=label))
    figure.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9ca3af"}, name=say("chart.chance")
    )
    title = say("chart.roc_auc", auc=f"{auc:.3f}") if auc is not None else say("chart.roc")
    figure.update_layout(
        title=title,
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title=say("chart.fpr"),
        yaxis_title=say("chart.tpr"),
    )
    return figure
