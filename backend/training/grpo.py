"""The reinforcement-learning recipe: GRPO with rewards, through TRL's GRPOTrainer.

Same shape as every recipe (setup, train, save) and the same events, checkpoints, resume and weights:
a LoRA run leaves a PEFT adapter, a full run a safetensors model. What differs:
  - the data: prompts, with reference columns the rewards compare against (backend/data/prompts.py);
  - each step samples num_generations completions per prompt, scores them with the rewards
    (backend.rewards), and moves the model towards the completions that beat their group's mean;
  - with grpo_beta > 0, a KL term holds the model near its start: with LoRA the base with the adapter
    switched off, so no second copy is loaded.
Every log event carries `reward` (the mean weighted total), `reward/<name>` per component,
`completion_length` and, with grpo_beta > 0, `kl`; a `completions` event after each log holds the
latest sampled completions with their rewards, for the Train tab's table.
A custom reward that fails to import, raises or returns the wrong shape ends the run at once, before
or at its first step, in one line naming its file (exit code 2, like every refusal). A reward model
(rewards: rm:<run>) loads before the data, and scores each batch's completions after their whole
prompts under no_grad (backend.rewards.learned): reward/rm.
"""

from __future__ import annotations

from transformers import TrainerCallback

from backend.capability import ADAPTER_METHODS
from backend.data.prompts import reference_columns
from backend.errors import TuneForgeError
from backend.models.sources import load_causal_lm, resolve_model
from backend.rewards.scoring import RewardSet
from backend.training.recipe import TRLRecipe

COMPLETIONS_SHOWN = 8
TEXT_SHOWN = 400


def prompt_text(prompt: list[dict]) -> str:
    """The last user turn: what the table shows and custom rewards receive as the prompt."""
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else ""


def completion_text(completion) -> str:
    """TRL's completion (a list of messages for a conversational prompt, or text) as plain text."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion)
    return str(completion)


class Scoreboard:
    """The last batch's completions and each reward's scores, kept for the completions table."""

    def __init__(self, rewards: RewardSet):
        self.rewards, self.batch, self.rows = rewards, None, []

    def record(self, name: str, completions: list, prompts: list[str], texts: list[str], scores: list) -> None:
        # TRL hands every reward the same list for one batch; held here, so its id cannot pass to the next one.
        if completions is not self.batch:
            self.batch = completions
            self.rows = [{"prompt": p, "completion": t} for p, t in zip(prompts, texts, strict=True)]
        for row, score in zip(self.rows, scores, strict=True):
            row[name] = score

    def latest(self) -> list[dict]:
        shown = []
        for row in self.rows[:COMPLETIONS_SHOWN]:
            total = self.rewards.total(row)
            shown.append(
                {
                    "prompt": row["prompt"][:TEXT_SHOWN],
                    "completion": row["completion"][:TEXT_SHOWN],
                    "reward": round(total, 4),
                    **{s.name: row.get(s.name) for s in self.rewards.specs},
                }
            )
        return shown


class CompletionsCallback(TrainerCallback):
    """After each log: the latest completions and their rewards, as a `completions` event."""

    def __init__(self, events, scoreboard: Scoreboard):
        self.events, self.scoreboard = events, scoreboard

    def on_log(self, args, state, control, logs=None, **kwargs):
        rows = self.scoreboard.latest()
        if rows and "loss" in (logs or {}):
            self.events.emit("completions", step=state.global_step, rows=rows)


class GRPORecipe(TRLRecipe):
    def setup(self) -> None:
        cfg = self.config
        # Custom rewards load first: a broken reward file fails the run before any data or model is read.
        self.rewards = RewardSet(cfg)
        self.scoreboard = Scoreboard(self.rewards)
        splits = self.load_data()
        self.model_path = resolve_model(cfg.model, progress=lambda msg: self.events.emit("status", message=msg))
        self.tokenizer = self.load_chat_tokenizer()
        self.train_set = self._dataset(splits.train)
        self.eval_set = self._dataset(splits.validation) if splits.validation else []
        self.events.emit("status", message=f"loading model ({self.precision.describe()})")
        dtype = self.precision.load_dtype(cfg.method)
        model = load_causal_lm(
            self.model_path, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
            **self.precision.loading_arguments(),
        )  # fmt: skip
        self.model = self._prepare(model)

    def _dataset(self, examples: list[dict]):
        from datasets import Dataset

        columns = reference_columns(examples)
        rows = [{"prompt": e["messages"], **{k: e["references"].get(k) for k in columns}} for e in examples]
        return Dataset.from_list(rows)

    def reward_functions(self) -> list:
        """One function per reward, named as it is logged (TRL logs rewards/<__name__>/mean)."""
        return [self._trl_reward(spec) for spec in self.rewards.specs]

    def _trl_reward(self, spec):
        def reward(prompts, completions, **columns):
            texts = [completion_text(c) for c in completions]
            asked = [prompt_text(p) if isinstance(p, list) else str(p) for p in prompts]
            references = {k: v for k, v in columns.items() if k in self.train_set.column_names and k != "prompt"}
            dialogues = [p if isinstance(p, list) else str(p) for p in prompts]
            scores = self.rewards.score(spec, texts, asked, references, dialogues)
            self.scoreboard.record(spec.name, completions, asked, texts, scores)
            return scores

        reward.__name__ = spec.name
        return reward

    def log_metrics(self) -> dict[str, str]:
        names = {f"rewards/{name}/mean": f"reward/{name}" for name in self.rewards.names}
        return {"reward": "reward", **names, "completions/mean_length": "completion_length", "kl": "kl"}

    def _training_args(self):
        from trl import GRPOConfig

        cfg = self.config
        options = self._training_options()
        options["include_num_input_tokens_seen"] = "no"  # TRL counts prompt and completion tokens itself
        return GRPOConfig(
            **options,
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length,
            temperature=cfg.temperature,
            beta=cfg.grpo_beta,
            reward_weights=self.rewards.weights,
            log_completions=False,  # our completions event replaces its rich table and parquet files
        )

    def build_trainer(self):
        from trl import GRPOTrainer

        cfg = self.config
        try:
            trainer = GRPOTrainer(
                model=self.model,
                reward_funcs=self.reward_functions(),
                args=self._training_args(),
                train_dataset=self.train_set,
                eval_dataset=self.eval_set or None,
                processing_class=self.tokenizer,
                peft_config=self._lora_config() if cfg.method in ADAPTER_METHODS else None,
            )
        except ValueError as exc:
            if "target" in str(exc):
                raise self._lora_error(exc) from None
            raise TuneForgeError(f"grpo: {str(exc).splitlines()[0]}") from None
        trainer.add_callback(CompletionsCallback(self.events, self.scoreboard))
        self.model = trainer.model
        self.report_size()
        return trainer

    def train(self) -> dict:
        metrics = super().train()
        logged = [h for h in self.trainer.state.log_history if "reward" in h]
        if logged:
            metrics.update({event: logged[-1][key] for key, event in self.log_metrics().items() if key in logged[-1]})
        return metrics

    def final_evaluation(self) -> dict:
        scores = self.final_scores()
        kept = {"eval_loss": scores.get("eval_loss"), "eval_reward": scores.get("eval_reward")}
        return {k: v for k, v in kept.items() if v is not None}
