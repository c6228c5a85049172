"""Events show their progress only where someone waits (webui/progress_targets.py): the page revisits every
component that ever showed progress on every later message, so the built app must keep that set small.
That the launched page keeps no run history in the browser is test_browser.py's."""

import gradio as gr
import pytest

from webui.progress_targets import MAX_TARGETS, check, narrow, targets


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from webui.app import build_app

    jobs = JobManager(tmp_path_factory.mktemp("progress") / "workspace")
    yield build_app(jobs, ChatEngine(jobs))
    jobs.shutdown()


def test_the_studio_shows_progress_only_where_someone_waits(studio):
    fns = {fn.api_name: fn for fn in studio.fns.values()}
    assert check(studio) == []
    # Timers, status reads and the events that show nothing never add a target.
    quiet = [fn for fn in fns.values() if fn.show_progress == "hidden" or not fn.queue]
    assert {"tick", "check", "on_fit", "train_status"} <= {fn.api_name for fn in quiet}
    assert all(targets(fn) == [] for fn in quiet)
    # Clone fills the whole form and switches the tab: its progress shows on its one line.
    clone = fns["on_clone"]
    assert len(clone.outputs) > MAX_TARGETS and [b.elem_id for b in targets(clone)] == ["runs-message"]
    assert not any(isinstance(b, gr.Tabs) for fn in fns.values() for b in targets(fn))
    # A chat reply still shows its progress where it is written.
    assert [b.elem_id for b in targets(fns["respond"])] == ["chatbot", "chat-input"]


def test_the_check_names_each_event_that_breaks_a_rule():
    with gr.Blocks() as blocks:
        with gr.Tabs() as strip:
            with gr.Tab("A", id="a"):
                boxes = [gr.Textbox() for _ in range(MAX_TARGETS + 1)]
        button = gr.Button()
        button.click(lambda: [""] * len(boxes), None, boxes, api_name="fill")
        button.click(lambda: gr.Tabs(selected="a"), None, strip, api_name="switch")
        button.click(lambda: "", None, boxes[0], show_progress="hidden", show_progress_on=boxes[0], api_name="quiet")
        button.click(lambda: "", None, boxes[1], queue=False, api_name="read")
    assert check(blocks) == [
        f"fill: {MAX_TARGETS + 1} progress targets (at most {MAX_TARGETS})",
        "switch: a layout (Tabs) is a progress target",
        "quiet: shows no progress but has 1 progress targets",
        "read: shows no progress but has 1 progress targets",
    ]
    narrow(blocks)  # the quick read loses its target; an explicit one is the wiring's to fix
    assert check(blocks)[2:] == ["quiet: shows no progress but has 1 progress targets"]
