"""Every training option, defined once.

`TrainConfig` is the single source of truth: each field carries its default, bounds,
choices, group and help text in `metadata`. The UI builds its widgets from these fields,
the CLI reads the same keys from YAML, and every job writes the resolved config to its
run directory. Key names follow transformers' TrainingArguments and LLaMA-Factory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.data.formats import FORMATS
from backend.errors import TuneForgeError
from backend.rewards.builtin import RewardSettings, check_built_ins
from backend.rewards.reward_spec import parse_rewards
from backend.task_metrics import best_model_choices
from backend.templates import TEMPLATE_NAMES

PREFERENCE_TASKS = ("dpo", "orpo", "kto")
# LLaMA-Factory's reward-model stages: rm trains one on pairs; ppo would tune a policy against it.
RLHF_TASKS = ("rm", "ppo")
# The loss variants TRL's trainers offer for each task.
DPO_LOSSES = (
    "sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down", "sigmoid_norm",
)  # fmt: skip
KTO_LOSSES = ("kto", "apo_zero_unpaired")
PREFERENCE_LOSSES = {"dpo": DPO_LOSSES, "kto": KTO_LOSSES, "orpo": ("orpo",)}
# Options that change how the LoRA adapter is made or trained; they need an adapter to act on.
ADAPTER_VARIANTS = ("use_dora", "use_rslora", "pissa_init", "loraplus_lr_ratio")


# The most characters of a text option: paths (PATH_MAX is 4096), names, words. A longer value is a mistake or an
# attack, and would end up in run.yaml, the events and the audit log.
TEXT_OPTION_MAX = 4096


def option(
    default,
    help: str,
    *,
    min=None,
    max=None,
    choices=None,
    group="basic",
    label=None,
    widget=None,
    task_defaults=None,
    runs_code=False,
    max_len=None,
    path=False,
    locked=False,
    card=False,
    not_searched=None,
    hardware=False,
    tasks=None,
):
    """A config field with the metadata the UI and validator need.

    max_len: the most characters a text option takes (default TEXT_OPTION_MAX); one limit for the UI, API and CLI.

    The facts other modules ask of an option live here, so a new option is classified where it is defined:
    path: its value names a file, folder, model or run, which the app confines (backend.access.confine)
    before anything is read or written, and a sweep checks each value it would try like a Start's.
    locked: a resumed run must keep the value its checkpoint was saved with (backend.checkpoints): changing it
    makes the saved weights or optimizer state meaningless (the base, the adapter's shape, the sharding).
    card: the model card's hyperparameters table and the GGUF file's general.finetune list it.
    not_searched: why a sweep may not vary it (None: it may).
    hardware: which of its choices run depends on the machine; the form offers only those plan_run accepts.
    tasks: the tasks whose runs read it (None: every task); a sweep refuses to search it for another task,
    where every trial would be the same run.

    task_defaults overrides the default for some tasks, e.g. a higher learning rate for a small encoder.
    runs_code marks an option that, when set, makes the job import code that is not the studio's own: in a
    shared studio only an admin may set it, and only where the owner launched with --allow-remote-code.
    It is True, or a test of the value where only some values run code (a custom reward's file:function).
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "group": group, "label": label, "widget": widget}
    meta["task_defaults"] = task_defaults or {}
    meta["runs_code"] = runs_code
    meta["max_len"] = max_len
    meta.update(path=path, locked=locked, card=card, not_searched=not_searched, hardware=hardware)
    meta["tasks"] = tuple(tasks) if tasks else None
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # What to train
    model: str = option(
        "default",
        "'default' is the embedded SmolLM2-135M-Instruct (works offline); 'vision-demo' is the studio's own small "
        "vision-language model (SmolLM2 with a small image encoder, built here on first use); or a local model folder, "
        "a .gguf file (converted once into the model cache, quantized weights dequantized), or a hub id when online.",
        group="model",
        path=True,
        locked=True,
    )
    method: str = option(
        "lora",
        "lora trains a small adapter; qlora trains one on a 4-bit model (bitsandbytes, on a CUDA GPU or the CPU); "
        "full updates every weight; freeze trains only the last freeze_trainable_layers decoder layers.",
        choices=("lora", "qlora", "full", "freeze"),
        group="model",
        locked=True,
        card=True,
        hardware=True,
    )
    freeze_trainable_layers: int = option(
        2,
        "method freeze: train the last N decoder layers (a negative N trains the first N), as in LLaMA-Factory.",
        min=-1024,
        max=1024,
        group="model",
        locked=True,
    )
    trust_remote_code: bool = option(
        False,
        "Run Python code that ships with the model (custom architectures). Turn on only for a model "
        "whose source you trust: that code runs with your permissions.",
        group="model",
        label="trust_remote_code (runs the model's own code)",
        runs_code=True,
    )
    freeze_vision_tower: bool = option(
        True,
        "Vision-language models: keep the image encoder as it is (LLaMA-Factory's default); off trains it too "
        "(with LoRA, an adapter on it).",
        group="model",
    )
    freeze_multi_modal_projector: bool = option(
        True,
        "Vision-language models: keep the projector (image features into the language model) as it is; off "
        "trains all of its weights.",
        group="model",
    )
    image_max_pixels: int = option(
        589824,
        "Vision-language models: an image larger than this many pixels (width x height) is scaled down to it, "
        "aspect kept, before the processor sees it. Fewer pixels, fewer image tokens.",
        min=1024,
        max=2**26,
        group="model",
    )
    dataset: str = option(
        "demo_identity",
        "A bundled demo, a named dataset, a file (CSV, TSV, JSON, JSONL, Parquet, TXT), or a hub dataset id.",
        group="dataset",
        # grpo: prompts with answers, what the default rewards score; rm: pairs with a visible rule (one sentence
        # chosen over several), which a reward model learns in a few steps.
        task_defaults={"grpo": "demo_arithmetic", "rm": "demo_preference"},
        path=True,
    )
    dataset_dir: str = option(
        "",
        "A folder with a dataset_info.json (such as LLaMA-Factory's data/): each of its entries becomes a named "
        "dataset. Empty: only the workspace's named datasets.",
        group="dataset",
        path=True,
    )
    task: str = option(
        "sft",
        "sft: fine-tune on conversations (answers only); pt: continue pretraining on plain text; "
        "classification: a head on an encoder (default all-MiniLM-L6-v2) or decoder, from text + label data; "
        "dpo / orpo: prefer the chosen over the rejected answer of each pair; kto: learn from answers judged "
        "good or bad (or from pairs); grpo: sample answers to prompts and learn from the rewards they earn; "
        "rm: a reward model that scores the chosen answer of each pair above the rejected one; ppo: refused "
        "(TRL 1.16 has no PPO trainer; see docs/grpo.md).",
        choices=("sft", "pt", "classification", *PREFERENCE_TASKS, "grpo", *RLHF_TASKS),
        group="dataset",
        widget="radio",  # six short names read best side by side
        locked=True,
        card=True,
        not_searched="a sweep compares runs of one task; start one sweep per task",
    )
    dataset_format: str = option(
        "auto",
        "The dataset's format; auto detects it from the column names.",
        choices=("auto", *FORMATS),
        group="dataset",
    )
    eval_dataset: str = option(
        "", "A separate validation file or name (replaces val_size when set).", group="dataset", path=True
    )
    prompt_column: str = option("", "Column holding the prompt (empty: detect).", group="columns", widget="column")
    response_column: str = option("", "Column holding the answer (empty: detect).", group="columns", widget="column")
    system_column: str = option("", "Column holding a system prompt (optional).", group="columns", widget="column")
    text_column: str = option("", "Column holding plain text (pt, classification).", group="columns", widget="column")
    label_column: str = option(
        "",
        "Column holding the class label (classification) or the good/bad judgement (kto).",
        group="columns",
        widget="column",
        tasks=("classification", "kto"),
    )
    chosen_column: str = option(
        "",
        "Column holding the preferred answer (dpo, orpo, kto, rm).",
        group="columns",
        widget="column",
        tasks=(*PREFERENCE_TASKS, "rm"),
    )
    rejected_column: str = option(
        "",
        "Column holding the rejected answer (dpo, orpo, kto, rm).",
        group="columns",
        widget="column",
        tasks=(*PREFERENCE_TASKS, "rm"),
    )
    skip_bad_rows: bool = option(
        False, "Skip malformed rows (they are counted and shown) instead of refusing the file.", group="dataset"
    )
    scrub_pii: bool = option(
        False, "Replace emails, phone numbers, card-like numbers and IPv4 addresses before training.", group="cleaning"
    )
    dedup: bool = option(False, "Drop exact duplicate rows before splitting.", group="cleaning")
    drop_leaked: bool = option(
        False, "Drop validation rows that also occur (near-identically) in training.", group="cleaning"
    )
    identity_name: str = option(
        "",
        "Replaces every {{name}} in the data, as in LLaMA-Factory's identity.json: the name the model learns to give.",
        group="identity",
    )
    identity_author: str = option(
        "", "Replaces every {{author}} in the data: who the model says built it.", group="identity"
    )
    output_dir: str = option(
        "",
        "Run directory. Empty: a new folder under the workspace's runs/.",
        group="advanced",
        path=True,
        not_searched="each trial gets its own run folder",
    )
    template: str = option(
        "chatml",
        "The chat template for a model that has none of its own (a base model); a model's own always wins. "
        "It is saved with the run's tokenizer, so chat and export format prompts as in training.",
        choices=TEMPLATE_NAMES,
        group="model",
    )
    max_samples: int = option(0, "Use at most this many examples (0: all).", min=0, max=100_000_000, group="advanced")

    # Optimisation
    learning_rate: float = option(
        2e-4,
        "Peak learning rate (default 2e-4; 5e-4 for classification, where a small encoder learns a new head).",
        min=1e-8,
        max=1.0,
        task_defaults={"classification": 5e-4, "grpo": 1e-3},
        card=True,
    )
    num_train_epochs: float = option(
        3.0,
        "Passes over the training data (ignored when max_steps > 0).",
        min=0.01,
        max=1000.0,
        card=True,
    )
    max_steps: int = option(
        -1,
        "Stop after this many optimizer steps (-1: use num_train_epochs).",
        min=-1,
        max=10_000_000,
        task_defaults={"grpo": 30},  # the demo learns its format in about 12; an epoch of sampling is hours on a CPU
        card=True,
    )
    per_device_train_batch_size: int = option(
        4,
        "Examples per forward pass (grpo: completions, num_generations of them per prompt).",
        min=1,
        max=1024,
        task_defaults={"grpo": 8},
        card=True,
    )
    gradient_accumulation_steps: int = option(
        1,
        "Forward passes per optimizer step; effective batch = batch size x this.",
        min=1,
        max=1024,
        card=True,
    )
    cutoff_len: int = option(
        512, "Maximum tokens per example; longer ones are truncated.", min=16, max=32768, card=True
    )
    val_size: float = option(
        0.1, "Held-out share for validation loss (<1: fraction, >=1: row count, 0: none).", min=0.0, max=1_000_000.0
    )
    lr_scheduler_type: str = option(
        "cosine",
        "How the learning rate changes over training.",
        choices=("linear", "cosine", "constant", "constant_with_warmup"),
        group="advanced",
        task_defaults={"grpo": "constant"},
        card=True,
    )
    warmup_ratio: float = option(
        0.0,
        "Share of steps spent warming the learning rate up from 0.",
        min=0.0,
        max=0.5,
        group="advanced",
        card=True,
    )
    weight_decay: float = option(0.0, "L2 penalty on weights (AdamW).", min=0.0, max=1.0, group="advanced", card=True)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0: off).", min=0.0, max=1000.0, group="advanced")
    # TrainingArguments' name. Off by default, unlike TRL's trainers (whose configs turn it on): on the small
    # models and CPUs people start with, the recomputed forward pass costs about a third more time per step.
    gradient_checkpointing: bool = option(
        False,
        "Recompute each layer's activations during the backward pass instead of keeping them: much less "
        "memory for about a third more compute per step. qlora always uses it.",
        group="advanced",
    )
    seed: int = option(
        42,
        "Random seed for shuffling, splitting and initialisation.",
        min=0,
        max=2**31 - 1,
        group="advanced",
        card=True,
    )

    # Reporting
    logging_steps: int = option(
        1, "Log loss every N steps (each log is a chart point).", min=1, max=100_000, group="advanced"
    )
    eval_steps: int = option(
        50, "Compute validation loss every N steps (needs val_size > 0).", min=1, max=1_000_000, group="advanced"
    )
    save_steps: int = option(
        50,
        "Save a checkpoint every N steps, to resume from if the job dies (0: only the final weights).",
        min=0,
        max=1_000_000,
        group="advanced",
    )
    save_total_limit: int = option(
        2,
        "Keep at most this many checkpoints; older ones are deleted (0: keep all).",
        min=0,
        max=1000,
        group="advanced",
    )
    resume_from_checkpoint: str = option(
        "",
        "Continue an interrupted run in output_dir: 'last' (its newest whole checkpoint) or a checkpoint folder.",
        group="advanced",
        path=True,
        not_searched="every trial starts from the base model",
    )
    report_to: str = option(
        "tensorboard",
        "Also log to this tracker (TensorBoard event files go to the run's tensorboard/ folder; "
        "mlflow and wandb need their packages installed).",
        choices=("none", "tensorboard", "mlflow", "wandb"),
        group="advanced",
    )

    early_stopping_patience: int = option(
        0,
        "Stop after this many evaluations without improvement (0: off); the best checkpoint is kept and marked.",
        min=0,
        max=1000,
        group="advanced",
    )
    metric_for_best_model: str = option(
        "eval_loss",
        "Validation metric that early stopping watches (accuracy and f1_macro: classification; accuracy: rm; "
        "eval_reward: grpo).",
        choices=best_model_choices(),
        group="advanced",
    )

    # LoRA
    lora_rank: int = option(
        8,
        "LoRA rank r: adapter size; higher learns more, costs more.",
        min=1,
        max=1024,
        group="lora",
        locked=True,
        card=True,
    )
    lora_alpha: int = option(16, "LoRA scaling alpha; usually 2 x rank.", min=1, max=4096, group="lora", card=True)
    lora_dropout: float = option(0.0, "Dropout on the LoRA path.", min=0.0, max=0.9, group="lora", card=True)
    lora_target: str = option(
        "all",
        "Modules to adapt: 'all' linear layers, or comma-separated names like q_proj,v_proj.",
        group="lora",
        locked=True,
        card=True,
    )
    # The variants below keep LLaMA-Factory's key names, so its YAMLs carry them over unchanged.
    use_dora: bool = option(
        False,
        "DoRA: train each adapted weight's magnitude apart from its direction; often closer to full "
        "fine-tuning, at some cost per step.",
        group="lora",
        locked=True,
    )
    use_rslora: bool = option(
        False,
        "rsLoRA: scale the adapter by alpha / sqrt(rank) instead of alpha / rank, so that high ranks still learn.",
        group="lora",
        locked=True,
    )
    pissa_init: bool = option(
        False,
        "PiSSA: start the adapter from each weight's principal singular vectors instead of zero. The adapter is "
        "saved converted to plain LoRA (rank 2 x lora_rank), which loads on the unchanged model.",
        group="lora",
        locked=True,
    )
    pissa_iter: int = option(
        16,
        "PiSSA: power iterations of the fast SVD; -1 computes the exact SVD (slow on large models).",
        min=-1,
        max=1024,
        group="lora",
        locked=True,
    )
    loraplus_lr_ratio: float = option(
        0.0,
        "LoRA+: the adapter's B matrices learn this many times faster than its A matrices (which use "
        "learning_rate); the paper suggests 16. 0: off.",
        min=0.0,
        max=1000.0,
        group="lora",
        locked=True,
    )

    # Preference tuning (dpo, orpo, kto)
    pref_beta: float = option(
        0.1,
        "How far training may move from the reference model: higher stays closer (dpo, kto), or weighs the "
        "preference term more against the answers' likelihood (orpo).",
        min=0.001,
        max=100.0,
        group="preference",
        tasks=PREFERENCE_TASKS,
    )
    pref_loss: str = option(
        "sigmoid",
        "The preference loss. dpo: sigmoid (DPO), ipo, hinge, robust, bco_pair, sppo_hard, nca_pair, apo_zero, "
        "apo_down, sigmoid_norm; kto: kto or apo_zero_unpaired; orpo: orpo.",
        choices=(*DPO_LOSSES, *KTO_LOSSES, "orpo"),
        group="preference",
        task_defaults={"kto": "kto", "orpo": "orpo"},
        tasks=PREFERENCE_TASKS,
    )
    ref_model: str = option(
        "",
        "The reference model the policy is held near (dpo, kto). Empty: the starting model itself; with LoRA "
        "that is the base with the adapter switched off, so no second copy is loaded.",
        group="preference",
        path=True,
        tasks=("dpo", "kto"),
    )

    # Reinforcement learning with rewards (grpo; backend.rewards, backend.training.grpo)
    rewards: str = option(
        "exact_answer, regex:0.5",
        "Rewards for grpo, comma-separated, each with an optional weight after a colon: exact_answer (the final "
        "answer matches answer_column), regex (matches reward_regex), length (close to reward_target_length "
        "characters), json (valid JSON, against reward_json_schema if set), keywords (has reward_keywords, "
        "lacks reward_avoid_words), path/to/file.py:function (your own; from the app only files in the "
        "workspace's rewards/ folder), or rm:<run> (a reward model trained with task rm: its run id in the app, "
        "its folder from the CLI; logged as reward/rm). Example: exact_answer, regex:0.5, rm:my-rm-run:0.2",
        group="rewards",
        runs_code=lambda value: any(r.custom for r in parse_rewards(value)) if value else False,
        path=True,
        tasks=("grpo",),
    )
    answer_column: str = option(
        "answer",
        "The column holding the reference answer that exact_answer compares with.",
        group="rewards",
        tasks=("grpo",),
    )
    reward_regex: str = option(
        r"^-?\d+(\.\d+)?$",
        "regex reward: 1 when the completion (stripped) matches this Python regular expression (re.search), "
        "else 0. The default asks for a number and nothing else, as the arithmetic demo does.",
        group="rewards",
        tasks=("grpo",),
    )
    reward_target_length: int = option(
        0,
        "length reward: the completion length in characters that earns 1; otherwise the shorter of length "
        "and target over the longer.",
        min=0,
        max=100000,
        group="rewards",
        tasks=("grpo",),
    )
    reward_json_schema: str = option(
        "",
        "json reward: a JSON Schema (inline JSON, or a .json file) the completion must also satisfy. "
        "Empty: any valid JSON earns 1.",
        group="rewards",
        max_len=65_536,
        path=True,
        tasks=("grpo",),
    )
    reward_keywords: str = option(
        "", "keywords reward: comma-separated words the completion should contain (the share found).",
        group="rewards", tasks=("grpo",),
    )  # fmt: skip
    reward_avoid_words: str = option(
        "", "keywords reward: comma-separated words the completion should not contain (the share found is taken off).",
        group="rewards", tasks=("grpo",),
    )  # fmt: skip
    num_generations: int = option(
        4,
        "grpo: completions sampled per prompt; each is scored against the others of its group. The batch "
        "(per_device_train_batch_size x gradient_accumulation_steps x processes) must be a multiple of it.",
        min=2,
        max=256,
        group="rewards",
        tasks=("grpo",),
    )
    max_completion_length: int = option(
        32,
        "grpo: the most tokens sampled per completion (sampling is most of a step's time on a CPU; raise it "
        "for answers that reason).",
        min=1,
        max=32768,
        group="rewards",
        tasks=("grpo",),
    )
    temperature: float = option(
        1.0, "grpo: sampling temperature of the completions; higher is more varied.", min=0.01, max=10.0,
        group="rewards", tasks=("grpo",),
    )  # fmt: skip
    grpo_beta: float = option(
        0.0,
        "grpo: weight of the KL penalty that holds the model near its start (TRL's beta). 0 (TRL's default) "
        "skips the reference pass; the kl chart then stays empty.",
        min=0.0,
        max=10.0,
        group="rewards",
        tasks=("grpo",),
    )

    # PPO against a reward model (LLaMA-Factory's keys). TRL 1.16.0 has no PPO trainer, so task ppo is refused
    # (see _check_ppo); the keys are read so that LLaMA-Factory's ppo YAMLs reach that refusal in its words.
    reward_model: str = option(
        "",
        "ppo: the reward model, a task rm run (its run id in the app, its folder from the CLI).",
        group="rewards",
        path=True,
        tasks=("ppo",),
    )
    ppo_epochs: int = option(
        4, "ppo: optimisation epochs over each batch of samples.", min=1, max=100, group="rewards", tasks=("ppo",)
    )
    ppo_buffer_size: int = option(
        1,
        "ppo: mini-batches in one experience buffer of each optimisation step.",
        min=1,
        max=1024,
        group="rewards",
        tasks=("ppo",),
    )
    ppo_target: float = option(
        6.0,
        "ppo: the KL target of the adaptive KL controller.",
        min=0.0,
        max=100.0,
        group="rewards",
        tasks=("ppo",),
    )

    # Devices, launch and precision (backend.training.distributed, backend.capability)
    nproc_per_node: int = option(
        1,
        "Training processes on this machine: one per GPU (on a CPU, processes that share its cores). "
        "More than one launches the job through torchrun.",
        min=1,
        max=64,
        group="devices",
    )
    nnodes: int = option(
        1, "Machines taking part; each runs the same config with its own node_rank.", min=1, max=1024, group="devices"
    )
    node_rank: int = option(
        0,
        "This machine's number among the nnodes: 0 on the main node, which writes the run.",
        min=0,
        max=1023,
        group="devices",
        not_searched="every trial runs on this machine's queue",
    )
    master_addr: str = option(
        "127.0.0.1",
        "Address of node 0 that every node can reach (multi-node: node 0's network address).",
        group="devices",
    )
    master_port: int = option(29500, "A free TCP port on node 0 for the rendezvous.", min=1, max=65535, group="devices")
    rdzv_timeout: int = option(
        600,
        "Seconds the nodes wait for each other at the rendezvous before the run fails (nnodes > 1).",
        min=10,
        max=86400,
        group="devices",
    )
    strategy: str = option(
        "ddp",
        "How processes share the work: ddp copies the model to each; fsdp and deepspeed_zero3 shard weights, "
        "gradients and optimizer state; deepspeed_zero2 shards gradients and optimizer state (deepspeed package).",
        choices=("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"),
        group="devices",
        locked=True,
        hardware=True,
    )
    precision: str = option(
        "auto",
        "auto: bf16 on GPUs that support it, fp16 with a gradient scaler on older GPUs; on a CPU fp32, but bf16 "
        "for lora on a CPU with native bf16, AMX or AVX512_BF16 (measured 1.4-1.9x faster, eval loss within 2%). "
        "bf16 on a CPU needs native bf16 (AVX512_BF16 or AMX).",
        choices=("auto", "bf16", "fp16", "fp32"),
        group="devices",
        hardware=True,
    )
    torch_compile: bool = option(
        False,
        "Compile each decoder block with torch.compile (regional compilation: one block's code compiled once and "
        "reused by every layer, for any sequence length), its kernels cached per model and torch version. Off by "
        "default: on a 2-core CPU (SmolLM2-135M, fp32) a step cost 11-13% less, but a model's first run spent "
        "about 55 CPU-seconds more, repaid after about 160 steps (the 129-step demo run 3% slower); later runs "
        "about 9 s more, repaid after about 30 (the demo 8% faster, 1,000 steps 11% faster). Not applied to qlora.",
        group="devices",
        tasks=("sft", "pt"),
    )
    quantization_bit: int = option(
        0,
        "Load the model quantized for (Q)LoRA: 4 (NF4, double quantization) or 8 bits; 0: off. "
        "Needs bitsandbytes, on a CUDA GPU or through its CPU backend (8-bit trains in fp32 there).",
        min=0,
        max=8,
        choices=(0, 4, 8),
        group="devices",
        locked=True,
        hardware=True,
    )

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> TrainConfig:
        """Build a validated config; refuse unknown keys and bad values with a message naming the key."""
        if raw is not None and not isinstance(raw, dict):
            raise TuneForgeError(f"options must be a mapping of option: value, got {type(raw).__name__}")
        raw = dict(raw or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in known:
                hint = difflib.get_close_matches(str(key)[:100], known, n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise TuneForgeError(f"unknown option {_quoted(str(key))}{suggestion}")
        values = {name: _coerce(f, raw[name]) for name, f in known.items() if name in raw}
        task = values.get("task", known["task"].default)
        for name, f in known.items():
            if name not in values and task in f.metadata["task_defaults"]:
                values[name] = f.metadata["task_defaults"][task]
        config = cls(**values)
        config._check_preference()
        config._check_best_model()
        config._check_adapter_variants()
        if config.task == "ppo":
            config._check_ppo()
        if config.task == "grpo":
            config._check_rewards()
        return config

    def _check_rewards(self) -> None:
        """The rewards parse, each built-in named has the settings it reads (its rules are the rewards' own),
        and the batch holds whole groups of completions."""
        check_built_ins(parse_rewards(self.rewards), RewardSettings.from_config(self))
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.nproc_per_node * self.nnodes
        if batch % self.num_generations:
            raise TuneForgeError(
                f"grpo: the batch of {batch} completions (per_device_train_batch_size x gradient_accumulation_steps "
                f"x processes) is not a multiple of num_generations={self.num_generations}"
            )

    def _check_best_model(self) -> None:
        allowed = best_model_choices(self.task)
        if self.metric_for_best_model not in allowed:
            raise TuneForgeError(
                f"metric_for_best_model={self.metric_for_best_model!r} does not apply to task {self.task} "
                f"(use {', '.join(allowed)})"
            )

    def _check_ppo(self) -> None:
        """Refused in one line: the pinned TRL ships no PPO trainer at all, on any device."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            trl = f"TRL {version('trl')}"
        except PackageNotFoundError:
            trl = "TRL"
        raise TuneForgeError(
            f"task ppo cannot run: {trl}, which TuneForge pins, has no PPO trainer (TRL removed PPOTrainer, "
            "PPOConfig and its value-head models in huggingface/trl#7020); train a reward model with task rm and "
            "use it in grpo with rewards: rm:<run>"
        )

    def _check_preference(self) -> None:
        allowed = PREFERENCE_LOSSES.get(self.task)
        if allowed and self.pref_loss not in allowed:
            raise TuneForgeError(
                f"pref_loss={self.pref_loss!r} does not apply to task {self.task} (use {', '.join(allowed)})"
            )

    def _check_adapter_variants(self) -> None:
        """The LoRA variants apply to an adapter, and PiSSA only where its changed base can be undone."""
        chosen = [name for name in ADAPTER_VARIANTS if getattr(self, name)]
        if chosen and self.method not in ("lora", "qlora"):
            raise TuneForgeError(f"{chosen[0]} applies to method lora or qlora, not {self.method}")
        if not self.pissa_init:
            return
        if self.method == "qlora" or self.quantization_bit:
            # PEFT computes the SVD of full-precision weights only.
            raise TuneForgeError("pissa_init needs an unquantized model: use method lora with quantization_bit 0")
        if self.use_dora:
            # PEFT's conversion to plain LoRA keeps only the A and B matrices, not DoRA's magnitudes.
            raise TuneForgeError("pissa_init and use_dora cannot be combined; choose one")
        if self.task in ("dpo", "kto", "classification"):
            # dpo and kto's reference is the model with the adapter off, which PiSSA has changed; the
            # conversion to plain LoRA would drop classification's trained head.
            raise TuneForgeError(f"pissa_init does not apply to task {self.task}; use it with sft, pt or orpo")
        if self.strategy != "ddp":
            raise TuneForgeError(f"pissa_init needs strategy ddp: a {self.strategy} run saves its adapter unconverted")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(parse_yaml(read_config_text(path), str(path)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def read_config_text(path: str | Path) -> str:
    """A config file's text, or one line saying why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TuneForgeError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TuneForgeError(f"cannot read config file {path}: {exc}") from None


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping of option: value, or one located line saying what is wrong with it."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise TuneForgeError(f"{where}: {line}invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TuneForgeError(f"{where}: expected a mapping of option: value, got {type(raw).__name__}")
    return raw


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Check one value against its field's type, bounds and choices."""
    meta, name = f.metadata, f.name
    kind = {"int": int, "float": float, "str": str, "bool": bool}[f.type]
    if kind is bool:
        if not isinstance(value, bool):
            raise TuneForgeError(f"{name} must be true or false, got {_quoted(value)}")
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TuneForgeError(f"{name} must be a whole number, got {_quoted(value)}")
    elif kind is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads '2e-4' (no dot) as a string
            except ValueError:
                raise TuneForgeError(f"{name} must be a number, got {_quoted(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TuneForgeError(f"{name} must be a number, got {_quoted(value)}")
        value = float(value)
    else:
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise TuneForgeError(f"{name} must be text, got {_quoted(value)}")
        limit = meta.get("max_len") or TEXT_OPTION_MAX
        if len(value) > limit:
            raise TuneForgeError(f"{name}: {len(value):,} characters (at most {limit:,})")
    if meta["min"] is not None and value < meta["min"] or meta["max"] is not None and value > meta["max"]:
        raise TuneForgeError(f"{name}={value!r} is out of range [{meta['min']}, {meta['max']}]")
    if meta["choices"] and value not in meta["choices"]:
        raise TuneForgeError(f"{name}={_quoted(value)} is not one of: {', '.join(map(str, meta['choices']))}")
    return value


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}… ({type(value).__name__})"


def default_for(f: dataclasses.Field, task: str):
    return f.metadata["task_defaults"].get(task, f.default)


def fields() -> list[dataclasses.Field]:
    """The option fields in definition order, for building forms."""
    return list(dataclasses.fields(TrainConfig))


def options_where(fact: str) -> tuple[str, ...]:
    """The names of the options whose metadata `fact` (path, locked, card, not_searched) is set, in form order."""
    return tuple(f.name for f in fields() if f.metadata[fact])


def code_options(options: dict[str, Any]) -> list[str]:
    """The options that `options` turns on and that make a job import code that is not the studio's own."""
    named = []
    for f in fields():
        runs_code, value = f.metadata["runs_code"], options.get(f.name)
        try:
            if callable(runs_code) and isinstance(value, str) and runs_code(value) or runs_code is True and value:
                named.append(f.name)
        except TuneForgeError:
            continue  # a value that does not parse names no code; validation refuses it in its own words
    return named
