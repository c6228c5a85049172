"""Benchmark: regional compilation (`torch_compile: true`) against the eager job, whole job, compile included.

Runs the default demo run (demo_identity, the embedded SmolLM2-135M, LoRA r8, batch 4, fp32 on a CPU
without native bf16) through `python -m backend.train` three times, one after another:
  eager      torch_compile off (the default);
  cold       torch_compile on, with an empty inductor cache for the model (a first run);
  warm       torch_compile on again, with the cache the cold run filled (every later run of the model).

On a shared machine wall time measures the other work, so each job's CPU time is measured too: its own
and its descendants' (inductor's compile workers, g++), sampled as each step's log event appears. There,
run the jobs on one thread (--threads 1): two OpenMP threads spin-wait for a descheduled peer, which
inflates CPU time as much as wall time. For
each run: wall and CPU seconds of the whole job, CPU seconds up to the first step (start-up plus, when
compiling, the compile of the training graphs), the steady step's CPU seconds (median over steps after
STEADY_FROM, evaluations left out), peak RSS, losses, and dynamo/inductor's counters from metrics.json.

A longer run is extrapolated, not run: cpu(N) = cpu - steps × steady + N × steady, for N = --extrapolate
(1,000 by default), and the step count from which compiling pays back.

    python bench/compile_speed.py [--max-steps N] [--extrapolate 1000]     (prints one JSON object)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STEADY_FROM = 3


class CpuMeter:
    """CPU seconds of a process and every descendant it has had (an exited one keeps its last reading)."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.seen: dict[int, float] = {}

    def read(self) -> float:
        import psutil

        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return sum(self.seen.values())
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            self.seen[process.pid] = times.user + times.system
        return sum(self.seen.values())


def run(workdir: Path, name: str, compile_: bool, max_steps: int, env: dict) -> dict:
    from backend.events import read_events

    run_dir = workdir / name
    config = workdir / f"{name}.yaml"
    config.write_text(f"output_dir: {run_dir}\nmax_steps: {max_steps}\ntorch_compile: {str(compile_).lower()}\n")
    began = time.perf_counter()
    command = [sys.executable, "-m", "backend.train", "--config", str(config)]
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    meter = CpuMeter(job.pid)
    at_step: dict[int, float] = {}  # step -> the job's CPU seconds when its log event was seen
    evals: set[int] = set()
    while True:
        pid, status, usage = os.wait4(job.pid, os.WNOHANG)
        if pid:
            break
        cpu = meter.read()
        for event in read_events(run_dir):
            if event["type"] == "log" and event["step"] not in at_step:
                at_step[event["step"]] = cpu
            elif event["type"] == "eval":
                evals.add(event.get("step"))
        time.sleep(0.2)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{name}: the job exited with {os.waitstatus_to_exitcode(status)}; see {run_dir}/train.log")
    cpu_total = max(meter.read(), usage.ru_utime + usage.ru_stime)
    events = read_events(run_dir)
    end = events[-1]
    if end.get("status") != "completed":
        raise SystemExit(f"{name} did not complete: {end}")
    steps = sorted(at_step)
    gaps = [
        at_step[b] - at_step[a]
        for a, b in zip(steps, steps[1:], strict=False)
        if b == a + 1 and a >= STEADY_FROM and a not in evals and b not in evals
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu_total, 1),
        "steps": end["global_step"],
        "cpu_s_to_first_step": round(at_step[steps[0]], 1),
        "steady_step_cpu_s": round(statistics.median(gaps), 3) if gaps else None,
        "steady_steps_measured": len(gaps),
        "train_loss": round(end["train_loss"], 4),
        "eval_loss": round(end["eval_loss"], 4) if end.get("eval_loss") is not None else None,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        **({"compile": metrics["compile"]} if "compile" in metrics else {}),
    }


def compare(eager: dict, compiled: dict, longer: int) -> None:
    """Speed-ups of a compiled run over the eager one, and both extrapolated to `longer` steps."""
    compiled["whole_job_cpu_speedup"] = round(eager["cpu_s"] / compiled["cpu_s"], 3)
    if not (eager["steady_step_cpu_s"] and compiled["steady_step_cpu_s"]):
        return
    compiled["steady_step_speedup"] = round(eager["steady_step_cpu_s"] / compiled["steady_step_cpu_s"], 3)
    fixed = {r is eager: r["cpu_s"] - r["steps"] * r["steady_step_cpu_s"] for r in (eager, compiled)}
    compiled["extra_fixed_cpu_s"] = round(fixed[False] - fixed[True], 1)
    saved = eager["steady_step_cpu_s"] - compiled["steady_step_cpu_s"]
    compiled["pays_back_after_steps"] = round(compiled["extra_fixed_cpu_s"] / saved) if saved > 0 else None
    for r in (eager, compiled):
        r[f"cpu_s_at_{longer}_steps"] = round(r["cpu_s"] + (longer - r["steps"]) * r["steady_step_cpu_s"], 1)
    compiled[f"speedup_at_{longer}_steps"] = round(
        eager[f"cpu_s_at_{longer}_steps"] / compiled[f"cpu_s_at_{longer}_steps"], 3
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="regional compilation against eager, whole job")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the full demo run (3 epochs)")
    parser.add_argument("--extrapolate", type=int, default=1000, help="steps of the longer run to extrapolate")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS for the jobs (0: torch's default). On a busy machine use 1: torch's OpenMP threads "
        "spin while they wait for a descheduled peer, and that waiting is counted as CPU time",
    )
    parser.add_argument("--runs", default="eager,cold,warm", help="which of eager, cold, warm to run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.models.sources import default_model_dir
    from backend.training.regional_compile import compile_cache_dir
    from bench.train_speed import cpu_name

    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    if "cold" in names:
        shutil.rmtree(compile_cache_dir(default_model_dir(progress=lambda msg: None)), ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-compile-"))
    load = [round(os.getloadavg()[0], 2)]
    result = {}
    for name in names:
        result[name] = run(workdir, name, name != "eager", args.max_steps, env)
        load.append(round(os.getloadavg()[0], 2))
        print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)
    for name in ("cold", "warm"):
        if name in result and "eager" in result:
            compare(result["eager"], result[name], args.extrapolate)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} logical cores, {cpu_name()}"
    result["load_average_between_runs"] = load
    result["threads"] = args.threads or "default"
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
