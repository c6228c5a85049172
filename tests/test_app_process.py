"""What launch.py's prepare_process gives the app's gradio: no regeneration of gradio's type stubs
(webui.gradio_import; bench/app_start.py measures what that saves), and its API page's timings summarised every
20th queued event instead of after each. In a fresh process, since this one imported gradio long ago."""

import json
import subprocess
import sys

from tests.helpers import ROOT

APP_PROCESS = """
import json, sys
from launch import prepare_process
prepare_process()
prepare_process()  # twice: one finder, not two
finders = [type(f).__name__ for f in sys.meta_path].count("_WithoutStubRewrite")
import gradio as gr
import gradio.component_meta as meta
from webui.gradio_import import _keep_stubs

class Counter(gr.Number):  # a component defined after the import: gradio would rewrite its stub too
    EVENTS = ["change"]

with gr.Blocks() as page:
    box, out = gr.Textbox(), Counter()
    box.change(lambda text: len(text), box, out, api_name="count")
print(json.dumps({
    "finders_before": finders,
    "finders_after": [type(f).__name__ for f in sys.meta_path].count("_WithoutStubRewrite"),
    "stub_writer_skipped": meta.create_or_modify_pyi is _keep_stubs,
    "events": [fn.api_name for fn in page.fns.values()],
    "summarised_every": page.queue()._queue.ANAYLTICS_CACHE_FREQUENCY,  # gradio's spelling
}))
"""


def test_the_apps_gradio_skips_rewriting_stubs_and_summarises_its_timings_every_20th_event():
    result = subprocess.run([sys.executable, "-c", APP_PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # One finder until gradio's import, then gone; the stub writer is ours, and the page wires its event.
    assert seen == {
        "finders_before": 1,
        "finders_after": 0,
        "stub_writer_skipped": True,
        "events": ["count"],
        "summarised_every": 20,
    }
