"""Loss charts (plotly): train loss as a line, validation loss as a line with markers.

Plotly rather than gr.LinePlot: LinePlot fixes its colour legend at the first non-empty draw,
so an eval series that appears later was never drawn.
"""

from __future__ import annotations

import plotly.graph_objects as go

TRAIN_COLOR, EVAL_COLOR = "#d97706", "#2563eb"


def loss_points(events: list[dict]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    train = [(e["step"], e["loss"]) for e in events if e["type"] == "log" and e.get("loss") is not None]
    evals = [(e["step"], e["eval_loss"]) for e in events if e["type"] == "eval" and e.get("eval_loss") is not None]
    return train, evals


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
