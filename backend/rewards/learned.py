"""A reward model (a task rm run) as a reward: load it from its run folder, score conversations in batches.

Shared by the job (GRPO's `rm:` reward) and the app (Evaluate's accuracy and margin, the Chat tab's score).
A run folder holds either a PEFT adapter with the trained score head (lora) or a whole
sequence-classification model (full); both score a conversation with one number, read at its last
token, as TRL's RewardTrainer trained it: the chat template laid over the whole conversation.
torch and transformers are imported on first use, so the app imports this module cheaply.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from backend.errors import TuneForgeError
from backend.models.sources import is_adapter_dir, load_tokenizer, resolve_model
from backend.runfiles import CONFIG_FILE, METRICS_FILE

BATCH = 8


def reward_model_dir(target: str | Path) -> Path:
    """A finished rm run's folder, or one line saying why `target` is not one."""
    folder = Path(str(target)).expanduser()
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise TuneForgeError(f"reward model {target}: not a run folder (no {CONFIG_FILE}); name a task rm run")
    task = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("task")
    if task != "rm":
        raise TuneForgeError(f"reward model {target}: a run of task {task}, not a reward model; train one with task rm")
    if not (folder / METRICS_FILE).exists():
        raise TuneForgeError(f"reward model {target}: the run has not completed; only a finished rm run scores")
    return folder.resolve()


def run_settings(folder: Path) -> dict:
    return yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}


def base_scorer(model_spec: str, trust_remote_code: bool = False, seed: int | None = None, dtype=None, **loading):
    """The starting model with a new one-number head: what an rm run trains, and Evaluate's "base".

    seed: the run's seed, set just before the head is drawn, so training and Evaluate start from the same head.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    path = resolve_model(model_spec, progress=lambda msg: None)
    if seed is not None:
        torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, **loading
    )


def load_reward_model(target: str | Path):
    """(model, tokenizer) of an rm run, in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    folder = reward_model_dir(target)
    settings = run_settings(folder)
    trusted = bool(settings.get("trust_remote_code", False))
    tokenizer = load_tokenizer(str(folder), settings.get("template", "chatml"), trusted)
    if is_adapter_dir(folder):
        base = base_scorer(settings.get("model", "default"), trusted)
        base.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(base, str(folder))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=trusted)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def score_conversations(model, tokenizer, conversations: list[list[dict]], cutoff_len: int = 1024) -> list[float]:
    """One score per conversation (its last message is the answer judged), batched and without gradients.

    A conversation longer than cutoff_len keeps its first cutoff_len tokens, as training saw no longer one.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(conversations), BATCH):
            rows = [_ids(tokenizer, c)[:cutoff_len] for c in conversations[start : start + BATCH]]
            width = max(len(r) for r in rows)
            # Padded on the right: the sequence-classification head reads the last token before the padding.
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            logits = model(input_ids=ids, attention_mask=mask).logits
            scores += [float(v) for v in logits[:, 0].float()]
    return scores


def _ids(tokenizer, conversation: list[dict]) -> list[int]:
    encoded = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def dialogue(prompt: list[dict] | str, answer: str) -> list[dict]:
    """A prompt (messages, or a user's text) with the answer to score as its last turn."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return [*({"role": m["role"], "content": m["content"]} for m in messages), {"role": "assistant", "content": answer}]


class LearnedReward:
    """An rm run loaded once, scoring completions of a run's prompts: reward/rm."""

    def __init__(self, target: str | Path):
        self.folder = reward_model_dir(target)
        self.cutoff_len = int(run_settings(self.folder).get("cutoff_len", 1024))
        self.model, self.tokenizer = load_reward_model(self.folder)

    def __call__(self, completions: list[str], prompts: list) -> list[float]:
        return score_conversations(
            self.model,
            self.tokenizer,
            [dialogue(p, c) for p, c in zip(prompts, completions, strict=True)],
            self.cutoff_len,
        )
