"""The built studio's event wiring. Events show their progress only where someone waits
(webui/progress_targets.py): the page revisits every component that ever showed progress on every later
message, so the built app must keep that set small. And what the page computes from the form when it opens is
computed by the same listener as its later updates. That the launched page keeps no run history in the browser is
test_browser.py's."""

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


def test_what_the_page_computes_from_the_form_when_it_opens_has_one_listener_with_its_later_updates(studio):
    """Two listeners run side by side: the dataset check of a fresh page, seconds long on a busy machine,
    landed after the check of a file uploaded meanwhile, and the summary described the demo (CI, stop 49).
    One listener runs its triggers in turn, the latest last."""

    def bound(fn):  # a bound method is made anew on each access: compare the function and what it binds
        return getattr(fn, "__func__", fn), id(getattr(fn, "__self__", None))

    fns = list(studio.fns.values())
    from_the_form = [fn for fn in fns if fn.api_name in ("on_check", "on_fit", "on_fit_warning")]
    assert len(from_the_form) == 3
    for fn in from_the_form:
        assert "load" in {event for _, event in fn.targets} and fn.trigger_mode == "always_last", fn.api_name
        assert [other.api_name for other in fns if other is not fn and bound(other.fn) == bound(fn.fn)] == []


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
