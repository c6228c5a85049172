"""The Trainer callbacks every recipe adds: its logs become events and readable lines, its saves checkpoint events.

They are the job's only voice: the app never reaches into a running trainer, it reads what these write
into events.jsonl and train.log. A non-finite loss stops the run here, with the one line a user can act on.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.training.distributed import rank
from backend.training.matmul_peak import utilisation

# Metrics some trainers log beside the loss (TRL's preference trainers), passed on into log events.
TRAINER_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl", "nll_loss")


def eta_seconds(elapsed_s: float, step: int, max_steps: int) -> float | None:
    if step <= 0 or max_steps <= 0:
        return None
    return round(max(0.0, elapsed_s / step * (max_steps - step)), 1)


def peak_memory_mb() -> float:
    """The most this process has held so far: GPU memory allocated on CUDA, resident memory on a CPU."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def finite_or_none(value) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


class EventsCallback(TrainerCallback):
    """Trainer logs → events.jsonl, and a one-line summary per log into train.log."""

    def __init__(
        self,
        events: EventLog,
        run_dir: Path,
        flops_per_token: float = 0.0,
        peak_gflops: float = 0.0,
        attention: str | None = None,
        metric_names: dict[str, str] | None = None,
        eval_names: dict[str, str] | None = None,
        precision: str | None = None,
    ):
        self.events, self.run_dir = events, run_dir
        # Eval log keys whose event name is not the key without its eval_ prefix (an rm run's eval_accuracy).
        self.eval_names = eval_names or {}
        # The trainer's log keys passed on into log events, under the events' names.
        self.metric_names = metric_names or {key: key for key in TRAINER_METRICS}
        self.flops_per_token, self.peak_gflops, self.attention = flops_per_token, peak_gflops, attention
        self.precision = precision  # what precision auto (or the config) resolved to: bf16 | fp16 | fp32
        self.started = time.time()
        self.first_step = self.first_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()
        # A resumed run starts from a checkpoint's step and token count; speed counts this attempt only.
        self.first_step, self.first_tokens = state.global_step, state.num_input_tokens_seen
        self.events.emit(
            "status", message="training", max_steps=state.max_steps, attention=self.attention, precision=self.precision
        )
        if self.precision:
            print(f"precision: {self.precision}", flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        elapsed = time.time() - self.started
        if "loss" in logs and finite_or_none(logs["loss"]) is None:
            # Training cannot recover from a non-finite loss; stop at once rather than waste the run.
            raise TuneForgeError(
                f"the loss became {logs['loss']} at step {state.global_step}; lower learning_rate "
                f"(now {args.learning_rate:g}) or set max_grad_norm"
            )
        if "loss" in logs:
            # TRL's trainers count tokens themselves (num_tokens); the Trainer's count stays 0 for them.
            tokens = state.num_input_tokens_seen or int(logs.get("num_tokens") or 0)
            done = state.global_step - self.first_step
            speed = (tokens - self.first_tokens) / elapsed if elapsed > 0 else None
            gflops = speed * self.flops_per_token / 1e9 if speed and self.flops_per_token else None
            event = self.events.emit(
                "log",
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=round(state.epoch or 0.0, 4),
                loss=finite_or_none(logs["loss"]),
                learning_rate=logs.get("learning_rate"),
                grad_norm=finite_or_none(logs.get("grad_norm")),
                elapsed_s=round(elapsed, 2),
                tokens_seen=tokens,
                tokens_per_s=round(speed, 1) if speed else None,
                gflops=round(gflops, 1) if gflops else None,
                flops_per_token=round(self.flops_per_token),
                peak_memory_mb=peak_memory_mb(),
                mfu=utilisation(gflops, self.peak_gflops),
                eta_s=eta_seconds(elapsed, done, state.max_steps - state.global_step + done),
                **{self.metric_names[k]: finite_or_none(v) for k, v in logs.items() if k in self.metric_names},
            )
            mfu = f" (MFU {event['mfu']:.0%})" if event["mfu"] else ""
            speed = f" | {event['tokens_per_s']} tok/s{mfu}" if event["tokens_per_s"] else ""
            print(
                f"step {event['step']}/{event['max_steps']} | epoch {event['epoch']:.2f} | loss {logs['loss']:.4f} "
                f"| lr {event['learning_rate']:.2e}{speed} | {elapsed:.1f}s",
                flush=True,
            )
        if "eval_loss" in logs:
            scores = {
                self.eval_names.get(k, k.removeprefix("eval_")): finite_or_none(v)
                for k, v in logs.items()
                if k.startswith("eval_")
            }
            scores = {k: v for k, v in scores.items() if k not in ("runtime", "samples_per_second", "steps_per_second")}
            self.events.emit("eval", step=state.global_step, **{"eval_loss": scores.pop("loss"), **scores})
            shown = " | ".join(f"{k} {v:.4f}" for k, v in scores.items() if v is not None)
            print(
                f"step {state.global_step} | eval_loss {logs['eval_loss']:.4f}" + (f" | {shown}" if shown else ""),
                flush=True,
            )

    def on_save(self, args, state, control, **kwargs):
        path = self.run_dir / f"checkpoint-{state.global_step}"
        self.events.emit("checkpoint", step=state.global_step, path=str(path))


class RankReport(TrainerCallback):
    """Each rank's own account in its own log: the steps it took and a checksum of its trainable weights.

    The ranks read different shards of the data, so equal checksums show that gradients were
    averaged across them at every step, as data parallelism must.
    """

    def __init__(self, model):
        self.model, self.steps = model, 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_train_end(self, args, state, control, **kwargs):
        checksum = sum(p.detach().double().sum().item() for p in self.model.parameters() if p.requires_grad)
        print(
            f"rank {rank()} of {args.world_size}: trained {self.steps} steps; "
            f"trainable weights checksum {checksum:.10e}",
            flush=True,
        )
