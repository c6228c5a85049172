"""Adapters trained elsewhere (LLaMA-Factory's `saves/...`, or any PEFT folder) become runs here.

Importing copies the adapter into `<workspace>/runs/<name>/` with a config naming its base model
and a completed end event, so Chat, Evaluate, Compare and Export treat it like a run of our own.
The original folder is never written to.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from backend.access.confine import refuse_nul
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.models.sources import adapter_base_model, is_adapter_dir, load_tokenizer, resolve_model
from backend.runs.job_manager import JobManager
from backend.runs.run_summary import write_owner

ADAPTER_FILES = re.compile(r".*\.(json|safetensors|jinja|txt|model)$")


def import_adapter(jobs: JobManager, folder: str | Path, name: str = "", owner: str | None = None) -> str:
    """Copy a PEFT adapter folder in as a completed run (owned by `owner`'s login); returns its run id."""
    source = jobs.confinement.tree(Path(str(folder or "").strip()), "adapter folder")
    if not source.is_dir() or not is_adapter_dir(source):
        raise TuneForgeError(f"{source} is not a PEFT adapter folder (it has no adapter_config.json)")
    if not any(source.glob("adapter_model.*")):
        raise TuneForgeError(f"{source} has adapter_config.json but no adapter_model weights")
    settings = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    if settings.get("task_type") not in (None, "CAUSAL_LM"):
        raise TuneForgeError(f"{source}: only causal-LM adapters can be imported (this one is {settings['task_type']})")
    base = adapter_base_model(source)
    jobs.confinement.model(base, "the adapter's base model")
    refuse_nul(name or "", "run name")
    run_id = (name or "").strip() or f"imported-{re.sub(r'[^A-Za-z0-9_.-]+', '-', source.name).strip('-') or 'adapter'}"
    run_dir = jobs.runs_dir / run_id
    if run_dir.resolve().parent != jobs.runs_dir or run_dir.exists():
        raise TuneForgeError(f"run name '{run_id}' is taken or not a plain name; choose another")
    run_dir.mkdir()
    write_owner(run_dir, owner)
    for path in source.iterdir():
        if path.is_file() and ADAPTER_FILES.match(path.name) and path.name != "config.yaml":
            shutil.copy2(path, run_dir / path.name)
    if not (run_dir / "tokenizer_config.json").exists():
        load_tokenizer(resolve_model(base)).save_pretrained(run_dir)  # chat and export need one beside the adapter
    config = TrainConfig.from_dict({"model": base, "method": "lora", "task": "sft", "output_dir": str(run_dir)})
    config.lora_rank = int(settings.get("r", config.lora_rank))
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    events = EventLog(run_dir)
    events.emit("start", world_size=1, pid=None, config=config.to_dict(), imported_from=str(source.resolve()))
    events.emit("end", status="completed")
    return run_id
