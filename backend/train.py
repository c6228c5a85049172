"""Run one training job: `python -m backend.train --config run.yaml`.

This is the only way anything trains; the UI runs exactly this command. The job reports
through `<output_dir>/events.jsonl` (see backend.events) and `<output_dir>/train.log`, and
leaves its weights in standard formats:
  lora, qlora    a PEFT adapter (adapter_config.json + adapter_model.safetensors) and the tokenizer
  full, freeze   config.json + model.safetensors and the tokenizer

Supports: sft on chat data with prompt tokens masked, LoRA, QLoRA, freeze or full fine-tuning,
validation loss, periodic checkpoints, resume from the last whole checkpoint
(resume_from_checkpoint), and abort by SIGTERM (the run is marked aborted at once). With
nproc_per_node × nnodes > 1 the command relaunches itself through torchrun (backend.training.distributed), and
rank 0 speaks for the run.
Refuses: unknown options and out-of-range values, what this machine cannot run (bf16 on a CPU,
4-bit without CUDA, DeepSpeed without its package), and a model that cannot load (backend.models.checks),
before any model is loaded: backend.admission.admit, the same checks the app's Start and Resume ask.
A LLaMA-Factory training YAML is accepted too: it is translated (backend.llamafactory), and the
translation is printed first, so nothing it asks for is dropped unseen.

Exit codes: 0 completed, 2 user error (one line on stderr), 1 crash (traceback in train.log),
143 aborted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path

from backend.admission import admit
from backend.capability import hide_bitsandbytes, probe, uses_bitsandbytes
from backend.checkpoints import checkpoint_step
from backend.config import TrainConfig
from backend.cycle_collector import hold, settle
from backend.errors import TuneForgeError
from backend.events import EventLog, NullEventLog
from backend.files import disk_full_message
from backend.llamafactory import load_train_config
from backend.paths import default_workspace
from backend.runfiles import CONFIG_FILE, EVENTS_FILE, LOG_FILE, LOG_REDIRECTED_ENV, NICE_ENV, new_run_id
from backend.training.distributed import (
    inside_launch,
    is_main_rank,
    join_launch,
    launched_by_us,
    lost_peer_message,
    needs_relaunch,
    relaunch,
    writes_the_run,
)
from backend.training.task_recipes import recipe_for


def place_in_workspace(output_dir: str, workspace: Path) -> str:
    """A relative output_dir (or none) names a folder of the workspace's runs/, so the app lists a run started
    from a terminal beside its own; an absolute one is kept as given.

    The app lists only folders directly inside runs/, so a nested relative path (LLaMA-Factory's YAMLs say
    saves/llama3-8b/lora/sft) becomes one name, its parts joined by dashes: saves-llama3-8b-lora-sft.
    """
    named = Path(output_dir).expanduser()
    if output_dir and named.is_absolute():
        return output_dir
    if ".." in named.parts:
        raise TuneForgeError(f"output_dir {output_dir!r}: a relative output_dir is a folder of {workspace / 'runs'}")
    name = "-".join(part for part in named.parts if part not in ("", "."))
    return str(workspace / "runs" / (name or new_run_id()))


def prepare_run_dir(config: TrainConfig) -> Path:
    """Resolve output_dir and write the fully resolved config into it (rank 0 only: one writer)."""
    if not config.output_dir:
        if inside_launch():
            raise TuneForgeError("under torchrun, set output_dir so that every rank writes the same run")
        config.output_dir = place_in_workspace("", default_workspace())
    run_dir = Path(config.output_dir).expanduser().resolve()
    config.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not writes_the_run(config):
        return run_dir
    tmp = run_dir / f".{CONFIG_FILE}.tmp"
    tmp.write_text(config.to_yaml(), encoding="utf-8")
    os.replace(tmp, run_dir / CONFIG_FILE)
    return run_dir


class _Tee:
    """Write to the terminal and to train.log, for runs started by hand from a shell."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def isatty(self):
        return False


def _capture_output(run_dir: Path) -> None:
    if os.environ.get(LOG_REDIRECTED_ENV):
        return
    log = open(run_dir / LOG_FILE, "a", encoding="utf-8", buffering=1)
    sys.stdout = _Tee(sys.__stdout__, log)
    sys.stderr = _Tee(sys.__stderr__, log)


def _install_abort_handler(events: EventLog, reports_abort: bool) -> None:
    def on_terminate(signum, frame):
        if reports_abort:  # under our own launcher, the launcher writes the one `end`
            events.emit("end", status="aborted", error="aborted by the user")
        print("aborted", file=sys.stderr, flush=True)
        # Stop now, not at the next step boundary: a CPU step can take many seconds.
        os._exit(143)

    signal.signal(signal.SIGTERM, on_terminate)


def run(config: TrainConfig, events: EventLog, run_dir: Path, resume_from: Path | None = None) -> dict:
    """Train according to config; returns the final metrics."""
    recipe = recipe_for(config, events, run_dir, resume_from)
    settle()  # the libraries are imported: out of every later collection (Trainer.train() starts with one)
    recipe.setup()
    metrics = recipe.train()
    recipe.save(metrics)
    return metrics


def out_of_memory_message(exc: BaseException, config: TrainConfig) -> str | None:
    """One actionable line for an allocation that failed (CPU or GPU), or None for any other error."""
    text = str(exc)
    # oneDNN (bf16 and int8 kernels on a CPU) reports a failed allocation of its workspace only as this;
    # it is also what an unsupported shape raises, but that fails the first step, not a run under way.
    onednn = "could not create a primitive" in text
    if not (
        isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text or onednn
    ):
        return None
    lighter = "; or use method lora or qlora (a 4-bit base)" if config.method in ("full", "freeze") else ""
    return (
        f"out of memory while training (per_device_train_batch_size {config.per_device_train_batch_size}, "
        f"cutoff_len {config.cutoff_len}): lower either, and raise gradient_accumulation_steps to keep the "
        f"effective batch{lighter}"
    )


def _record_refusal(config_path: str, exc: TuneForgeError) -> None:
    """A refused resume of a run the UI shows must end visibly in that run, not only on stderr."""
    try:
        output_dir = TrainConfig.from_yaml(config_path).output_dir or ""
        run_dir = Path(place_in_workspace(output_dir, default_workspace())).expanduser() if output_dir else None
    except TuneForgeError:
        return
    if run_dir is not None and (run_dir / EVENTS_FILE).exists():
        EventLog(run_dir).emit("end", status="failed", error=str(exc))


def yield_to_the_app() -> None:
    """Run below the app's CPU priority when the app started this job.

    Training takes every core it is given; at the same priority it slows the page's status reads
    and a chat in the app. Lowered, it still gets all of the CPU the app leaves idle. Applied once:
    torchrun's ranks inherit it, so the variable is dropped before they start.
    """
    steps = os.environ.pop(NICE_ENV, "")
    if steps:
        os.nice(int(steps))


def hide_unused_bitsandbytes(config: TrainConfig) -> None:
    """Keep bitsandbytes out of a run that quantizes nothing.

    peft imports it whenever it is installed, and its import compiles kernels through torch.compile:
    about 2 s of every job's start on a small CPU, for a library such a run never calls. A model
    folder saved quantized (quantization_config in its config.json) still needs it to load, and so may
    a hub id, whose config is not on this machine to read.
    """
    if not uses_bitsandbytes(config):
        hide_bitsandbytes()


def config_uses_bitsandbytes(config_path: str) -> bool:
    """For the job server (backend.training.fork_server), whose imports keep bitsandbytes out."""
    return uses_bitsandbytes(load_train_config(config_path)[0])


def one_line(text: str, limit: int = 300) -> str:
    """An exception's text on one line, its newlines written as \\n: cutting at the first one can lose the
    point (a tokenizer's "Token `\\n` out of vocabulary" read as "Token `")."""
    text = text.strip().replace("\r", "").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.train", description="Run one TuneForge training job.")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--config", help="YAML file of training options (see docs/options.md)")
    given.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the app's warm job server
    parser.add_argument(
        "--workspace",
        default=None,
        help="the app's workspace (default: $TUNEFORGE_WORKSPACE or the project's workspace/): a relative "
        "output_dir, or none, is a folder of its runs/, so the app lists the run; an absolute output_dir is kept",
    )
    args = parser.parse_args(argv)
    if args.workspace:  # the job's every reading of the workspace (datasets, runs) agrees with the flag
        os.environ["TUNEFORGE_WORKSPACE"] = str(Path(args.workspace).expanduser().resolve())
    if args.serve:
        yield_to_the_app()  # once here: the jobs it forks inherit the priority
        from backend.training.fork_server import serve

        return serve(main, config_uses_bitsandbytes)
    yield_to_the_app()
    try:
        config, loaded, where = load_train_config(args.config)
        if config.output_dir:
            config.output_dir = place_in_workspace(config.output_dir, default_workspace())
        # Before config.yaml is overwritten (a resume is checked against it) and before any model loads.
        _, resume_from, notes = admit(config, probe())
        run_dir = prepare_run_dir(config)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _record_refusal(args.config, exc)
        return 2
    hide_unused_bitsandbytes(config)
    resumed = {"resumed_from": checkpoint_step(resume_from)} if resume_from else {}
    if inside_launch():
        join_launch(run_dir)
    if writes_the_run(config):
        _capture_output(run_dir)
    if loaded.from_llamafactory and not launched_by_us():
        print(loaded.report(where), flush=True)
    if needs_relaunch(config):
        settle()  # this process only waits on torchrun's, for as long as the run trains
        return relaunch(config, run_dir, run_dir / CONFIG_FILE, **resumed)
    # Library deprecation chatter would bury the lines a person reads in the log tail.
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # CPU-kernel notices, irrelevant here
    events = EventLog(run_dir) if is_main_rank() else NullEventLog()
    speaks_for_run = is_main_rank() and not launched_by_us()  # else our launcher wrote start and writes abort
    if speaks_for_run:
        events.emit(
            "start",
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            pid=os.getpid(),
            config=config.to_dict(),
            **resumed,
        )
    _install_abort_handler(events, reports_abort=speaks_for_run)
    print(f"run directory: {run_dir}", flush=True)
    for note in notes:
        print(note, flush=True)
    if resume_from:
        print(f"resuming from {resume_from.name}", flush=True)
    try:
        metrics = run(config, events, run_dir, resume_from)
    except TuneForgeError as exc:
        events.emit("end", status="failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - any crash must still end the run visibly
        traceback.print_exc()
        message = (
            disk_full_message(exc, run_dir)
            or out_of_memory_message(exc, config)
            or lost_peer_message(exc, config)
            or f"{type(exc).__name__}: {one_line(str(exc))} (details in train.log)"
        )
        events.emit("end", status="failed", error=message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 1
    events.emit("end", status="completed", **metrics)
    print("completed: " + json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    hold()  # until run() has imported the job's libraries (the job server: until its warm imports are done)
    sys.exit(main())
