"""Speed as the user reads it. MFU that cannot lie: the matmul peak is measured once per machine and precision,
kept in the cache, and every job's MFU is measured against it and capped at 100%. Beside it, the precision
the run trains in (what auto chose), in the status event, train_status and the progress line."""

from __future__ import annotations

import json
import time

import pytest
from transformers import TrainerState, TrainingArguments

from backend.events import EventLog, read_events
from backend.training import matmul_peak
from backend.training.callbacks import EventsCallback
from backend.training.matmul_peak import cached_peak_gflops, machine_key, peak_path, read_peaks, store_peak


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def this_machine(dtype: str) -> str:
    import torch

    return machine_key("cpu", dtype, torch.get_num_threads())


def test_a_cached_peak_is_used_as_it_is_without_measuring_again(own_cache):
    # A peak no CPU would measure (1 GFLOP/s) shows that the stored number, not a new trial, is the answer.
    store_peak(this_machine("fp32"), 1.0, [1.0])
    assert cached_peak_gflops("cpu", "fp32") == 1.0
    assert peak_path().parent == own_cache


def test_the_first_ask_measures_the_best_of_several_trials_once_per_precision(own_cache, monkeypatch):
    monkeypatch.setattr(matmul_peak, "CPU_SIZE", 256)  # the same measurement, small enough for a test
    peak = cached_peak_gflops("cpu", "fp32")
    entry = read_peaks()[this_machine("fp32")]
    assert len(entry["trials"]) == matmul_peak.TRIALS and entry["gflops"] == max(entry["trials"])
    assert peak == pytest.approx(entry["gflops"], abs=0.06) and peak > 0
    # Another machine's entry (other CPU flags) or another precision is not this one's.
    assert this_machine("bf16") not in read_peaks()
    assert "flags=" in this_machine("fp32") and this_machine("fp32") != this_machine("bf16")


def test_a_peak_measured_on_a_busy_machine_is_measured_again_and_only_rises(own_cache, monkeypatch):
    monkeypatch.setattr(matmul_peak, "CPU_SIZE", 128)
    store_peak(this_machine("fp32"), 1.0, [1.0], idle=False)  # lower than any real measurement, just now
    assert cached_peak_gflops("cpu", "fp32") == 1.0  # not measured again at every job of a busy suite
    an_hour_ago = time.time() - 3600
    store_peak(this_machine("fp32"), 1.0, [1.0], idle=False, when=an_hour_ago)
    assert cached_peak_gflops("cpu", "fp32") > 1.0
    store_peak(this_machine("fp32"), 1e6, [1e6], idle=False, when=an_hour_ago)  # higher than any: kept
    assert cached_peak_gflops("cpu", "fp32") == 1e6


def test_a_damaged_cache_file_is_measured_again_not_fatal(own_cache, monkeypatch):
    monkeypatch.setattr(matmul_peak, "CPU_SIZE", 128)
    own_cache.mkdir(parents=True)
    peak_path().write_text("{not json", encoding="utf-8")
    assert cached_peak_gflops("cpu", "fp32") > 0
    assert json.loads(peak_path().read_text())[this_machine("fp32")]["gflops"] > 0


def logged_mfu(tmp_path, flops_per_token: float, peak_gflops: float) -> dict:
    """One log of a step through the events callback: 1,000 tokens in about a second, against peak_gflops."""
    callback = EventsCallback(EventLog(tmp_path), tmp_path, flops_per_token, peak_gflops, precision="bf16")
    args, state = TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerState()
    state.max_steps = 2
    callback.on_train_begin(args, state, None)
    state.global_step, state.num_input_tokens_seen = 1, 1000
    callback.started -= 1.0  # the step took a second
    callback.on_log(args, state, None, logs={"loss": 2.0, "learning_rate": 1e-4})
    return [e for e in read_events(tmp_path) if e["type"] in ("log", "status")]


def test_mfu_is_measured_against_the_cached_peak_and_never_exceeds_100_percent(tmp_path):
    training, log = logged_mfu(tmp_path / "a", flops_per_token=1e8, peak_gflops=200.0)  # ~100 GFLOP/s
    assert training["message"] == "training" and training["precision"] == "bf16"
    assert log["mfu"] == pytest.approx(log["gflops"] / 200.0, abs=0.002) and 0.3 < log["mfu"] < 0.6
    _, over = logged_mfu(tmp_path / "b", flops_per_token=1e8, peak_gflops=20.0)  # a peak measured under load
    assert over["gflops"] > 20.0 and over["mfu"] == 1.0


def test_train_status_and_the_progress_line_show_what_precision_auto_chose_beside_the_speed(tmp_path):
    from backend.runs.run_summary import summarize
    from webui.tab_train import progress_html

    logged_mfu(tmp_path, flops_per_token=1e8, peak_gflops=200.0)
    status = summarize(tmp_path, read_events(tmp_path), alive=True)
    assert (status["precision"], status["attention"]) == ("bf16", None)
    line = progress_html(status)
    assert "<span id='run-precision'>bf16</span>" in line and "MFU" in line
    assert "title='MFU: the matmul arithmetic a training step runs" in line  # what MFU counts, on hover
