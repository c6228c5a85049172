"""A few real training steps to measure speed (the job's half of backend.runs.speed).

`python -m backend.training.speed_trial --config run.yaml` trains CALIBRATION_STEPS steps on the
chosen data, saves nothing, and prints {"tokens_per_s": ...} as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from backend.config import TrainConfig
from backend.cycle_collector import hold, settle
from backend.errors import TuneForgeError
from backend.events import EventLog, read_events
from backend.training.task_recipes import recipe_for

CALIBRATION_STEPS = 6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.training.speed_trial")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_yaml(args.config)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tuneforge-calibrate-") as tmp:
        options = {**config.to_dict(), "max_steps": CALIBRATION_STEPS, "val_size": 0.0, "eval_dataset": ""}
        options.update(save_steps=0, logging_steps=1, output_dir=tmp)
        run_config = TrainConfig.from_dict(options)
        try:
            recipe = recipe_for(run_config, EventLog(tmp), Path(tmp))
            settle()  # as a job does (backend.train.run)
            recipe.setup()
            recipe.train()
        except TuneForgeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        logs = [e for e in read_events(tmp) if e["type"] == "log"]
    # The first step pays for warm-up (allocations, kernel selection); measure from its end.
    first, last = logs[0], logs[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    tokens = last["tokens_seen"] - first["tokens_seen"]
    print(json.dumps({"tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else last["tokens_per_s"]}))
    return 0


if __name__ == "__main__":
    hold()
    sys.exit(main())
