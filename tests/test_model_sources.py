"""`model:` as a .gguf file, and models that cannot be used refused in one line before anything slow loads.

The GGUF here is written by the test: a 2-layer Llama with hidden size 64, a byte-level vocabulary
(SmolLM2's special tokens and chat template), and its embedding stored as Q8_0, so that converting
it proves the dequantization. It is converted into this module's own model cache, so every run of
the suite sees the first conversion happen.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.errors import TuneForgeError
from backend.events import read_events
from backend.models.sources import GGUF_ORIGIN_FILE, embedded_gguf_dir, resolve_model
from backend.runs.job_manager import JobManager
from tests.helpers import SPECIAL, byte_level_alphabet, run_cli_in_process, write_config


def write_gguf(
    path: Path, architecture: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4
) -> np.ndarray:
    """A tiny GGUF as llama.cpp names its tensors; returns the float embedding that was stored as Q8_0."""
    import gguf

    from backend.models.checks import gguf_metadata
    from backend.models.sources import DEFAULT_GGUF_FILE

    template = gguf_metadata(embedded_gguf_dir() / DEFAULT_GGUF_FILE)["tokenizer.chat_template"]
    tokens = SPECIAL + byte_level_alphabet() + ["\u0120t"]  # and one merge, Ġ t: " t"
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(layers)
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(2 * hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads // 2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIAL) + [1] * (len(tokens) - len(SPECIAL)))  # 3: control, 1: normal
    writer.add_token_merges(["\u0120 t"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(template)

    rng = np.random.default_rng(0)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    embedding = weight(len(tokens), hidden)
    q8 = gguf.GGMLQuantizationType.Q8_0
    writer.add_tensor("token_embd.weight", gguf.quants.quantize(embedding, q8), raw_dtype=q8)
    kv = heads // 2 * (hidden // heads)
    for i in range(layers):
        for name, shape in (
            ("attn_norm", (hidden,)), ("ffn_norm", (hidden,)), ("attn_q", (hidden, hidden)), ("attn_k", (kv, hidden)),
            ("attn_v", (kv, hidden)), ("attn_output", (hidden, hidden)), ("ffn_gate", (2 * hidden, hidden)),
            ("ffn_up", (2 * hidden, hidden)), ("ffn_down", (hidden, 2 * hidden)),
        ):  # fmt: skip
            writer.add_tensor(
                f"blk.{i}.{name}.weight", np.ones(shape, np.float32) if "norm" in name else weight(*shape)
            )
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return embedding


@pytest.fixture(scope="module")
def own_model_cache(tmp_path_factory, tiny_model_dir):
    """This module's model cache, for this process and the jobs it starts; the shared one is put back after.

    The session's models (the tiny model, the converted default) are found first, in the shared cache.
    """
    before = os.environ.get("TUNEFORGE_CACHE")
    os.environ["TUNEFORGE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["TUNEFORGE_CACHE"]
    else:
        os.environ["TUNEFORGE_CACHE"] = before


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-chat.Q8_0.gguf"
    return path, write_gguf(path)


@pytest.fixture(scope="module")
def gguf_run(own_model_cache, tmp_path_factory, tiny_gguf, secret_dataset) -> Path:
    """Two LoRA steps through the CLI, with `model:` the GGUF file, in a workspace the app can read."""
    workspace = tmp_path_factory.mktemp("gguf-app") / "workspace"
    run_dir = workspace / "runs" / "gguf-lora"
    config = write_config(
        workspace.parent / "run.yaml",
        model=str(tiny_gguf[0]),
        dataset=str(secret_dataset),
        output_dir=str(run_dir),
        max_steps=2,
        val_size=0,
        save_steps=0,
    )
    result = run_cli_in_process(config)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_the_model_tab_describes_a_gguf_without_converting_it(own_model_cache, tiny_gguf):
    from backend.models.info import inspect_model
    from backend.paths import model_cache_dir

    with pytest.raises(TuneForgeError, match=r"^tiny-chat.Q8_0.gguf: a llama GGUF, not converted yet; its first run"):
        inspect_model(str(tiny_gguf[0]))  # answers at once: converting a large GGUF takes minutes
    assert not list(model_cache_dir().glob("tiny-chat*"))


def test_a_gguf_file_trains_converted_once_into_the_cache_with_progress_in_the_events(gguf_run, tiny_gguf):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path, embedding = tiny_gguf
    messages = [e["message"] for e in read_events(gguf_run) if e["type"] == "status"]
    assert any(m.startswith(f"Converting {path.name} to ") and "dequantized" in m for m in messages), messages
    assert f"{path.name} converted and cached" in messages

    converted = Path(resolve_model(str(path), progress=pytest.fail))  # the second use converts nothing
    origin = json.loads((converted / GGUF_ORIGIN_FILE).read_text())
    assert converted.name == f"tiny-chat.Q8_0-{origin['sha256'][:12]}" and origin["gguf_file"] == path.name
    renamed = path.with_name("renamed.gguf")  # the same content under another name: the same converted copy
    shutil.copy(path, renamed)
    assert resolve_model(str(renamed), progress=lambda msg: None) == str(converted)

    from backend.models.info import inspect_model

    assert inspect_model(str(path)).num_layers == 2  # converted by its run: now the Model tab reads its sizes
    base = AutoModelForCausalLM.from_pretrained(converted)
    stored = base.get_input_embeddings().weight.detach().numpy()
    assert np.abs(stored - embedding).max() < 1e-3  # Q8_0 read back as floats, not zeros or raw blocks
    tuned = PeftModel.from_pretrained(base, gguf_run)  # plain peft, from the run folder as it was left
    assert json.loads((gguf_run / "adapter_config.json").read_text())["base_model_name_or_path"] == str(converted)
    assert any("lora_A" in name for name, _ in tuned.named_parameters())


def test_a_run_on_a_gguf_base_chats_and_its_export_names_the_original_file(gguf_run, tiny_gguf):
    from backend.serving.chat import ChatEngine
    from backend.serving.export import Exporter

    jobs = JobManager(gguf_run.parent.parent)
    try:
        assert isinstance(ChatEngine(jobs).reply(gguf_run.name, "Hello", max_new_tokens=3), str)
        folder = Exporter(jobs).export(gguf_run.name, "merged")
    finally:
        jobs.shutdown()
    card = (folder / "README.md").read_text()
    origin = json.loads((Path(resolve_model(str(tiny_gguf[0]))) / GGUF_ORIGIN_FILE).read_text())
    assert "base_model: tiny-chat.Q8_0.gguf\n" in card
    assert f"the GGUF file **tiny-chat.Q8_0.gguf** (sha256 `{origin['sha256']}`)" in card
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()


# ---- models that cannot be used --------------------------------------------------------------------
def break_model(folder: Path, how: str) -> None:
    """A copy of the tiny model, broken in one way a downloaded or hand-copied model can be."""
    config = json.loads((folder / "config.json").read_text())
    if how == "no config":
        (folder / "config.json").unlink()
    elif how == "unknown architecture":
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "tuneforge_unknown"}))
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "missing shard":
        index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
        (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    elif how == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    elif how == "broken tokenizer":
        (folder / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": 7}}')
    elif how == "remote code":
        (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "custom.Config"}}))
    elif how == "adapter":
        (folder / "config.json").unlink()
        (folder / "adapter_config.json").write_text("{}")


REFUSALS = {
    "no config": "has no config.json; is it a Hugging Face model folder?",
    "unknown architecture": "architecture 'tuneforge_unknown' is not supported by transformers",
    "no weights": "has no weights (no *.safetensors or pytorch_model*.bin); copy the model's weight files",
    "missing shard": "lacks 1 of its 2 weight shards (model-00002-of-00002.safetensors); copy them in",
    "no tokenizer": "has no tokenizer (tokenizer.json, tokenizer.model, vocab.json, vocab.txt...)",
    "broken tokenizer": "its tokenizer.json will not load (",
    "remote code": "ships its own Python code (auto_map in config.json); turn on trust_remote_code only if",
    "adapter": "is a PEFT adapter, not a model; train on its base model",
    "not gguf": "is not a GGUF file (it does not start with 'GGUF'); give a .gguf model file",
    "gguf architecture": "GGUF architecture 'tuneforge-arch' cannot be read by transformers",
}


@pytest.fixture()
def bad_model(request, tmp_path, tiny_model_dir) -> str:
    how = request.param
    if how == "not gguf":
        path = tmp_path / "notes.gguf"
        path.write_text("these are notes, not a model")
    elif how == "gguf architecture":
        path = tmp_path / "odd.gguf"
        write_gguf(path, architecture="tuneforge-arch", hidden=32, layers=1)
    else:
        path = tmp_path / "model"
        shutil.copytree(tiny_model_dir, path)
        break_model(path, how)
    return str(path)


@pytest.mark.parametrize("bad_model", list(REFUSALS), indirect=True)
def test_a_model_that_cannot_be_used_is_refused_at_start_in_one_line(bad_model, request, workspace):
    """Through the manager, as the browser and the API start runs: refused before anything is queued."""
    how = request.node.callspec.params["bad_model"]
    expected = REFUSALS[how]
    jobs = JobManager(workspace)
    try:
        with pytest.raises(TuneForgeError) as refused:
            jobs.start({"model": bad_model, "max_steps": 1})
    finally:
        jobs.shutdown()
    assert expected in str(refused.value) and bad_model in str(refused.value)
    assert "\n" not in str(refused.value)
    assert jobs.list_runs() == []
    if how != "remote code":  # the job's own check (loading refuses remote code, see test_model_safety)
        with pytest.raises(TuneForgeError, match="^" + str(refused.value)[:40]):
            resolve_model(bad_model)


@pytest.mark.parametrize("bad_model", ["no weights"], indirect=True)
def test_the_cli_refuses_an_unusable_model_in_one_line_before_loading_it(bad_model, tmp_path, secret_dataset):
    config = write_config(
        tmp_path / "run.yaml", model=bad_model, dataset=str(secret_dataset), output_dir=str(tmp_path / "run")
    )
    result = run_cli_in_process(config)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: model folder {bad_model} ") and REFUSALS["no weights"] in last
    assert not (tmp_path / "run").exists()  # refused before the run folder, let alone the model, was made
