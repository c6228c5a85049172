"""The run folder: the names of the files through which a job and the app talk, and how a run is named.

A job writes them and the app reads them (see backend.events for the events file's contract):
  run.yaml          the options as the user asked (the job manager writes it; the job reads it)
  config.yaml       the fully resolved options the job trained with
  events.jsonl      one JSON event a line: start, status, log, eval, checkpoint, end, resume
  train.log         the job's own output, for people
  metrics.json      the final metrics of a completed run
  sweep.json        the sweep and trial number of a run that a sweep started (backend.sweeps)
  owner.json        who started the run, in a studio with logins (backend.access.gate)
  checkpoint-<N>/   mid-run checkpoints, resumable
  ranks/rank-<N>.log  the output of ranks other than 0 in a multi-process run
"""

from __future__ import annotations

import secrets
import time

RUN_FILE = "run.yaml"
CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.json"
SWEEP_FILE = "sweep.json"
OWNER_FILE = "owner.json"
RANK_LOG_DIR = "ranks"
DEEPSPEED_FILE = "ds_config.json"
FSDP_FILE = "fsdp_config.json"

# Set by the job manager, which already sends the job's stdout/stderr to train.log.
LOG_REDIRECTED_ENV = "TUNEFORGE_LOG_REDIRECTED"
# Set by the job manager: how far below the app's CPU priority its jobs run.
NICE_ENV = "TUNEFORGE_NICE"
# A live job is recognised by this module name in its command line (a restarted app adopts it).
JOB_MODULE = "backend.train"
# Set to 0 to start every job as a new process instead of forking it from the warm job server.
WARM_JOBS_ENV = "TUNEFORGE_WARM_JOBS"
# The environment that libraries read when they are imported: thread counts, offline flags, cache
# folders, library paths. A job forked from the job server (backend.training.fork_server) gets its own
# environment, but the server's imports read these once, at its start: a change in one of them needs a
# new server. Anything else (the workspace, a flag a library sets at run time) a forked job just takes.
IMPORT_TIME_ENV = (
    "OMP_", "MKL_", "OPENBLAS_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "CUDA_",
    "NCCL_", "TOKENIZERS_", "BNB_", "LD_", "PYTHONPATH", "PYTHONHASHSEED",
)  # fmt: skip


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith(IMPORT_TIME_ENV)}


def new_run_id() -> str:
    # Not `random`: training seeds it, so after a run in the same process (a test, a speed trial) two
    # ids started within a second came out the same.
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
