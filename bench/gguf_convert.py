"""Memory of converting a .gguf into a safetensors folder: tensor by tensor (ours) against transformers' whole load.

    python bench/gguf_convert.py --json [--gguf FILE | --synthetic HIDDEN,LAYERS] [--dtype bfloat16]
                                  [--paths streaming,whole]

Each path runs in its own process, so each peak (ru_maxrss) is its own. `baseline_rss_mb` is the process
after importing torch, transformers and gguf, before the conversion starts; `conversion_rss_mb` is the
peak above it. `bf16_size_mb` is the model's weights in bf16 (parameters × 2), the goal's yardstick:
conversion should peak under 1.3× that. Without --gguf: the embedded SmolLM2-135M (Q4_1/Q8_0).
The "whole" path is the one convert_gguf used before: transformers' from_pretrained in fp32, then save.
--synthetic builds a larger file to convert: a random Llama of that hidden size and depth (MLP 4× hidden,
64-wide heads) beside SmolLM2's tokenizer, written as Q8_0 by llama.cpp's converter (`make llamacpp`).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(source: Path, path: str, dtype: str) -> dict:
    import gguf  # noqa: F401  (imported before the baseline, as the conversion needs it)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from backend.models.sources import _convert_whole, convert_gguf
    from backend.training.flops import parameter_count

    baseline = peak_mb()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model"
        if path == "streaming":
            convert_gguf(source, target, dtype=dtype)
        else:
            target.mkdir()
            _convert_whole(source, target, "float32")
        seconds = time.perf_counter() - began
        peak = peak_mb()
        parameters = parameter_count(target)
        written = sum(f.stat().st_size for f in target.glob("*.safetensors"))
    bf16_mb = parameters * 2 / 2**20
    return {
        "path": path,
        "dtype": dtype if path == "streaming" else "float32",
        "parameters": parameters,
        "bf16_size_mb": round(bf16_mb, 1),
        "written_mb": round(written / 2**20, 1),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "conversion_rss_mb": round(peak - baseline, 1),
        "conversion_over_bf16": round((peak - baseline) / bf16_mb, 2),
        "peak_over_bf16": round(peak / bf16_mb, 2),
        "seconds": round(seconds, 1),
    }


def synthetic_gguf(hidden: int, layers: int, folder: Path) -> Path:
    """A random Llama of this size as Q8_0, through llama.cpp's converter, in folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from backend.models.sources import default_model_dir
    from backend.serving import llamacpp

    tokenizer_dir = default_model_dir(progress=lambda msg: None)
    real = AutoConfig.from_pretrained(tokenizer_dir)
    config = AutoConfig.for_model(
        "llama", hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, vocab_size=real.vocab_size,
        tie_word_embeddings=True, bos_token_id=real.bos_token_id, eos_token_id=real.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder / "hf")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder / "hf")
    del model
    return llamacpp.convert_model(folder / "hf", folder / f"random-{hidden}x{layers}.Q8_0.gguf", "q8_0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gguf", type=Path, help="the .gguf to convert (default: the embedded SmolLM2-135M)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--paths", default="streaming,whole", help="comma-separated: streaming, whole")
    parser.add_argument("--synthetic", help="HIDDEN,LAYERS: convert a random Llama of that size instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into:
        hidden, layers = (int(n) for n in args.synthetic.split(","))
        print(synthetic_gguf(hidden, layers, args.build_into))
        return
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-gguf-bench-")) if args.synthetic else None
    if args.synthetic:
        # Built in a process of its own: Linux keeps ru_maxrss across fork and exec, so a worker forked from
        # a process that had held the model would report that process's peak as its own.
        command = [sys.executable, __file__, "--synthetic", args.synthetic, "--build-into", str(workdir)]
        built = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
        args.gguf = Path(built.stdout.strip().splitlines()[-1])
    if args.gguf is None:
        from backend.models.sources import DEFAULT_GGUF_FILE, embedded_gguf_dir

        args.gguf = embedded_gguf_dir() / DEFAULT_GGUF_FILE
    if args.worker:
        print(json.dumps(worker(args.gguf, args.worker, args.dtype)))
        return
    results = []
    for path in args.paths.split(","):
        command = [sys.executable, __file__, "--gguf", str(args.gguf), "--dtype", args.dtype, "--worker", path]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else {"path": path, "error": done.stderr.strip()[-500:]})
    report = {"gguf": args.gguf.name, "gguf_mb": round(args.gguf.stat().st_size / 2**20, 1), "paths": results}
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
