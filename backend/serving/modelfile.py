"""An Ollama Modelfile for an exported GGUF: FROM the file, the chat template in Ollama's Go syntax, stops, system.

Ollama does not run Jinja, so the run's chat template is recognised by its turn markers and written
as the matching Ollama template (ChatML, Llama 3, Phi-3 or Mistral's [INST]). A template it does not
recognise gets no TEMPLATE line: Ollama then picks one from the chat template stored in the GGUF, and
the Modelfile says so. A default system prompt that the Jinja template writes when a chat has none
(SmolLM2's "You are a helpful AI assistant named SmolLM, ...") becomes SYSTEM, so Ollama answers as
the run's own template would.
"""

from __future__ import annotations

import re

CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
LLAMA3 = (
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PHI3 = (
    "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
    "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}"
    "<|assistant|>\n"
)
INST = (
    '{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}[INST] '
    "{{ if and $.System (eq $i 0) }}{{ $.System }}\n\n{{ end }}{{ $m.Content }} [/INST]"
    '{{- else if eq $m.Role "assistant" }}{{ $m.Content }}</s>{{ end }}{{ end }}'
)
# turn marker in the Jinja template → (Ollama template, its stop strings, how the default system text sits)
FAMILIES = (
    ("<|im_start|>", CHATML, ["<|im_end|>", "<|im_start|>"], r"<\|im_start\|>system\n(.+?)<\|im_end\|>"),
    ("<|start_header_id|>", LLAMA3, ["<|eot_id|>", "<|start_header_id|>"], None),
    ("<|end|>", PHI3, ["<|end|>", "<|user|>", "<|assistant|>"], None),
    ("[INST]", INST, ["[INST]", "[/INST]"], None),
)


def modelfile(
    gguf_name: str, chat_template: str | None, eos_token: str | None, base: str | None = None, mmproj: str | None = None
) -> str:
    """The Modelfile's text, for a GGUF file lying beside it; with base (a GGUF model's path) the file is a
    LoRA adapter, applied to that base; mmproj: a vision model's image encoder beside it, which this
    Modelfile does not load (it says so, and how llama.cpp reads it)."""
    lines = [f"FROM ./{gguf_name}", ""] if base is None else [f"FROM {base}", f"ADAPTER ./{gguf_name}", ""]
    if mmproj:
        lines += [f"# Text only: the image encoder is in {mmproj}, which llama.cpp reads with",
                  f"# llama-server -m {gguf_name} --mmproj {mmproj}", ""]  # fmt: skip
    template = chat_template or ""
    family = next((f for f in FAMILIES if f[0] in template), None)
    if family is None:
        lines += ["# No TEMPLATE: Ollama reads the chat template stored in the GGUF file.", ""]
        stops = [eos_token] if eos_token else []
    else:
        _, go_template, stops, system_pattern = family
        lines += [f'TEMPLATE """{go_template}"""', ""]
        default_system = re.search(system_pattern, template, re.DOTALL) if system_pattern else None
        if default_system:
            lines += [f'SYSTEM """{default_system.group(1)}"""', ""]
        stops = [*stops, *([eos_token] if eos_token and eos_token not in stops else [])]
    lines += [f'PARAMETER stop "{stop}"' for stop in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"
