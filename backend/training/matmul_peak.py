"""The MFU denominator: this machine's matmul peak per precision, measured once and kept in the cache.

A peak measured at every job start reads low whenever other work shares the cores (the browser, the app,
a test), and MFU against it then reads high: a demo run showed 115%. So the peak is measured per
machine, precision and thread count, as the best of several short trials (a trial that another process
slowed loses to one that ran alone), and kept in `matmul-peak.json` beside the model cache
(TUNEFORGE_CACHE). A measurement is marked idle when other processes used under a tenth of the CPUs
meanwhile; once an idle one is stored every later job reads it and measures nothing. Until then a job
measures again (at most every REMEASURE_S, so a busy test suite does not pay it per job) and keeps the
best seen so far, so a peak taken on a busy machine only ever rises.
The machine is named by its CPU model and a hash of its CPU flags (a GPU by its name), so a copied
cache on other hardware measures anew.

MFU counts the matmul FLOPs a training step really runs (backend.training.flops) against this peak,
and is capped at 1.0: a step cannot outrun the largest matmul this machine ran alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time

from backend.files import write_text_atomically
from backend.paths import model_cache_dir
from backend.training.flops import matmul_peak_gflops

PEAK_FILE = "matmul-peak.json"
TRIALS = 5
# A 2048² matmul runs ~0.1 s on a 2-core Zen 3 in fp32: five trials of two cost about 1 s, once per machine.
CPU_SIZE, GPU_SIZE, REPS = 2048, 4096, 2
REMEASURE_S = 600  # how old a peak measured on a busy machine must be before a job measures again


def peak_path():
    return model_cache_dir().parent / PEAK_FILE


def machine_key(device: str, dtype: str, threads: int) -> str:
    """What the peak depends on: the processor, its instruction sets, the precision and the threads torch uses."""
    import torch

    if device.startswith("cuda"):
        processor = torch.cuda.get_device_name(0)
    else:
        processor = _cpu_model()
    flags = hashlib.sha256(_cpu_flags().encode()).hexdigest()[:12]
    return f"{processor}|flags={flags}|{device}|{dtype}|threads={threads}|torch={torch.__version__}"


def cached_peak_gflops(device: str, dtype: str) -> float:
    """The stored peak for this machine and precision; measured (best of TRIALS) and stored on first ask."""
    import torch

    key = machine_key(device, dtype, torch.get_num_threads())
    known = read_peaks().get(key)
    stored = known.get("gflops") if isinstance(known, dict) else None
    stored = float(stored) if isinstance(stored, (int, float)) and stored > 0 else 0.0
    if stored and (known.get("idle") or time.time() - known.get("measured_at", 0) < REMEASURE_S):
        return stored
    size = GPU_SIZE if device.startswith("cuda") else CPU_SIZE
    others = OthersLoad()
    trials = [_trial(device, size, dtype) for _ in range(TRIALS)]
    idle = device.startswith("cuda") or others.share() < IDLE_SHARE
    best = max(max(trials), stored)
    store_peak(key, best, trials, idle=idle)
    return best


# Other processes' share of all CPUs below which a measurement counts as taken at idle.
IDLE_SHARE = 0.1


class OthersLoad:
    """How busy other processes kept the CPUs from now until share() is asked: all CPU time less this process's."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.began = time.perf_counter()
        self.busy, self.own = self._busy(), self._own()

    def share(self) -> float:
        import psutil

        wall = (time.perf_counter() - self.began) * (psutil.cpu_count() or 1)
        others = (self._busy() - self.busy) - (self._own() - self.own)
        return max(0.0, others / wall) if wall > 0 else 0.0

    @staticmethod
    def _busy() -> float:
        import psutil

        times = psutil.cpu_times()
        return times.user + times.system + getattr(times, "nice", 0.0)

    def _own(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system


def _trial(device: str, size: int, dtype: str) -> float:
    # matmul_peak_gflops caches per arguments within a process; its unwrapped body measures afresh each time.
    return matmul_peak_gflops.__wrapped__(device, n=size, reps=REPS, dtype=dtype)


def read_peaks() -> dict:
    try:
        peaks = json.loads(peak_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: measuring again costs two seconds
        return {}
    return peaks if isinstance(peaks, dict) else {}


def store_peak(
    key: str, gflops: float, trials: list[float] | None = None, idle: bool = True, when: float | None = None
) -> None:
    """Record a peak under key; another process's entries written meanwhile are kept."""
    from filelock import FileLock

    path = peak_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        peaks = read_peaks()
        peaks[key] = {
            "gflops": round(gflops, 1),
            "idle": idle,
            "trials": [round(t, 1) for t in trials or []],
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            "measured_at": when or time.time(),
        }
        write_text_atomically(path, json.dumps(peaks, indent=1))


def utilisation(gflops: float | None, peak_gflops: float | None) -> float | None:
    """MFU: achieved over peak, capped at 1.0 (a reading above it means the peak was measured under load)."""
    if not gflops or not peak_gflops:
        return None
    return round(min(1.0, gflops / peak_gflops), 3)


def _cpu_model() -> str:
    """The model name with its family and model numbers: a virtual machine may name every EPYC alike."""
    wanted = ("model name", "cpu family", "model", "hardware", "cpu model")
    seen: dict[str, str] = {}
    for line in _cpuinfo().splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in wanted and name not in seen:
            seen[name] = value.strip()
    return " ".join(seen[name] for name in wanted if seen.get(name)) or platform.processor() or platform.machine()


def _cpu_flags() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            return " ".join(sorted(line.split(":", 1)[1].split()))
    return platform.machine()


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""
