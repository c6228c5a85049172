"""The Gradio queue's lanes: which events may run side by side.

`device`: everything that computes with a model in this process or starts a measuring job
(chat, the three-way ask, evaluation, batch predict, classification, export, the time
estimate). One at a time, so two of them never share the device (and its memory) by accident;
the others wait their turn in the queue, in order.

`jobs`: starting, resuming and aborting training jobs. One at a time, so two starts cannot race
for the queue; the jobs themselves run one at a time in their own processes (JobManager).

`STATUS`: status reads, run lists and the timers that redraw the progress and the chart skip
the queue altogether (`queue=False`): they only read small files, they must never wait behind a
long chat or evaluation, and a plain HTTP POST answers them in one round trip rather than the
queue's join-and-stream (about 20 ms instead of about 100 ms on the 2-core dev machine under load).

`FOLLOW`: the page's check for finished runs (webui/app.py), the one timer that goes through the queue, in
a lane of its own so it never waits behind a chat. The page dispatches a `gr.State`'s change events only
from a queued event's completion message (Gradio 6.31's `dispatch_state_change_events`): outside the
queue, the state changed on the server and no list followed it.
"""

DEVICE = {"concurrency_id": "device", "concurrency_limit": 1}
JOBS = {"concurrency_id": "jobs", "concurrency_limit": 1}
STATUS = {"queue": False}
FOLLOW = {"concurrency_id": "follow", "concurrency_limit": 1}
