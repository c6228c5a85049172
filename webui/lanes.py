"""The Gradio queue's lanes: which events may run side by side.

`device`: everything that computes with a model in this process or starts a measuring job
(chat, the three-way ask, evaluation, batch predict, classification, export, the time
estimate). One at a time, so two of them never share the device (and its memory) by accident;
the others wait their turn in the queue, in order.

`jobs`: starting, resuming and aborting training jobs. One at a time, so two starts cannot race
for the queue; the jobs themselves run one at a time in their own processes (JobManager).

`status`: status reads, run lists and the timers that redraw the progress and the chart. No
limit: they only read small files, and they must never wait behind a long chat or evaluation.
"""

DEVICE = {"concurrency_id": "device", "concurrency_limit": 1}
JOBS = {"concurrency_id": "jobs", "concurrency_limit": 1}
STATUS = {"concurrency_id": "status", "concurrency_limit": None}
