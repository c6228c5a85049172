"""Empty states: a table or chart with nothing to show says what will appear there and how to get it.

A table shows the hint as its one header (Gradio draws placeholder headers `1 2 3` for a table without
columns); a chart shows it in the middle of a blank plot. The hint is in the page's language, so the values
given at build time (English) are written again when a page loads (`EmptyStates`).
"""

from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from webui.i18n import say
from webui.lanes import STATUS


def empty_table(key: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[say(key)])


def empty_figure(key: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(
        text=say(key), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 14, "color": "#6b7280"}
    )
    figure.update_layout(
        height=200, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis={"visible": False}, yaxis={"visible": False}
    )
    return figure


def widths(frame: pd.DataFrame, least: int = 5, most: int = 60) -> list[str]:
    """Column widths in proportion to what a column holds (its header, its longer cells), within bounds:
    a short `input` column keeps room for its header, a long `output` column does not squeeze the others."""
    sizes = []
    for column in frame.columns:
        cells = frame[column].astype(str).str.len()
        longest = int(cells.quantile(0.9)) if len(cells) else 0
        sizes.append(min(most, max(least, len(str(column)) + 2, longest)))
    total = sum(sizes) or 1
    return [f"{100 * size / total:.1f}%" for size in sizes]


def fitted(frame: pd.DataFrame):
    """A table's value with its columns sized to fit it."""
    return gr.update(value=frame, column_widths=widths(frame)) if len(frame.columns) else frame


class EmptyStates:
    """The empty tables and charts of the page, written in the page's language when it loads."""

    def __init__(self):
        self.shown: list[tuple[gr.components.Component, object]] = []

    def table(self, key: str, **kwargs) -> gr.Dataframe:
        component = gr.Dataframe(empty_table(key), interactive=False, elem_classes="tf-table", **kwargs)
        self.shown.append((component, partial(empty_table, key)))
        return component

    def chart(self, key: str, **kwargs) -> gr.Plot:
        component = gr.Plot(empty_figure(key), **kwargs)
        self.shown.append((component, partial(empty_figure, key)))
        return component

    def connect(self, blocks: gr.Blocks) -> None:
        def fill():
            return tuple(make() for _, make in self.shown)

        blocks.load(fill, None, [component for component, _ in self.shown], show_progress="hidden", **STATUS)
