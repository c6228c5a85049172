"""Exporting a finished run: a merged full model, the adapter alone, or a GGUF file, as a folder, a zip or a hub repo.

Everything lands in `<run dir>/export/<kind>/` (a GGUF in `export/gguf-<type>/`, beside an Ollama
Modelfile), written into a staging folder first and renamed
into place, so a crash or a full disk mid-export never leaves a half model where a whole one
was. Each export carries a model card (README.md) with the base model, dataset, method,
hyperparameters, metrics and the loss curve (loss_curve.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from backend.capability import saved_quantization_bits
from backend.config import options_where
from backend.errors import TuneForgeError
from backend.events import loss_points, read_events, timeline
from backend.models.sources import gguf_origin, is_adapter_dir, load_causal_lm, load_tokenizer, resolve_model
from backend.models.vision import is_vision_spec, load_processor, load_vision_model
from backend.paths import model_cache_dir
from backend.runfiles import METRICS_FILE
from backend.runs.job_manager import JobManager
from backend.serving.gguf_bundle import base_gguf, fill_adapter_folder, fill_gguf_folder, gguf_card_lines
from backend.serving.gguf_export import GGUF_TYPES, check_architecture
from backend.serving.gguf_vision import check_vision_gguf

KINDS = ("merged", "adapter", "gguf", "gguf_adapter")
GGUF_KINDS = ("gguf", "gguf_adapter")
SHARD_SIZE = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB)$", re.IGNORECASE)
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
# The hyperparameters a model card lists (backend.config marks them card); paths and UI-only switches would only
# confuse a reader.
CARD_KEYS = options_where("card")


def _quiet(line: str) -> None:
    """No progress display."""


class Exporter:
    def __init__(self, jobs: JobManager):
        self.jobs = jobs

    def export(
        self, run_id: str, kind: str = "merged", max_shard_size: str = "2GB", gguf_type: str = "q8_0", say=_quiet
    ) -> Path:
        """Write the run's model as `kind` into <run dir>/export/<kind>/ and return that folder.

        say: called with a line as each stage starts, for a progress display."""
        if kind not in KINDS:
            raise TuneForgeError(f"export kind {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "gguf":
            return self.export_gguf(run_id, gguf_type, say)
        if kind == "gguf_adapter":
            return self.export_gguf_adapter(run_id, say)
        max_shard_size = str(max_shard_size).strip().upper()
        if not SHARD_SIZE.match(max_shard_size):
            raise TuneForgeError(f"max_shard_size {max_shard_size!r}: use a size like 500MB or 2GB")
        status = self.jobs.status(run_id)
        if status["status"] != "completed":
            raise TuneForgeError(f"run '{run_id}' is {status['status']}; only completed runs can be exported")
        run_dir = Path(status["run_dir"])
        config = self.jobs.config(run_id)
        if kind == "adapter" and not is_adapter_dir(run_dir):
            raise TuneForgeError(f"run '{run_id}' trained every weight (method full); export it as merged")

        def fill(staging: Path) -> None:
            say("copying the adapter" if kind == "adapter" else "merging the model")
            if kind == "adapter":
                _copy_adapter(run_dir, staging)
            else:
                _save_merged(run_dir, config, staging, max_shard_size)
            write_model_card(staging, run_dir, config, kind)

        return staged(run_dir / "export" / kind, fill)

    def export_gguf(self, run_id: str, gguf_type: str = "q8_0", say=_quiet) -> Path:
        """The merged model as one GGUF file, made and checked by llama.cpp, with an Ollama Modelfile and a card.

        In <run dir>/export/gguf-<type>/, so each type is kept beside the others."""
        if gguf_type not in GGUF_TYPES:
            raise TuneForgeError(f"gguf_type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
        status, config = self.jobs.status(run_id), self.jobs.config(run_id)
        run_dir = Path(status["run_dir"])
        if status["status"] == "completed":  # else export() below says why not
            self._check_gguf(run_dir, config)
        merged = self.export(run_id, "merged", say=say)
        rows = self._held_out(config)

        def fill(staging: Path) -> None:
            check = fill_gguf_folder(staging, merged, run_id, config, gguf_type, say, rows, _base_dir(config))
            write_model_card(staging, run_dir, config, "gguf", extra=gguf_card_lines(check))

        return staged(merged.parent / f"gguf-{gguf_type}", fill)

    def export_gguf_adapter(self, run_id: str, say=_quiet) -> Path:
        """The adapter alone as a GGUF LoRA, checked on the base model's GGUF in llama.cpp, with a Modelfile
        FROM the base GGUF and ADAPTER the LoRA. In <run dir>/export/gguf_adapter/."""
        status, config = self.jobs.status(run_id), self.jobs.config(run_id)
        run_dir = Path(status["run_dir"])
        if status["status"] == "completed":
            if not is_adapter_dir(run_dir):
                raise TuneForgeError(f"run '{run_id}' trained every weight (method full); export it as gguf")
            self._check_gguf(run_dir, config, adapter=True)
        merged = self.export(run_id, "merged", say=say)
        base_dir = _base_dir(config)
        if base_dir is None:
            raise TuneForgeError("a GGUF LoRA needs the base model's folder on this machine")
        base = base_gguf(base_dir, model_cache_dir() / "gguf", say)

        def fill(staging: Path) -> None:
            check = fill_adapter_folder(staging, run_dir, merged, base_dir, run_id, base, say)
            write_model_card(staging, run_dir, config, "gguf", extra=gguf_card_lines(check))

        return staged(merged.parent / "gguf_adapter", fill)

    @staticmethod
    def _check_gguf(run_dir: Path, config: dict, adapter: bool = False) -> None:
        """Refused before minutes of merging: a classifier, an architecture llama.cpp cannot convert."""
        if config.get("task") == "classification":
            raise TuneForgeError("GGUF export is for generation models; a classifier exports as merged")
        if is_vision_spec(config.get("model", "")):
            if adapter:
                raise TuneForgeError(
                    "a GGUF LoRA of a vision-language model is not built; export it as gguf (its language "
                    "model plus the mmproj file), merged or adapter"
                )
            check_vision_gguf(_model_config(run_dir, config))
            return
        check_architecture(_model_config(run_dir, config))

    def _held_out(self, config: dict) -> list[dict]:
        """The run's validation rows, for perplexity; none when it had none or its data is gone."""
        from backend.config import TrainConfig
        from backend.data import DataOptions, load_splits

        try:
            options = DataOptions.from_config(TrainConfig.from_dict(config), self.jobs.workspace)
            return list(load_splits(options).validation)
        except (TuneForgeError, OSError, ValueError):
            return []

    def note(self, run_id: str, kind: str = "merged") -> str:
        """What the export did that a user should know (a quantized base merged dequantized); '' if nothing."""
        return merge_note(self.jobs.config(run_id), kind)

    def zip(
        self, run_id: str, kind: str = "merged", max_shard_size: str = "2GB", gguf_type: str = "q8_0", say=_quiet
    ) -> Path:
        """The export as one zip file beside its folder (exported first if needed)."""
        folder = self.export(run_id, kind, max_shard_size, gguf_type, say)
        say("zipping")
        archive = folder.parent / f"{run_id}-{folder.name}.zip"
        partial = archive.with_suffix(".zip.partial")
        # Weights barely compress, and deflating gigabytes of them takes minutes: a GGUF is stored as it is.
        method = zipfile.ZIP_STORED if kind in GGUF_KINDS else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(partial, "w", compression=method) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(f"{run_id}-{folder.name}") / path.relative_to(folder))
        os.replace(partial, archive)
        return archive

    def push(
        self, run_id: str, repo_id: str, token: str, private: bool = True, kind: str = "merged", gguf_type: str = "q8_0"
    ) -> str:
        """Upload the export to the Hugging Face Hub; returns the repo URL. Offline, one line says why."""
        repo_id, token = str(repo_id or "").strip(), str(token or "").strip()
        if not HUB_REPO.match(repo_id):
            raise TuneForgeError(f"repo id {repo_id!r}: use owner/name, e.g. alice/my-model")
        if not token:
            raise TuneForgeError("a Hugging Face access token (write scope) is needed to push")
        folder = self.export(run_id, kind, gguf_type=gguf_type)
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        try:
            url = api.create_repo(repo_id, private=bool(private), exist_ok=True)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=f"TuneForge run {run_id}")
        except Exception as exc:  # noqa: BLE001 - network, auth and offline errors all become one line
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TuneForgeError(
                f"push to {repo_id} failed: {reason}. The local export in {folder} is intact"
            ) from None
        return str(url)


def _copy_adapter(run_dir: Path, out: Path) -> None:
    """The adapter, tokenizer, chat template and metrics: what a user needs beside the base model."""
    for path in run_dir.iterdir():
        if path.is_file() and path.suffix in (".json", ".safetensors", ".jinja", ".txt", ".model"):
            shutil.copy2(path, out / path.name)


def _save_merged(run_dir: Path, config: dict, out: Path, max_shard_size: str) -> None:
    """The base model with the adapter folded in (or the full fine-tune), as sharded safetensors."""
    task = config.get("task", "sft")
    if task == "classification":
        from backend.serving.chat import load_classifier

        model, tokenizer = load_classifier(run_dir, config)
    elif is_vision_spec(config.get("model", "")):
        model, tokenizer = _vision_run(run_dir, config)
    else:
        trusted = bool(config.get("trust_remote_code", False))
        tokenizer = load_tokenizer(str(run_dir), config.get("template", "chatml"), trusted)
        if is_adapter_dir(run_dir):
            from peft import PeftModel

            # Unquantized even for a QLoRA run: an adapter cannot be folded into 4- or 8-bit weights, so the
            # base is loaded in its stored precision (dequantized) and the merge is a full-precision model.
            base = load_causal_lm(resolve_model(config.get("model", "default")), trust_remote_code=trusted)
            model = PeftModel.from_pretrained(base, str(run_dir))
        else:
            model = load_causal_lm(str(run_dir), trust_remote_code=trusted)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)  # with the chat template, so chat UIs format prompts as in training
    if (run_dir / "labels.json").exists():
        shutil.copy2(run_dir / "labels.json", out / "labels.json")


def _vision_run(run_dir: Path, config: dict):
    """A vision-language run's model (adapter applied) and its processor, which saves the tokenizer too."""
    trusted = bool(config.get("trust_remote_code", False))
    processor = load_processor(run_dir, trusted)
    if not is_adapter_dir(run_dir):
        return load_vision_model(run_dir, trust_remote_code=trusted), processor
    from peft import PeftModel

    base = load_vision_model(resolve_model(config.get("model", "")), trust_remote_code=trusted)
    return PeftModel.from_pretrained(base, str(run_dir)), processor


def merge_note(config: dict, kind: str) -> str:
    """What a merged export of a quantized run did beyond the merge, for its message and model card; '' if nothing."""
    bits = saved_quantization_bits(config) if config.get("task") != "classification" else 0
    if kind != "merged" or not bits:
        return ""
    return (
        f"The adapter was trained on a {bits}-bit base. A {bits}-bit weight cannot take the adapter in, so the "
        "merge loaded the base dequantized, in its stored precision, and folded the adapter into that: the "
        f"merged model is full precision, not {bits}-bit, and its answers can differ slightly from the "
        f"{bits}-bit base with the adapter."
    )


def zipped_folder(archive: Path, run_id: str) -> Path:
    """The export folder that Exporter.zip made `archive` of (<run>-<folder>.zip beside <folder>)."""
    return archive.parent / archive.stem.removeprefix(f"{run_id}-")


def staged(target: Path, fill) -> Path:
    """fill(staging folder), then the folder renamed to target: a failure never leaves half an export there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(staging)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TuneForgeError(f"export failed while writing {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _base_dir(config: dict) -> Path | None:
    """The folder of the model the run trained from, when it is on this machine."""
    try:
        folder = Path(resolve_model(config.get("model", "default"), progress=_quiet))
    except TuneForgeError:
        return None
    return folder if folder.is_dir() else None


def _model_config(run_dir: Path, config: dict) -> dict:
    """The config.json of the model a merge produces: the run's own (full) or its base's (an adapter)."""
    folder = run_dir if (run_dir / "config.json").exists() else Path(resolve_model(config.get("model", "default")))
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a hub id not yet downloaded: the converter checks the merged folder's own


def write_model_card(out: Path, run_dir: Path, config: dict, kind: str, extra: list[str] | None = None) -> None:
    metrics = _read_metrics(run_dir)
    note = merge_note(config, kind)
    has_curve = draw_loss_curve(timeline(read_events(run_dir)), out / "loss_curve.png")
    base = config.get("model", "default")
    origin = gguf_origin(base)
    if origin:
        base = origin["gguf_file"]  # the file the user gave; its converted copy lives only in this machine's cache
    if base == "default":
        base = (
            "HuggingFaceTB/SmolLM2-135M-Instruct"
            if config.get("task") != "classification"
            else ("sentence-transformers/all-MiniLM-L6-v2")
        )
    library = {"adapter": "peft", "gguf": "gguf"}.get(kind, "transformers")
    lines = [
        "---",
        f"base_model: {base}",
        f"library_name: {library}",
        "tags:",
        "- tuneforge",
        f"- {config.get('method', 'lora')}",
        "---",
        "",
        f"# {run_dir.name}",
        "",
        f"Fine-tuned with TuneForge from **{base}** on **{config.get('dataset', '?')}** "
        f"({config.get('method', '?')}, task {config.get('task', '?')}).",
        "",
        *([gguf_note(origin), ""] if origin else []),
        "This folder is "
        + {
            "adapter": "a PEFT adapter: load it with `peft.AutoPeftModelForCausalLM.from_pretrained`.",
            "gguf": "the merged model as one GGUF file, for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile.",
        }.get(kind, "a full model: load it with `transformers.AutoModelForCausalLM.from_pretrained`."),
        "",
        *([*extra, ""] if extra else []),
        *([note, ""] if note else []),
        "## Hyperparameters",
        "",
        "| option | value |",
        "|---|---|",
        *(f"| {key} | {config[key]} |" for key in CARD_KEYS if key in config),
        "",
        "## Metrics",
        "",
    ]
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines += (
        ["| metric | value |", "|---|---|", *(f"| {k} | {v:g} |" for k, v in shown.items())]
        if shown
        else ["No metrics were recorded."]
    )
    if has_curve:
        lines += ["", "## Loss curve", "", "![loss curve](loss_curve.png)"]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def gguf_note(origin: dict) -> str:
    """The model card's line on a base given as a .gguf file: which file, and what became of it."""
    digest = f" (sha256 `{origin['sha256']}`)" if origin.get("sha256") else ""
    return (
        f"The base model is the GGUF file **{origin['gguf_file']}**{digest}, converted by TuneForge to a "
        "transformers model (quantized weights dequantized to float) before training."
    )


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def draw_loss_curve(events: list[dict], path: Path) -> bool:
    """Train and eval loss as a PNG for the model card; False when the run logged no loss."""
    train, evals = loss_points(events)
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.add_subplot()
    for label, points, color, marker in (("train", train, "#d97706", None), ("eval", evals, "#2563eb", "o")):
        if points:
            axes.plot(*zip(*points, strict=True), label=label, color=color, marker=marker)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return True


def gguf_verification(folder: Path) -> dict[str, Any]:
    """What llama.cpp measured of a GGUF export (its verification.json): agree (greedy tokens agreeing with
    the merged model) of tokens, ppl and ppl_f16 (perplexity of the file and of f16), size_bytes."""
    try:
        check = json.loads((folder / "verification.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    keys = ("agree", "tokens", "tokens_match", "ppl", "ppl_f16", "ppl_text", "size_bytes")
    return {key: check[key] for key in keys if key in check}
