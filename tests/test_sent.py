"""A timed view sends its page only the outputs that changed since its last answer for the same inputs."""

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from webui.sent import SentMemory

SKIP = gr.skip()


def skipped(outputs) -> list[bool]:
    return [isinstance(o, dict) and o == SKIP for o in outputs]


class Page:
    """What the browser does with a view's answers: each one, as it arrives, replaces the outputs and the
    memory it does not skip."""

    def __init__(self, count: int):
        self.shown, self.memory = [None] * count, None

    def receive(self, answer) -> None:
        *outputs, memory = answer
        self.shown = [
            old if is_skip else new for old, new, is_skip in zip(self.shown, outputs, skipped(outputs), strict=True)
        ]
        if not skipped([memory])[0]:
            self.memory = memory


def test_a_tick_skips_what_it_sent_already_and_sends_whatever_moved():
    shown = {"loss": [1.0, 0.9], "rows": [["a", 1]], "line": "step 2 of 10"}

    def draw(run_id, smoothing):
        figure = go.Figure(go.Scatter(y=shown["loss"]))
        return shown["line"], figure, pd.DataFrame(shown["rows"], columns=["run", "step"])

    with gr.Blocks():
        sent = SentMemory()
    tick = sent.ticking(draw)

    page = Page(3)
    *first, memory = tick("run-a", 0.6, page.memory)
    assert not any(skipped(first))  # nothing sent yet: everything goes
    page.receive((*first, memory))
    again = tick("run-a", 0.6, page.memory)
    assert all(skipped(again))  # the outputs, and the memory the page already holds
    page.receive(again)

    shown["loss"].append(0.8)  # a new point on the chart; a figure's repr would not show it
    *moved, memory = tick("run-a", 0.6, page.memory)
    assert skipped(moved) == [True, False, True]
    assert list(moved[1].data[0].y) == [1.0, 0.9, 0.8]
    page.receive((*moved, memory))
    shown["rows"][0][1] = 2  # the same table with one cell changed
    *moved, memory = tick("run-a", 0.6, page.memory)
    assert skipped(moved) == [True, True, False] and moved[2].iloc[0, 1] == 2
    page.receive((*moved, memory))

    *other_run, _ = tick("run-b", 0.6, page.memory)  # other inputs: their view is drawn whole
    assert not any(skipped(other_run))
    *smoothed, _ = tick("run-a", 0.9, page.memory)
    assert not any(skipped(smoothed))


def test_an_earlier_ticks_answer_arriving_last_is_followed_by_what_it_missed():
    """Ticks overlap on a busy server: one drawn while the run started can answer after one drawn once it
    ended. The page then shows the earlier answer, and the next tick must still send the end."""
    state = {"line": "running, step 0"}
    with gr.Blocks():
        sent = SentMemory()
    # A gr.State is the server's, written in the order ticks end, not in the order their answers reach the page.
    assert not isinstance(sent.memory, gr.State)
    tick = sent.ticking(lambda run_id: (state["line"], "log"))
    page = Page(2)
    earlier = tick("run-a", page.memory)
    state["line"] = "completed"
    later = tick("run-a", page.memory)  # sent before the earlier one answered: the same memory
    page.receive(later)
    page.receive(earlier)
    assert page.shown[0] == "running, step 0"
    page.receive(tick("run-a", page.memory))
    assert page.shown[0] == "completed"


def test_a_memory_the_page_made_up_counts_as_none():
    with gr.Blocks():
        sent = SentMemory()
    tick = sent.ticking(lambda run_id: ("line", "log"))
    key = tick("run-a", None)[-1]["key"]
    for memory in (["key"], {"key": key}, {"key": key, "digests": "ab"}, {"key": key, "digests": [1, 2]}, "x"):
        *outputs, _ = tick("run-a", memory)
        assert outputs == ["line", "log"], memory


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
