"""A timed view sends its page only the outputs that changed since its last answer for the same inputs."""

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from webui.sent import SentMemory

SKIP = gr.skip()


def skipped(outputs) -> list[bool]:
    return [isinstance(o, dict) and o == SKIP for o in outputs]


def test_a_tick_skips_what_it_sent_already_and_sends_whatever_moved():
    shown = {"loss": [1.0, 0.9], "rows": [["a", 1]], "line": "step 2 of 10"}

    def draw(run_id, smoothing):
        figure = go.Figure(go.Scatter(y=shown["loss"]))
        return shown["line"], figure, pd.DataFrame(shown["rows"], columns=["run", "step"])

    with gr.Blocks():
        sent = SentMemory()
    tick = sent.ticking(draw)

    *first, memory = tick("run-a", 0.6, None)
    assert not any(skipped(first))  # nothing sent yet: everything goes
    *again, memory = tick("run-a", 0.6, memory)
    assert skipped(again) == [True, True, True]

    shown["loss"].append(0.8)  # a new point on the chart; a figure's repr would not show it
    *moved, memory = tick("run-a", 0.6, memory)
    assert skipped(moved) == [True, False, True]
    assert list(moved[1].data[0].y) == [1.0, 0.9, 0.8]
    shown["rows"][0][1] = 2  # the same table with one cell changed
    *moved, memory = tick("run-a", 0.6, memory)
    assert skipped(moved) == [True, True, False] and moved[2].iloc[0, 1] == 2

    *other_run, _ = tick("run-b", 0.6, memory)  # other inputs: their view is drawn whole
    assert not any(skipped(other_run))
    *smoothed, _ = tick("run-a", 0.9, memory)
    assert not any(skipped(smoothed))


def test_another_event_drawing_the_view_makes_the_next_tick_send_everything():
    with gr.Blocks():
        sent = SentMemory()

    def draw(run_id):
        return f"progress of {run_id}", "log"

    *_, memory = sent.ticking(draw)("run-a", None)
    *drawn, forgotten = sent.forgetting(draw)("run-a")
    assert drawn == ["progress of run-a", "log"] and forgotten is None
    *after, _ = sent.ticking(draw)("run-a", forgotten)
    assert after == ["progress of run-a", "log"]
