"""GGUF export through llama.cpp itself: convert, quantize, load and compare, for every architecture the studio trains.

The runtime is the one `make test` builds (`make llamacpp`); these tests run the real llama.cpp tools. Tiny
random models (tests.helpers.build_gguf_tiny_model) are shaped for the k-quants: every matrix row a whole
number of 256-weight blocks, so q4_k_m really packs them as k-quants.
"""

import json
import subprocess
import sys

import gguf
import pytest

from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from backend.serving import llamacpp
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter, gguf_verification
from backend.serving.gguf_export import (
    BOUNDS,
    agreeing,
    check_architecture,
    transformers_agree,
    verify,
    write_gguf,
)
from backend.serving.modelfile import modelfile
from tests.helpers import GGUF_ARCHITECTURES, ROOT, free_port, train_in_process, wait_for

QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0}
PROMPT = list(range(300, 324))  # 24 token ids every tiny vocabulary has: longer than the tiny models' 16-token windows
WHOLE_CONTEXT = ("mistral", "qwen2", "phi3")
# llama.cpp's name for each architecture
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
             "gemma3_text": "gemma3", "phi3": "phi3", "gpt2": "gpt2"}  # fmt: skip


@pytest.mark.parametrize("model_type", GGUF_ARCHITECTURES)
def test_every_architecture_converts_quantizes_and_runs_in_llama_cpp(model_type, gguf_tiny_model_of, tmp_path):
    """llama.cpp's converter writes the f16, llama-quantize the q4_k_m; llama-server loads both, and each of the
    f16's greedy tokens from a 24-token prompt (past every sliding window) is transformers' own choice, fed the
    same context (a random model's near-ties within float16 rounding count: either is the likeliest)."""
    folder = gguf_tiny_model_of(model_type)
    # No architecture in the name: llama.cpp looks for Phi-3's own special tokens in a model named phi3.
    f16 = write_gguf(folder, tmp_path / "m-f16.gguf", "f16", {"name": "tiny"})
    q4 = llamacpp.quantize(f16, tmp_path / "m-q4_k_m.gguf", "q4_k_m")
    reader = gguf.GGUFReader(str(q4))
    assert reader.fields["general.architecture"].contents() == GGUF_ARCH[model_type]
    packed = {t.tensor_type.name for t in reader.tensors if len(t.shape) > 1}
    assert "Q4_K" in packed and q4.stat().st_size < 0.5 * f16.stat().st_size, packed

    # llama.cpp carries Gemma's sliding windows; its Mistral (the llama graph), Qwen2 and Phi-3 graphs attend to
    # the whole context: the same model while the context fits the window (4096 tokens for Mistral 7B v0.1 and
    # Phi-3-mini-4k, none for later Mistrals and for Qwen2.5), so those are compared within it.
    prompt = PROMPT[:8] if model_type in WHOLE_CONTEXT else PROMPT
    with llamacpp.LlamaServer(f16, ctx=256) as server:
        got = server.greedy(prompt, 8)
    assert len(got) == 8 and transformers_agree(folder, prompt, got) == 8, got
    with llamacpp.LlamaServer(q4, ctx=256) as server:
        assert len(server.greedy(prompt, 8)) == 8


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, gguf_tiny_model_of, secret_dataset):
    jobs = JobManager(tmp_path_factory.mktemp("gguf") / "workspace")
    run_id = train_in_process(
        jobs, {"model": str(gguf_tiny_model_of("llama")), "dataset": str(secret_dataset), **QUICK}
    )
    yield jobs, run_id
    jobs.shutdown()


def test_a_lora_run_exports_as_a_q4_k_m_checked_in_llama_cpp_and_chats_on_it(lora_run):
    jobs, run_id = lora_run
    exporter = Exporter(jobs)
    folder = exporter.export(run_id, "gguf", gguf_type="q4_k_m")
    assert folder.name == "gguf-q4_k_m"
    (gguf_file,) = folder.glob("*.gguf")  # the f16 it was quantized from is not left behind
    assert gguf_file.name == f"{run_id}-q4_k_m.gguf"
    reader = gguf.GGUFReader(str(gguf_file))
    fields = {name: field.contents() for name, field in reader.fields.items() if name.startswith(("general", "tok"))}
    assert fields["general.name"] == run_id and "Fine-tuned with TuneForge" in fields["general.description"]
    assert "<|im_start|>" in fields["tokenizer.chat_template"]

    # What llama.cpp measured: the greedy tokens against transformers' merged model, perplexity against f16.
    check = gguf_verification(folder)
    assert check["tokens_match"] and check["tokens"] == 24 and 0 <= check["agree"] <= 24, check
    assert 1 < check["ppl"] <= BOUNDS["q4_k_m"][1] * check["ppl_f16"], check
    assert check["ppl_text"] == "general_text.txt" and check["size_bytes"] == gguf_file.stat().st_size
    card = (folder / "README.md").read_text()
    assert f"ollama create {run_id}-q4_k_m -f Modelfile" in card and "Perplexity in llama.cpp" in card
    text = (folder / "Modelfile").read_text()
    assert text.startswith(f"FROM ./{gguf_file.name}\n") and 'PARAMETER stop "<|im_end|>"' in text

    # The Chat tab's engine runs the exported file on llama.cpp: listed, and answering greedily.
    chat = ChatEngine(jobs)
    target = f"gguf:{gguf_file}"
    assert target in chat.targets()
    try:
        reply = chat.reply(target, "Hello", [], temperature=0.0, max_new_tokens=8)
        assert isinstance(reply, str) and reply == chat.reply(target, "Hello", [], temperature=0.0, max_new_tokens=8)
    finally:
        chat.unload_gguf()
    with pytest.raises(TuneForgeError, match=r"GGUF file .*nothing\.gguf does not exist"):
        list(chat.stream("gguf:" + str(folder / "nothing.gguf"), "Hello"))


def test_the_adapter_exports_as_a_gguf_lora_that_runs_on_its_base(lora_run):
    jobs, run_id = lora_run
    folder = Exporter(jobs).export(run_id, "gguf_adapter")
    (lora,) = folder.glob("*.gguf")
    assert gguf.GGUFReader(str(lora)).fields["general.type"].contents() == "adapter"
    check = json.loads((folder / "verification.json").read_text())
    base = check["base_gguf"]
    assert base.endswith("gguf-tiny-llama-f16.gguf") and check["tokens_match"], check
    # On its base in llama.cpp, the LoRA continues the probe chat as the merged model does in transformers.
    assert check["agree"] == check["tokens"] == 24, check  # f16 LoRA on an f16 base: every token
    text = (folder / "Modelfile").read_text()
    assert text.startswith(f"FROM {base}\nADAPTER ./{lora.name}\n")
    archive = Exporter(jobs).zip(run_id, "gguf_adapter")
    assert archive.name == f"{run_id}-gguf_adapter.zip"


def test_serve_runs_a_gguf_on_llama_cpp_with_the_openai_api(lora_run):
    from openai import APIStatusError, OpenAI

    jobs, run_id = lora_run
    (gguf_file,) = (jobs.run_dir(run_id) / "export" / "gguf-q4_k_m").glob("*.gguf")
    port = free_port()
    command = [sys.executable, "-m", "backend.serve", "--gguf", str(gguf_file), "--port", str(port),
               "--api-key", "sk-test"]  # fmt: skip
    log = jobs.workspace / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "serving model" in log.read_text(errors="replace") or proc.poll() is not None, timeout=120)
        assert f"serving model {gguf_file.stem} at http://127.0.0.1:{port}/v1 on llamacpp" in log.read_text()
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test")
        name = gguf_file.stem
        assert [m.id for m in client.models.list().data] == [name]
        chat = [{"role": "user", "content": "Hello"}]
        whole = client.chat.completions.create(model=name, messages=chat, max_tokens=6, temperature=0)
        streamed = client.chat.completions.create(model=name, messages=chat, max_tokens=6, temperature=0, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == whole.choices[0].message.content
        completion = client.completions.create(model=name, prompt="The sea is", max_tokens=4, temperature=0)
        assert completion.choices[0].text
        with pytest.raises(APIStatusError) as refused:
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").models.list()
        assert refused.value.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    wait_for(lambda: proc.poll() is not None, timeout=20)
    refused = subprocess.run([sys.executable, "-m", "backend.serve", "--gguf", "/nonexistent.gguf"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.strip() == "error: --gguf /nonexistent.gguf: no such .gguf file"


def test_what_llama_cpp_cannot_convert_is_refused_in_one_line_naming_it():
    with pytest.raises(TuneForgeError, match=r"^llama\.cpp cannot convert the OPTForCausalLM architecture to GGUF;"):
        check_architecture({"architectures": ["OPTForCausalLM"], "model_type": "opt"})
    for arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM", "GPT2LMHeadModel"):
        assert check_architecture({"architectures": [arch]}) == arch
    with pytest.raises(TuneForgeError, match=r"gguf_type 'q2_k': use one of f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m"):
        write_gguf(ROOT, ROOT / "never.gguf", "q2_k")
    assert agreeing([1, 2, 3, 4], [1, 2, 9, 4]) == 2


@pytest.mark.slow
def test_the_embedded_smollm2_as_q4_k_m_keeps_its_greedy_answer_and_perplexity(default_model_dir, tmp_path):
    """The real model: q4_k_m loads in llama.cpp, continues the probe chat, and its perplexity on the bundled
    general text is within the bound of f16's."""
    out = tmp_path / "smollm2-q4_k_m.gguf"
    write_gguf(default_model_dir, out, "q4_k_m", {"name": "SmolLM2-135M-Instruct"})
    f16 = tmp_path / "smollm2-q4_k_m.gguf.f16"
    check = verify(default_model_dir, out, "q4_k_m", ROOT / "assets" / "general_text.txt", f16)
    assert check["passed"] and check["tokens_match"], check
    assert check["agree"] >= 4 and check["ppl_f16"] < check["ppl"] <= 1.15 * check["ppl_f16"], check
    assert out.stat().st_size < 0.45 * f16.stat().st_size


def test_the_modelfile_speaks_each_template_family_and_falls_back_to_the_files_own():
    llama3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    text = modelfile("m.gguf", llama3, "<|eot_id|>")
    assert "<|start_header_id|>{{ .Role }}<|end_header_id|>" in text and text.count('PARAMETER stop "<|eot_id|>"') == 1
    assert "SYSTEM" not in text
    unknown = modelfile("m.gguf", "{{ messages }}", "</s>")
    assert "TEMPLATE" not in unknown.replace("# No TEMPLATE", "") and 'PARAMETER stop "</s>"' in unknown
    assert "Ollama reads the chat template stored in the GGUF file" in unknown
    adapter = modelfile("lora.gguf", "{{ messages }}", "</s>", base="/models/base-f16.gguf")
    assert adapter.startswith("FROM /models/base-f16.gguf\nADAPTER ./lora.gguf\n")


def test_llama_cpp_tools_take_their_thread_count_from_omp_num_threads(tmp_path, monkeypatch):
    """Beside another busy process a thread a core waits at llama.cpp's barriers, so OMP_NUM_THREADS (which the test
    workers set) caps the tools; unset, llama.cpp picks its own."""
    tool, seen = tmp_path / "tool", tmp_path / "args"
    tool.write_text(f'#!/bin/sh\necho "$@" > {seen}\necho "Final estimate: PPL = 7.25 +/- 0.5"\n')
    tool.chmod(0o755)
    monkeypatch.setattr(llamacpp, "bin_path", lambda name: tool)
    f16, q4 = tmp_path / "m-f16.gguf", tmp_path / "m-q4.gguf"
    given = lambda args: args[args.index("-t") + 1] if "-t" in args else None  # noqa: E731
    for omp, threads in (("1", "1"), ("", None)):
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
        llamacpp.quantize(f16, q4, "q4_k_m")
        assert seen.read_text().split() == [str(f16), str(q4), "Q4_K_M", *([threads] if threads else [])]
        assert llamacpp.perplexity(q4, tmp_path / "text.txt", 128, 8) == 7.25
        assert given(seen.read_text().split()) == threads
        assert given(llamacpp.LlamaServer(q4).command) == threads


def test_llama_perplexity_that_loses_its_result_or_dies_is_tried_again_and_a_refusal_names_its_exit(
    tmp_path, monkeypatch
):
    """The tool stands in as a script: its log lost at exit (exit 0), then killed mid-run, then answering;
    then refusing the file."""
    tool, tries = tmp_path / "llama-perplexity", tmp_path / "tries"
    count = f"echo run >> {tries}; n=$(wc -l < {tries})"
    tool.write_text(
        f"#!/bin/sh\n{count}\necho 'perplexity: 4.46 seconds per pass - ETA'\n"
        '[ "$n" -eq 1 ] && exit 0\n'
        '[ "$n" -eq 2 ] && kill -SEGV $$\n'
        '[ "$n" -eq 3 ] && echo "Final estimate: PPL = 7.25 +/- 0.5" && exit 0\n'
        'echo "failed to load model"; exit 1\n'
    )
    tool.chmod(0o755)
    monkeypatch.setattr(llamacpp, "bin_path", lambda name: tool)
    assert llamacpp.perplexity(tmp_path / "m.gguf", tmp_path / "text.txt", 128, 8) == 7.25
    assert tries.read_text().count("run") == 3
    with pytest.raises(TuneForgeError, match=r"^llama-perplexity failed on m\.gguf \(exit code 1\): failed to load"):
        llamacpp.perplexity(tmp_path / "m.gguf", tmp_path / "text.txt", 128, 8)
    assert tries.read_text().count("run") == 4  # a refusal is not tried again
