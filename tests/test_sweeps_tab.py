"""The Sweeps tab lives like the others: its list follows by itself, its empty table and charts say how to fill
them, and Abort is off until a running sweep is picked. Built as the app builds it; no trial runs."""

import pandas as pd
import pytest

from webui.i18n import say


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    import gradio as gr

    from backend.access.gate import Gate
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.sweeps.sweep_manager import SweepManager
    from webui.context import AppContext
    from webui.tab_sweeps import SweepsTab

    jobs = JobManager(tmp_path_factory.mktemp("workspace"))
    try:
        with gr.Blocks() as blocks:
            ctx = AppContext(
                jobs=jobs, chat=ChatEngine(jobs), blocks=blocks, sweeps=SweepManager(jobs), gate=Gate(jobs)
            )
            sweeps = SweepsTab(ctx)
            sweeps.build()
        yield sweeps
    finally:
        jobs.shutdown()


def hint(figure) -> str:
    return figure.layout.annotations[0].text


def test_with_no_sweep_the_table_and_charts_say_how_to_fill_them_and_abort_is_off(tab):
    assert tab.abort.interactive is False
    assert not any(
        c.elem_id == "sweep-reload" or getattr(c, "value", None) == "↻ sweeps" for c in tab.ctx.blocks.blocks.values()
    )
    picked, known, summary, trials, history, parallel, importance, drawn, abort = tab.on_load()  # a page opens
    assert picked["value"] is None and known == []
    assert isinstance(trials, pd.DataFrame) and list(trials.columns) == [say("empty.sweep_trials")]
    assert [hint(f) for f in (history, parallel, importance)] == [
        say(f"empty.sweep_{name}") for name in ("history", "parallel", "importance")
    ]
    assert abort["interactive"] is False and drawn == -1
    assert tab.on_abort(None) == say("msg.sweep_select_to_abort")


def test_the_list_follows_a_sweep_started_elsewhere_and_a_picked_one_keeps_its_chart_hints_until_a_trial_completes(tab):
    assert tab.follow_list([])[1]["__type__"] == "update"  # nothing new: nothing re-rendered
    sweep_id = tab.ctx.sweeps.create({"space": {"lora_rank": [4, 8]}, "sampler": "grid"})  # as the API or CLI would
    choices, known = tab.follow_list([])
    assert choices["choices"] == [sweep_id] and "value" not in choices and known == [sweep_id]
    assert tab.follow_list(known)[0] == {"__type__": "update"}
    assert tab.on_load()[:2] == ({"__type__": "update", "choices": [sweep_id], "value": sweep_id}, [sweep_id])
    summary, trials, history, parallel, importance, drawn, abort = tab.on_pick(sweep_id)
    assert list(trials["status"]) == ["queued", "queued"]  # a grid's trials are listed before any runs
    assert [hint(f) for f in (history, parallel, importance)] == [  # and its charts say so until one completes
        say(f"empty.sweep_{name}") for name in ("history", "parallel", "importance")
    ]
    assert abort["interactive"] is (tab.ctx.sweeps.status(sweep_id)["status"] == "running")
