"""Charts (plotly): train loss as a line, validation loss as a line with markers; preference rewards.

Plotly rather than gr.LinePlot: LinePlot fixes its colour legend at the first non-empty draw,
so an eval series that appears later was never drawn.
"""

from __future__ import annotations

import plotly.graph_objects as go

from backend.events import loss_points, metric_points

TRAIN_COLOR, EVAL_COLOR = "#d97706", "#2563eb"


def loss_figure(events: list[dict], title: str = "Loss") -> go.Figure | None:
    train, evals = loss_points(events)
    if not train and not evals:
        return None
    figure = go.Figure()
    for name, points, color, mode in (
        ("train", train, TRAIN_COLOR, "lines"),
        ("eval", evals, EVAL_COLOR, "lines+markers"),
    ):
        if points:
            steps, losses = zip(*points, strict=True)
            figure.add_scatter(x=steps, y=losses, name=name, mode=mode, line={"color": color})
    figure.update_layout(
        title=title,
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title="step",
        yaxis_title="loss",
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        uirevision="keep",  # keep the user's zoom while points stream in
    )
    return figure


REWARD_SERIES = (  # TRL's name, legend, colour
    ("rewards/chosen", "chosen", "#059669"),
    ("rewards/rejected", "rejected", "#dc2626"),
    ("rewards/margins", "margin", "#7c3aed"),
)


def reward_figure(events: list[dict]) -> go.Figure | None:
    """Preference runs: the rewards of chosen and rejected answers and their margin, with the share of pairs
    ranked right (rewards/accuracies) on a 0-1 axis of its own."""
    figure = go.Figure()
    for key, name, color in REWARD_SERIES:
        points = metric_points(events, key)
        if points:
            steps, values = zip(*points, strict=True)
            figure.add_scatter(x=steps, y=values, name=name, mode="lines", line={"color": color})
    accuracies = metric_points(events, "rewards/accuracies")
    if accuracies:
        steps, values = zip(*accuracies, strict=True)
        figure.add_scatter(
            x=steps, y=values, name="accuracy", mode="lines", yaxis="y2", line={"color": "#6b7280", "dash": "dot"}
        )
    if not figure.data:
        return None
    figure.update_layout(
        title="Preference rewards",
        height=300,
        margin={"l": 50, "r": 50, "t": 40, "b": 40},
        xaxis_title="step",
        yaxis_title="reward",
        yaxis2={"title": "accuracy", "overlaying": "y", "side": "right", "range": [0, 1]},
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
                    x=steps, y=losses, name=f"{run_id} {kind}", mode=mode, line={"color": color, "dash": dash}
                )
    if not figure.data:
        return None
    figure.update_layout(
        title="Loss by run",
        height=360,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title="step",
        yaxis_title="loss",
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
        text=f"cutoff_len {cutoff_len}: {truncated_share:.1%} truncated",
        showarrow=False,
        xanchor="left",
        font={"color": "#b91c1c"},
    )
    figure.update_layout(
        title=f"Tokens per row{sampled_note}",
        height=280,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title="tokens",
        yaxis_title="rows",
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
        title="Confusion matrix",
        height=320,
        margin={"l": 60, "r": 10, "t": 40, "b": 50},
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis={"autorange": "reversed"},
    )
    return figure


def roc_figure(curves: dict[str, list[list[float]]], auc: float | None) -> go.Figure:
    figure = go.Figure()
    for label, (fpr, tpr) in curves.items():
        figure.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{label} vs rest")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9ca3af"}, name="chance")
    title = f"ROC curve (AUC {auc:.3f})" if auc is not None else "ROC curve"
    figure.update_layout(
        title=title, height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40},
        xaxis_title="false positive rate", yaxis_title="true positive rate",
    )  # fmt: skip
    return figure
