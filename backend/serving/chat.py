"""The chat engine: talk to the base model or any finished run, streaming the reply.

Targets are "base" (the embedded default), "base:<model>" (any other model spec), a run id, or
"gguf:<file>" (a .gguf file, an exported one or any other inside the allowed folders), which runs on
llama.cpp's llama-server (loopback, a subprocess) instead of transformers: on a CPU it answers several
times faster. One model is kept loaded at a time: on a small machine two would not fit beside a job.
torch and transformers are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.access.limits import CHAT, CHAT_DEFAULTS
from backend.capability import Precision, hardware_summary, saved_quantization_bits
from backend.errors import TuneForgeError
from backend.models.sources import is_adapter_dir, load_causal_lm, load_tokenizer, resolve_model
from backend.models.vision import is_vision_folder, is_vision_spec, load_processor, load_vision_model
from backend.runs.job_manager import JobManager
from backend.templates import cut_at_turn_end

BASE = "base"
GGUF = "gguf:"


def normalize_history(history: list[Any] | None) -> list[dict[str, str]]:
    """Chat history from a UI or API client as plain {role, content} text messages."""
    messages = []
    for item in history or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:  # [user, assistant] pairs
            messages += [
                {"role": "user", "content": str(item[0])},
                {"role": "assistant", "content": str(item[1] or "")},
            ]
            continue
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant", "system"):
            raise TuneForgeError("history must be a list of {role, content} messages")
        content = item.get("content")
        if isinstance(content, list):  # Gradio's content blocks, or OpenAI's parts: text only
            if not all(isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text", ""), str)
                       for p in content):  # fmt: skip
                raise TuneForgeError("history: a message's content parts must be text ({type: text, text: ...})")
            content = "".join(part.get("text", "") for part in content)
        elif content is not None and not isinstance(content, str):
            raise TuneForgeError("history: a message's content must be text or a list of text parts")
        messages.append({"role": item["role"], "content": content or ""})
    return messages


def check_settings(temperature: Any, top_p: Any, max_new_tokens: Any) -> None:
    """The generation settings within the Chat tab's bounds (backend.access.limits.CHAT), for the UI and the API."""
    for name, value in (("temperature", temperature), ("top_p", top_p), ("max_new_tokens", max_new_tokens)):
        low, high = CHAT[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        if not number or not low <= value <= high or (name == "max_new_tokens" and value != int(value)):
            raise TuneForgeError(f"{name} must be a number from {low} to {high}, got {str(value)[:40]}")


class ChatEngine:
    def __init__(self, jobs: JobManager):
        self.jobs = jobs
        self._lock = threading.Lock()
        self._loaded: tuple[str, Any, Any] | None = None  # (target, model, tokenizer)
        self._processor = None  # the loaded model's image processor, when it reads images
        self._server = None  # the llama-server of a gguf: target, kept while that target is chosen
        atexit.register(self.unload_gguf)

    @property
    def image_processor(self):
        """The loaded model's processor when it reads images (inside model_for), else None."""
        return self._processor

    def targets(self) -> list[str]:
        """Chat partners: the base model, every completed generation run, and every GGUF exported from one."""
        scorers = ("classification", "rm")
        runs = [r for r in self.jobs.finished_runs() if self.jobs.config(r).get("task") not in scorers]
        exported = [
            f"{GGUF}{path}"
            for run_id in runs
            for path in sorted((self.jobs.run_dir(run_id) / "export").glob("gguf-*/*.gguf"))
        ]
        return [BASE, *runs, *exported]

    def reward_models(self) -> list[str]:
        """The completed reward-model (task rm) runs, which score a reply rather than write one."""
        return [r for r in self.jobs.finished_runs() if self.jobs.config(r).get("task") == "rm"]

    def score_reply(self, run_id: str, message: str, reply: str, history: list[Any] | None = None) -> float:
        """A reward-model run's score of `reply` as the answer to `message` after `history`: higher is preferred."""
        from backend.rewards.learned import dialogue, score_conversations

        if not str(reply).strip():
            raise TuneForgeError("there is no reply to score yet")
        if self.jobs.config(run_id).get("task") != "rm":
            raise TuneForgeError(f"run '{run_id}' is not a reward model (task rm); pick one to score with")
        prompt = [*normalize_history(history), {"role": "user", "content": str(message)}]
        with self.model_for(run_id) as (model, tokenizer):
            (score,) = score_conversations(model, tokenizer, [dialogue(prompt, str(reply))])
        return score

    def gguf_file(self, target: str) -> Path:
        """The .gguf file a gguf: target names, confined to the allowed folders."""
        path = self.jobs.confinement.path(target[len(GGUF) :].strip(), "GGUF file")
        if path.suffix.lower() != ".gguf" or not path.is_file():
            raise TuneForgeError(f"GGUF file {path} does not exist; name a .gguf file on this machine")
        return path

    def unload_gguf(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _gguf_server(self, path: Path):
        from backend.serving.llamacpp import LlamaServer

        if self._server is not None and self._server.gguf_file == path and self._server.alive():
            return self._server
        self.unload_gguf()
        self._loaded = None  # one model at a time: the transformers one goes
        self._server = LlamaServer(path, ctx=4096).start()
        return self._server

    def _gguf_stream(self, path: Path, messages, temperature, top_p, max_new_tokens) -> Iterator[str]:
        body = {"messages": messages, "max_tokens": max_new_tokens, "temperature": max(float(temperature), 0.0),
                "top_p": float(top_p), **({"top_k": 1} if temperature <= 0 else {})}  # fmt: skip
        with self._lock:
            server = self._gguf_server(path)
            text = ""
            for event in server.stream("/v1/chat/completions", body):
                for choice in event.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
                text, ended = cut_at_turn_end(text)
                yield text
                if ended:
                    break
            if not text:
                yield ""

    @contextmanager
    def model_for(self, target: str):
        """(model, tokenizer) for a target, held exclusively while the caller uses it.

        Every model computation in the app's process (chat, evaluation, batch predict,
        classification) goes through here, so this is also where it yields the CPU to a job.
        """
        with self._lock, self._cores_left_to_jobs():
            self.unload_gguf()
            yield self._load(str(target or BASE))

    @contextmanager
    def _cores_left_to_jobs(self):
        """One torch thread while a job (training, a benchmark, a judge) runs; the usual pool otherwise.

        The job's own OpenMP pool already fills every core. A second full pool in this process
        makes both crawl: each op's threads wait at a barrier for a sibling that the scheduler
        gave to the other process (a chat reply beside a job took 143 s instead of about 4 s on
        the 2-core dev machine). Threads started inside (the chat's generate thread) take the
        count that is current when they first compute.
        """
        import torch

        if not self.jobs.busy():
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _load(self, target: str):
        if self._loaded and self._loaded[0] == target:
            return self._loaded[1], self._loaded[2]
        self._loaded = self._processor = None  # free the previous model before loading the next
        if target == BASE or target.startswith(BASE + ":"):
            path = resolve_model(target.partition(":")[2] or "default")
            if is_vision_folder(path):
                self._processor = load_processor(path)
                model, tokenizer = load_vision_model(path), self._processor.tokenizer
            else:
                model, tokenizer = load_causal_lm(path), load_tokenizer(path)
        else:
            model, tokenizer = self._load_run(target)
        model.eval()
        self._loaded = (target, model, tokenizer)
        return model, tokenizer

    def _load_run(self, run_id: str):
        status = self.jobs.status(run_id)
        if status["status"] != "completed":
            raise TuneForgeError(f"run '{run_id}' is {status['status']}; only completed runs can chat")
        run_dir = Path(status["run_dir"])
        config = self.jobs.config(run_id)
        if config.get("task") == "classification":
            return load_classifier(run_dir, config)
        if config.get("task") == "rm":
            from backend.rewards.learned import load_reward_model

            return load_reward_model(run_dir)
        trusted = bool(config.get("trust_remote_code", False))  # as the run was trained
        if is_vision_spec(config.get("model", "")):
            return self._load_vision_run(run_dir, config, trusted)
        tokenizer = load_tokenizer(str(run_dir), config.get("template", "chatml"), trusted)
        if not is_adapter_dir(run_dir):
            return load_causal_lm(str(run_dir), trust_remote_code=trusted), tokenizer
        from peft import PeftModel

        base_path = resolve_model(config.get("model", "default"))
        base = load_causal_lm(base_path, trust_remote_code=trusted, **quantized_as_trained(config))
        return PeftModel.from_pretrained(base, str(run_dir)), tokenizer

    def _load_vision_run(self, run_dir: Path, config: dict, trusted: bool):
        self._processor = load_processor(run_dir, trusted)
        if not is_adapter_dir(run_dir):
            return load_vision_model(run_dir, trust_remote_code=trusted), self._processor.tokenizer
        from peft import PeftModel

        base_path = resolve_model(config.get("model", ""))
        base = load_vision_model(base_path, trust_remote_code=trusted, **quantized_as_trained(config))
        return PeftModel.from_pretrained(base, str(run_dir)), self._processor.tokenizer

    def _image_files(self, images: list[Any] | None) -> list[Path]:
        """The chat's image files, each confined like any path the caller names, and checked to be an image."""
        from backend.data.images import check_image
        from backend.data.readers import RowError

        if images is None:
            return []
        if isinstance(images, str) or not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise TuneForgeError("images must be a list of image file paths")
        files = []
        for name in images:
            path = self.jobs.confinement.path(name, "image", "data")
            try:
                files.append(check_image(path.name, path.parent))
            except RowError as exc:
                raise TuneForgeError(str(exc)) from None
        return files

    def stream(
        self,
        target: str,
        message: str,
        history: list[Any] | None = None,
        system_prompt: str = "",
        temperature: float = CHAT_DEFAULTS["temperature"],
        top_p: float = CHAT_DEFAULTS["top_p"],
        max_new_tokens: int = CHAT_DEFAULTS["max_new_tokens"],
        images: list[str] | None = None,
    ) -> Iterator[str]:
        """Yield the reply so far, growing as tokens arrive. images: files the message shows a vision model."""
        if not isinstance(message, str) or not message.strip():
            raise TuneForgeError("type a message first")
        check_settings(temperature, top_p, max_new_tokens)
        files = self._image_files(images)
        target = str(target or BASE)
        if target.startswith(BASE + ":"):  # 'base:<model>' names a model by path: the caller's word, so confined
            self.jobs.confinement.model(target.partition(":")[2], "chat model")
        elif target != BASE and not target.startswith(GGUF) and self.jobs.config(target).get("task") == "rm":
            raise TuneForgeError(f"run '{target}' is a reward model: it scores replies (Score a reply), it writes none")
        messages = normalize_history(history)
        system_prompt = str(system_prompt or "")
        if system_prompt.strip():
            messages = [m for m in messages if m["role"] != "system"]
            messages.insert(0, {"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": str(message)})
        if target.startswith(GGUF):
            if files:
                raise TuneForgeError("a GGUF chat reads text only here; chat with the run itself to show it images")
            yield from self._gguf_stream(self.gguf_file(target), messages, temperature, top_p, int(max_new_tokens))
            return
        with self.model_for(target) as (model, tokenizer):
            inputs = self._vision_inputs(target, messages, files) if files or self._processor else None
            yield from self._generate(model, tokenizer, messages, temperature, top_p, int(max_new_tokens), inputs)

    def _vision_inputs(self, target: str, messages: list[dict], files: list[Path]):
        """The prompt with its images for a vision model; a text-only model is refused in one line."""
        from backend.data.images import IMAGE_PLACEHOLDER
        from backend.data.vision_encoding import prompt_inputs

        if self._processor is None:
            raise TuneForgeError(
                f"{target} reads text only; for images pick a vision-language model (base:vision-demo)"
            )
        # Images come with this message only: earlier placeholders would have no image behind them.
        messages = [{**m, "content": m["content"].replace(IMAGE_PLACEHOLDER, "")} for m in messages[:-1]] + [
            {**messages[-1], "content": IMAGE_PLACEHOLDER * len(files) + messages[-1]["content"]}
        ]
        max_pixels = 589824 if target.startswith(BASE) else self.jobs.config(target).get("image_max_pixels", 589824)
        return prompt_inputs(self._processor, messages, files, max_pixels)

    def reply(self, target: str, message: str, history: list[Any] | None = None, **options) -> str:
        chunks = list(self.stream(target, message, history, **options))
        return chunks[-1] if chunks else ""

    @staticmethod
    def _generate(model, tokenizer, messages, temperature, top_p, max_new_tokens, inputs=None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class StopWhenClosed(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return closed.is_set()

        closed = threading.Event()
        if inputs is None:
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        )
        kwargs = dict(
            **inputs,
            **sampling,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([StopWhenClosed()]),
        )
        failure: list[BaseException] = []
        worker = threading.Thread(target=_run_generate, args=(torch, model, kwargs, streamer, failure), daemon=True)
        worker.start()
        text = ""
        try:
            for piece in streamer:
                text, ended = cut_at_turn_end(text + piece)
                yield text
                if ended:  # the rest would be the model writing the next turn; closing stops it
                    break
        finally:
            closed.set()  # a client that stops listening stops the generation too
            worker.join()
        if failure:
            raise TuneForgeError(f"generation failed: {failure[0]}")
        if not text:
            yield ""


def _run_generate(torch, model, kwargs, streamer, failure: list) -> None:
    try:
        with torch.no_grad():
            model.generate(**kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to the caller, which is waiting on the streamer
        failure.append(exc)
        streamer.end()


def quantized_as_trained(config: dict) -> dict:
    """from_pretrained arguments that load a QLoRA run's base quantized as it trained, on the CPU, where chat runs.

    The adapter learned on the quantized base, and a large base fits a small machine's memory only
    quantized. Computed in fp32: bitsandbytes' 8-bit CPU layers crawl in bf16. Without bitsandbytes'
    CPU backend the base loads unquantized: the same adapter, with slightly different answers.
    """
    bits = saved_quantization_bits(config)
    if not bits or not hardware_summary().get("bitsandbytes_cpu"):
        return {}
    precision = Precision(name="fp32", quantization_bit=bits, on_cpu=True)
    return {"dtype": precision.load_dtype("qlora"), **precision.loading_arguments()}


def load_classifier(run_dir: Path, config: dict):
    """A classification run: the full model folder, or the base encoder plus the PEFT adapter and head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    if not is_adapter_dir(run_dir):
        return AutoModelForSequenceClassification.from_pretrained(run_dir), tokenizer
    from peft import PeftModel

    base_path = resolve_model(config.get("model", "default"), task="classification")
    labels_file = run_dir / "labels.json"
    if not labels_file.exists():
        raise TuneForgeError(f"run folder {run_dir} has no labels.json; was it trained by TuneForge?")
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    base = AutoModelForSequenceClassification.from_pretrained(
        base_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    base.config.pad_token_id = tokenizer.pad_token_id
    return PeftModel.from_pretrained(base, str(run_dir)), tokenizer
