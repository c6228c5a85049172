"""One job on several processes or machines: torchrun starts them, accelerate (inside the Trainer) connects them.

`python -m backend.train --config run.yaml` stays the only command. When the config asks for more
than one process (nproc_per_node × nnodes > 1) and the job is not already one of torchrun's ranks,
it becomes a small launcher (`relaunch`): it writes `start`, runs

    python -m torch.distributed.run --nproc_per_node N --nnodes M --node_rank R
        --master_addr A --master_port P -m backend.train --config <run_dir>/config.yaml

as a child in its own process group, passes SIGTERM on (so Abort ends every rank), writes `end`
when the ranks could not, and exits with torchrun's code. Rank 0 writes everything else: events,
checkpoints, weights, metrics and train.log. Other ranks write their output to
`<run_dir>/ranks/rank-<N>.log` and nothing else.

Only node 0 writes events, so nodes may share the run folder. CPU ranks talk over gloo, GPU
ranks over NCCL. For fsdp and DeepSpeed the strategy's config file is generated into the run
folder and handed to the Trainer. What the machine can run at all is backend.capability's to say.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.config import TrainConfig
from backend.errors import signal_name
from backend.events import EventLog, NullEventLog, end_event, read_events
from backend.runfiles import DEEPSPEED_FILE, FSDP_FILE, JOB_MODULE, RANK_LOG_DIR

LAUNCHED_ENV = "TUNEFORGE_LAUNCHED"  # set for the ranks of our own relaunch: the launcher writes start and abort
# The job manager SIGKILLs the whole group 3 s after SIGTERM; the launcher must have written `end` by then.
ABORT_GRACE_S = 2.0


def world_size(config: TrainConfig) -> int:
    return config.nproc_per_node * config.nnodes


def inside_launch() -> bool:
    """Whether this process is one of torchrun's (or accelerate launch's) ranks."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def is_main_rank() -> bool:
    return rank() == 0


def writes_the_run(config: TrainConfig) -> bool:
    """Rank 0 of the world or, before torchrun starts the ranks, node 0's launcher.

    Every node's launcher runs outside torchrun, so RANK alone would make each of them rank 0: node 1's
    would then write the run's config.yaml (its own node_rank) and train.log over node 0's.
    """
    return is_main_rank() and (inside_launch() or config.node_rank == 0)


def launched_by_us() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def needs_relaunch(config: TrainConfig) -> bool:
    return world_size(config) > 1 and not inside_launch()


# ---- the launcher (the process the job manager started) -----------------------------------
def torchrun_command(config: TrainConfig, config_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", str(config.nproc_per_node),
        "--nnodes", str(config.nnodes),
        "--node_rank", str(config.node_rank),
        "--master_addr", config.master_addr,
        "--master_port", str(config.master_port),
        *(["--rdzv_conf", f"timeout={config.rdzv_timeout}"] if config.nnodes > 1 else []),
        "-m", JOB_MODULE, "--config", str(config_path),
    ]  # fmt: skip


def relaunch(config: TrainConfig, run_dir: Path, config_path: Path, **start_fields) -> int:
    """Run the job's ranks through torchrun and speak for them at the start and at an abort."""
    main_node = config.node_rank == 0
    if not main_node:
        config_path = node_config(config, run_dir)
    events = EventLog(run_dir) if main_node else NullEventLog()
    events.emit("start", world_size=world_size(config), pid=os.getpid(), config=config.to_dict(), **start_fields)
    command = torchrun_command(config, config_path)
    print(f"launching {world_size(config)} processes: {shlex.join(command)}", flush=True)
    if world_size(config) > 1:
        print(f"rank 0 writes this log; the other ranks write {run_dir / RANK_LOG_DIR}/rank-<N>.log", flush=True)
    # No new session: the child stays in the job's process group, which is what Abort signals.
    child = subprocess.Popen(command, env={**os.environ, LAUNCHED_ENV: "1"}, stdin=subprocess.DEVNULL)
    stop: list[int] = []

    def on_stop(signum, frame):
        stop.append(signum)
        try:
            child.send_signal(signal.SIGTERM)  # torchrun passes it to every rank
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    while child.poll() is None and not stop:
        time.sleep(0.2)
    if stop:
        try:
            child.wait(ABORT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()  # ranks die with it (see join_launch)
            child.wait()
        if main_node and end_event(read_events(run_dir)) is None:
            events.emit("end", status="aborted", error="aborted by the user")
        print("aborted", file=sys.stderr, flush=True)
        return 143
    code = child.returncode
    if main_node and end_event(read_events(run_dir)) is None:
        events.emit("end", status="failed", error=unexplained_stop(config, run_dir, code))
    end = end_event(read_events(run_dir)) if main_node else None
    if code and end and end.get("error"):
        # torchrun's own report of the failed rank (a traceback of its agent) follows the rank's line; the
        # run's one line comes last, where a person reads first.
        print(f"error: {end['error']}", file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


def node_config(config: TrainConfig, run_dir: Path) -> Path:
    """The resolved config for this node's ranks, in a file of its own: config.yaml is node 0's, and a
    run folder that is not shared has none on this node."""
    path = run_dir / RANK_LOG_DIR / f"node-{config.node_rank}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(config.to_yaml(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def lost_peer_message(exc: BaseException, config: TrainConfig) -> str | None:
    """One line for a collective that failed because another process or node went away, else None.

    gloo and NCCL raise this on the survivors as soon as a peer's connection closes; a node that dies
    (killed, out of memory, powered off) shows up here and nowhere else on node 0.
    """
    text = str(exc)
    found = _LOST_PEER.search(text)
    if world_size(config) == 1 or not found:
        return None
    peer = _PEER.search(text)
    where = f" at {peer.group(1)}" if peer else ""
    return (
        f"lost contact with a process of this {world_size(config)}-process run{where} ({found.group(0)}): "
        "check that every node still runs, then start the same config on every node with resume_from_checkpoint: last"
    )


_LOST_PEER = re.compile(r"Connection (?:reset|closed) by peer|Broken pipe|NCCL communicator was aborted")
_PEER = re.compile(r"\[([0-9A-Za-z.:\-]+)\]:\d+")


def unexplained_stop(config: TrainConfig, run_dir: Path, code: int) -> str:
    """Why torchrun ended when no rank said; with several nodes and no rank started, the rendezvous never filled."""
    events = read_events(run_dir)
    starts = [i for i, e in enumerate(events) if e["type"] == "start"]
    if config.nnodes > 1 and starts and starts[-1] == len(events) - 1:  # this attempt's ranks said nothing
        return (
            f"the {config.nnodes} nodes did not all meet at {config.master_addr}:{config.master_port} within "
            f"rdzv_timeout={config.rdzv_timeout} s: start the same config with node_rank 1 to {config.nnodes - 1} "
            "on the other machines, and check that they reach that address and port"
        )
    detail = f"code {code}" if code >= 0 else signal_name(code)
    return f"the training processes stopped ({detail}) without reporting why; see train.log and {RANK_LOG_DIR}/"


# ---- inside each rank -------------------------------------------------------------------------
def join_launch(run_dir: Path) -> None:
    """Prepare a rank: die with its launcher, and keep train.log for rank 0's voice alone.

    torchrun starts every rank in a session of its own, out of reach of the signal the job
    manager sends to the job's process group. When the launcher is killed (Abort's SIGKILL after
    its grace period, or an out-of-memory kill), the kernel kills the rank too.
    """
    _die_with_parent()
    if not is_main_rank():
        path = run_dir / RANK_LOG_DIR / f"rank-{rank()}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)  # the file descriptors, not only sys.stdout: C++ (gloo, NCCL) output follows too
        os.dup2(fd, 2)
        os.close(fd)


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: ranks end when torchrun passes SIGTERM on
    if os.getppid() == 1:
        os._exit(143)  # the launcher died before the death signal was armed


def trainer_arguments(config: TrainConfig, run_dir: Path, hardware: dict) -> dict:
    """TrainingArguments for the strategy: the communication backend and generated DeepSpeed/FSDP files."""
    args: dict = {}
    if not hardware["cuda"]:
        # The Trainer runs bf16 (autocast) on a CPU only when told the run is on CPU, and accelerate sets up
        # CPU ranks (MULTI_CPU) only then: without use_cpu each rank would silently train alone.
        args["use_cpu"] = True
        if inside_launch():
            args["ddp_backend"] = "gloo"  # NCCL is GPU-only
    if config.strategy == "fsdp":
        args.update(fsdp=True, fsdp_config=str(_write_json(run_dir / FSDP_FILE, fsdp_settings())))
    elif config.strategy.startswith("deepspeed"):
        stage = 3 if config.strategy == "deepspeed_zero3" else 2
        args["deepspeed"] = str(_write_json(run_dir / DEEPSPEED_FILE, deepspeed_settings(stage)))
    return args


def fsdp_settings() -> dict:
    """FSDP2, wrapping each decoder layer (the model's _no_split_modules); full state dict so weights save as usual."""
    return {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": True,
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": False,
    }


def deepspeed_settings(stage: int) -> dict:
    """ZeRO-2 or -3; 'auto' values are filled in by transformers from the TrainingArguments, so they never disagree."""
    zero: dict = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            # Without this, save_model would write ZeRO shards instead of a model plain transformers loads.
            stage3_gather_16bit_weights_on_model_save=True,
        )
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
    }


def _write_json(path: Path, settings: dict) -> Path:
    # Every rank writes the same bytes; a per-process temp name keeps their renames from colliding.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path
