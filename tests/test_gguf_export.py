"""GGUF export: the merged model written as GGUF, read back by transformers and compared, with its Modelfile.

Tiny models of the architectures the converter covers (their tensors, head layouts and biases are the
point), with a 320-token vocabulary (tests.helpers.build_small_vocab_model): reading back a file of
SmolLM2's 49,152 tokens costs about 11 s. And a refusal in one line for what it does not cover.
"""

import json

import gguf
import numpy as np
import pytest
from transformers import AutoTokenizer

from backend.errors import TuneForgeError
from backend.runs.manager import JobManager
from backend.serving.export import Exporter
from backend.serving.gguf_export import check_architecture
from backend.serving.modelfile import modelfile
from tests.helpers import train_in_process

QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    jobs = JobManager(tmp_path_factory.mktemp("gguf") / "workspace")
    yield jobs, Exporter(jobs)
    jobs.shutdown()


@pytest.fixture(scope="module")
def llama_run(studio, small_vocab_model_of, secret_dataset):
    jobs, _ = studio
    return train_in_process(
        jobs, {"model": str(small_vocab_model_of("llama")), "dataset": str(secret_dataset), **QUICK}
    )


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_a_lora_run_exports_as_gguf_that_reads_back_like_the_merged_model(studio, llama_run, gguf_type):
    jobs, exporter = studio
    folder = exporter.export(llama_run, "gguf", gguf_type=gguf_type)
    assert folder.name == f"gguf-{gguf_type}"
    (gguf_file,) = folder.glob("*.gguf")
    assert gguf_file.name == f"{llama_run}-{gguf_type}.gguf"

    # What the file says of itself: llama.cpp's architecture, the tokenizer, the chat template, the card's facts.
    reader = gguf.GGUFReader(str(gguf_file))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama" and fields["general.name"] == llama_run
    assert "Fine-tuned with TuneForge" in fields["general.description"]
    assert fields["tokenizer.ggml.model"] == "gpt2" and "<|im_start|>" in fields["tokenizer.chat_template"]
    assert fields["tokenizer.ggml.eos_token_id"] == AutoTokenizer.from_pretrained(folder.parent / "merged").eos_token_id
    stored = {t.tensor_type.name for t in reader.tensors if len(t.shape) > 1 and t.shape[-1] > 1}
    assert stored == {"F16" if gguf_type == "f16" else "Q8_0"}

    # The export read the file back and compared it on its probe chat: f16 to numerical tolerance, q8_0 in its bound.
    check = json.loads((folder / "verification.json").read_text())
    assert check["passed"] and check["tokens_match"]
    assert check["relative_diff"] < (2e-3 if gguf_type == "f16" else 5e-2) and check["top1_agreement"] >= 0.9, check
    card = (folder / "README.md").read_text()
    assert f"ollama create {llama_run}-{gguf_type} -f Modelfile" in card and f"llama-cli -m {gguf_file.name}" in card
    modelfile_text = (folder / "Modelfile").read_text()
    assert modelfile_text.startswith(f"FROM ./{gguf_file.name}\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile_text and "<|im_start|>{{ .Role }}" in modelfile_text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in modelfile_text

    archive = exporter.zip(llama_run, "gguf", gguf_type=gguf_type)
    assert archive.name == f"{llama_run}-gguf-{gguf_type}.zip" and archive.stat().st_size > gguf_file.stat().st_size


def test_qwen2_exports_with_its_biases_and_a_windowed_model_is_refused(studio, small_vocab_model_of, tiny_model_of,
                                                                       secret_dataset):  # fmt: skip
    """qwen2 keeps its q/k rows as they are and has attention biases. A model that attends through a sliding
    window (the tiny qwen2 of the other tests: 16 tokens) is refused: its GGUF could not carry the window."""
    jobs, exporter = studio
    windowed = json.loads((tiny_model_of("qwen2") / "config.json").read_text())
    with pytest.raises(TuneForgeError, match="attends through a sliding window of 16 tokens, which a GGUF"):
        check_architecture(windowed)
    model = str(small_vocab_model_of("qwen2"))
    run_id = train_in_process(jobs, {"model": model, "dataset": str(secret_dataset), **QUICK})
    folder = exporter.export(run_id, "gguf", gguf_type="f16")
    check = json.loads((folder / "verification.json").read_text())
    assert check["passed"] and check["relative_diff"] < 2e-3 and check["top1_agreement"] == 1.0, check
    assert any(t.name.endswith("attn_q.bias") for t in gguf.GGUFReader(str(next(folder.glob("*.gguf")))).tensors)


def test_an_architecture_without_a_converter_is_refused_in_one_line_before_merging(
    studio, tiny_model_of, secret_dataset
):
    jobs, exporter = studio
    run_id = train_in_process(jobs, {"model": str(tiny_model_of("phi3")), "dataset": str(secret_dataset), **QUICK})
    with pytest.raises(TuneForgeError, match=r"^GGUF export covers the llama, qwen2 architectures; this model is "
                       r"Phi3ForCausalLM\. Export it as merged"):  # fmt: skip
        exporter.export(run_id, "gguf", gguf_type="f16")
    assert not (jobs.run_dir(run_id) / "export").exists()  # nothing merged for nothing
    with pytest.raises(TuneForgeError, match=r"gguf_type 'q4_k_m': use one of f16, bf16, q8_0"):
        exporter.export(run_id, "gguf", gguf_type="q4_k_m")


def test_the_modelfile_speaks_each_template_family_and_falls_back_to_the_files_own():
    llama3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    text = modelfile("m.gguf", llama3, "<|eot_id|>")
    assert "<|start_header_id|>{{ .Role }}<|end_header_id|>" in text and text.count('PARAMETER stop "<|eot_id|>"') == 1
    assert "SYSTEM" not in text
    unknown = modelfile("m.gguf", "{{ messages }}", "</s>")
    assert "TEMPLATE" not in unknown.replace("# No TEMPLATE", "") and 'PARAMETER stop "</s>"' in unknown
    assert "Ollama reads the chat template stored in the GGUF file" in unknown


def test_rows_are_reordered_for_ggml_rope_as_llama_cpp_expects():
    """Two heads of four rows: each head's halves [a b | c d] become interleaved pairs [a c b d]."""
    from backend.serving.gguf_export import _rope_rows

    weight = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert _rope_rows(weight, heads=2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
