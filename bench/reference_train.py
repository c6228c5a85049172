"""The plain reference for bench/train_speed.py: what a tutorial's transformers + peft script does.

transformers Trainer + peft LoRA, padding to the longest example of each batch, no length
grouping, no packing, with the same model, data, hyperparameters and answer-only loss as the
TuneForge run it is compared with. Prints one JSON line: tokens_seen, train_runtime_s,
tokens_per_s (real, non-padding tokens) and eval_loss.

    python bench/reference_train.py --model DIR --train F --eval F --out DIR
        [--rank 8] [--max-steps N] [--bf16] [--no-eval]   (bench/scale.py's settings; defaults as above)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

CUTOFF, BATCH, LR, SEED = 256, 4, 1e-4, 42


def encode(tokenizer, row: dict) -> dict:
    """The prompt masked to -100, the answer trained: the usual tutorial recipe."""
    user = row["instruction"] + ("\n\n" + row["input"] if row["input"] else "")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}], tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:CUTOFF]
    labels = [-100] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids) :]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--train", "--eval", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha twice it)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: one epoch)")
    parser.add_argument("--bf16", action="store_true", help="the Trainer's bf16 (autocast, as `bf16: true`)")
    parser.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train = [encode(tokenizer, r) for r in json.load(open(args.train, encoding="utf-8"))]
    evals = [encode(tokenizer, r) for r in json.load(open(args.eval, encoding="utf-8"))]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    training = TrainingArguments(
        output_dir=args.out,
        learning_rate=LR,
        num_train_epochs=1,
        max_steps=args.max_steps,
        bf16=args.bf16,
        use_cpu=not torch.cuda.is_available(),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        seed=SEED,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=train,
        eval_dataset=evals,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    began = time.time()
    result = trainer.train()
    runtime = result.metrics.get("train_runtime", time.time() - began)
    tokens = trainer.state.num_input_tokens_seen
    eval_loss = None if args.no_eval else trainer.evaluate()["eval_loss"]
    print(
        json.dumps(
            {
                "tokens_seen": tokens,
                "train_runtime_s": round(runtime, 2),
                "tokens_per_s": round(tokens / runtime, 1),
                "eval_loss": None if eval_loss is None else round(eval_loss, 4),
                "steps": result.global_step,
            }
        )
    )


if __name__ == "__main__":
    main()
