"""Each supported architecture through the whole studio: train (LoRA and full), chat, evaluate, export.

Every model is a tiny random one of its architecture (tests.helpers.TINY_ARCHITECTURES: 2 layers,
hidden size 64, beside a real tokenizer), so nothing is downloaded. What is checked is the plumbing
each architecture needs, not what it learns: packed rows that keep examples apart (sliding windows
included), the attention a run names, answers from the chat engine, an evaluation's loss, and
exports that plain transformers and peft load with the same logits as the run.

The runs train in this process through the job's own entry point (tests.helpers.train_in_process):
a job's start-up would cost more than the training of a tiny model.
"""

import json
import math

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from backend.evaluation.evaluate import Evaluator
from backend.events import read_events
from backend.models.sources import is_adapter_dir, load_causal_lm, load_tokenizer
from backend.runfiles import LOG_FILE
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from backend.templates import IGNORE_INDEX, encode_conversation
from backend.training.batching import PER_EXAMPLE, attend_packed_rows, padding_free_collator
from backend.training.flops import step_shape
from backend.training.freeze import decoder_layers
from tests.conftest import SECRET_QA
from tests.helpers import WINDOW, train_in_process

# What packed rows attend with: SDPA once per example, or where a model cannot switch, its own attention
# under a block-diagonal mask (Gemma 2 soft-caps attention logits, which SDPA cannot compute).
CAUSAL_LMS = {
    "llama": PER_EXAMPLE,
    "qwen2": PER_EXAMPLE,
    "qwen3": PER_EXAMPLE,
    "gemma2": "eager",
    "gemma3_text": PER_EXAMPLE,
    "mistral": PER_EXAMPLE,
    "phi3": PER_EXAMPLE,
    "gpt2": PER_EXAMPLE,
}
CLASSIFIERS = ("bert", "distilbert", "roberta", "gpt2", "llama")  # the decoders with a classification head
QUICK = {"max_steps": 2, "cutoff_len": 64, "per_device_train_batch_size": 4, "learning_rate": 1e-2, "save_steps": 0}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The app's own pieces over one workspace: the job manager, the chat engine, the evaluator and the exporter."""
    jobs = JobManager(tmp_path_factory.mktemp("architectures") / "workspace")
    chat = ChatEngine(jobs)
    yield jobs, chat, Evaluator(jobs, chat), Exporter(jobs)
    jobs.shutdown()


def training_attention(jobs, run_id: str) -> str | None:
    """The attention the run's `training` status event names."""
    events = read_events(jobs.run_dir(run_id))
    return next(e for e in events if e["type"] == "status" and e.get("message") == "training")["attention"]


def saved_model_type(run_dir) -> str:
    """The architecture of a full model's weights in a run folder (none for an adapter)."""
    assert not is_adapter_dir(run_dir) and list(run_dir.glob("*.safetensors"))
    return json.loads((run_dir / "config.json").read_text())["model_type"]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("model_type", CAUSAL_LMS)
def test_packed_rows_keep_each_architectures_examples_apart(model_type, tiny_model_of):
    """The training batch's loss is the examples' own, each alone: no example sees another or past its window."""
    model = load_causal_lm(str(tiny_model_of(model_type)))
    model.config.use_cache = False  # as in training
    tokenizer = load_tokenizer(str(tiny_model_of(model_type)))
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in SECRET_QA]
    examples = [encode_conversation(tokenizer, chat, 64) for chat in chats]
    assert min(len(e["input_ids"]) for e in examples) > WINDOW  # the sliding windows are in play
    alone = []
    with torch.no_grad():
        for e in examples:
            trained = sum(label != IGNORE_INDEX for label in e["labels"][1:])
            loss = model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
            alone.append((float(loss) * trained, trained))
        attention, _ = attend_packed_rows(model)
        packed = float(model(**padding_free_collator(model)(examples)).loss)
    assert attention == CAUSAL_LMS[model_type]
    assert packed == pytest.approx(sum(s for s, _ in alone) / sum(n for _, n in alone), rel=1e-5)
    assert len(decoder_layers(model)) == 2  # what method freeze trains
    assert step_shape(model).body > 0  # MFU counts the projections (GPT-2's are Conv1D, not Linear)


@pytest.mark.parametrize("model_type", CAUSAL_LMS)
def test_lora_on_each_causal_lm_then_chat_evaluate_and_both_exports(model_type, tiny_model_of, secret_dataset, studio):
    jobs, chat, evaluator, exporter = studio
    model_dir = tiny_model_of(model_type)
    run_id = train_in_process(jobs, {"model": str(model_dir), "dataset": str(secret_dataset), "val_size": 2, **QUICK})
    assert training_attention(jobs, run_id) == CAUSAL_LMS[model_type]
    assert "attention: " in (jobs.run_dir(run_id) / LOG_FILE).read_text()

    assert chat.reply(run_id, "What is the secret word?", temperature=0, max_new_tokens=6)  # text, if only newlines
    scores = evaluator.evaluate_generation(run_id, max_rows=2, max_new_tokens=6)["metrics"]
    assert math.isfinite(scores["eval_loss"])

    adapter, merged = exporter.export(run_id, "adapter"), exporter.export(run_id, "merged")
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    before = logits(base, ids)
    tuned = logits(PeftModel.from_pretrained(base, adapter), ids)
    assert not torch.allclose(tuned, before, atol=1e-4)  # the adapter learnt something
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(merged), ids), tuned, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", CAUSAL_LMS)
def test_full_training_of_each_causal_lm_saves_a_whole_model(model_type, tiny_model_of, secret_dataset, studio):
    """One step of every weight: a whole model of the architecture, which chat and export load as they load
    the LoRA run's merged export above, so they are not repeated here."""
    jobs = studio[0]
    options = {"model": str(tiny_model_of(model_type)), "dataset": str(secret_dataset), **QUICK}
    run_id = train_in_process(jobs, {**options, "method": "full", "max_steps": 1, "val_size": 0})
    assert training_attention(jobs, run_id) == CAUSAL_LMS[model_type]
    assert saved_model_type(jobs.run_dir(run_id)) == model_type


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_lora_classifier_on_each_architecture_predicts_evaluates_and_exports(model_type, tiny_model_of, studio):
    jobs, _, evaluator, exporter = studio
    model_dir = tiny_model_of(model_type)
    options = {"task": "classification", "model": str(model_dir), "dataset": "demo_reviews", "val_size": 0.1}
    run_id = train_in_process(jobs, {**options, **QUICK})

    probabilities = evaluator.predict_class(run_id, "The food was wonderful.")
    assert set(probabilities) == {"negative", "positive"} and sum(probabilities.values()) == pytest.approx(1)
    scores = evaluator.evaluate(run_id)
    assert 0 <= scores["accuracy"] <= 1 and math.isfinite(scores["eval_loss"])

    adapter, merged = exporter.export(run_id, "adapter"), exporter.export(run_id, "merged")
    folded = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    base.config.pad_token_id = folded.config.pad_token_id
    tuned = PeftModel.from_pretrained(base, adapter).eval()  # the trained head comes with the adapter
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    torch.testing.assert_close(logits(folded, ids), logits(tuned, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_full_training_of_each_classifier_saves_a_whole_model(model_type, tiny_model_of, studio):
    jobs = studio[0]
    options = {"task": "classification", "model": str(tiny_model_of(model_type)), "dataset": "demo_reviews"}
    run_id = train_in_process(jobs, {**options, **QUICK, "method": "full", "max_steps": 1, "val_size": 0})
    assert saved_model_type(jobs.run_dir(run_id)) == model_type
    labels = json.loads((jobs.run_dir(run_id) / "config.json").read_text())["id2label"]
    assert labels == {"0": "negative", "1": "positive"}
