"""Benchmark tasks from files a user has: lm-eval task YAMLs, and MMLU, C-Eval or CMMLU folders.

Offline no benchmark can be downloaded, so a task is accepted only when its data is local:
- an lm-eval task YAML (`task`, `dataset_path`, `doc_to_text`, ...) whose `dataset_path` is a
  local file or folder, or a datasets builder (json, csv, parquet, ...) whose `data_files` are local.
  Relative data files are read beside the YAML, so a task folder can be moved as a whole;
- a folder in MMLU's layout: `test/<subject>_test.csv` (question, A, B, C, D, answer letter; no
  header, as MMLU ships it, or with one), optional `dev/<subject>_dev.csv` for few-shot examples;
- C-Eval's: `val/<subject>_val.csv` scored (C-Eval's test answers are hidden), `dev/` for few-shot;
- CMMLU's: `test/<subject>.csv` and `dev/<subject>.csv`, with a header (Question, A-D, Answer).

A folder's subjects become one lm-eval task each, with lm-eval's own MMLU, C-Eval and CMMLU
prompts, their CSV rows normalised into JSONL beside the job (a located one-line error for a bad
row). The task configs are plain dicts, written out too, so a run can be repeated with lm_eval's CLI.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from backend.errors import TuneForgeError

LETTERS = ("A", "B", "C", "D")
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")
# lm-eval's own prompts for these benchmarks (lm_eval/tasks/mmlu, ceval, cmmlu), so a folder scores as they do.
ENGLISH_PROMPT = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:"
CHINESE_PROMPT = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案："
# (layout, scored split folder, file suffix, prompt, description)
LAYOUTS = {
    "mmlu": (
        "test",
        "_test",
        ENGLISH_PROMPT,
        "The following are multiple choice questions (with answers) about {}.\n\n",
    ),  # noqa: E501
    "ceval": ("val", "_val", CHINESE_PROMPT, "以下是中国关于{}考试的单项选择题，请选出其中的正确答案。\n\n"),
    "cmmlu": ("test", "", CHINESE_PROMPT, "以下是关于{}的单项选择题，请直接给出正确答案的选项。\n\n"),
}
FEWSHOT_SUFFIX = {"mmlu": "_dev", "ceval": "_dev", "cmmlu": ""}


def task_configs(path: str | Path, workdir: Path) -> list[dict[str, Any]]:
    """The lm-eval task configs (dicts) for one task path; data normalised into workdir."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return [yaml_task(path)]
    if path.is_dir():
        return folder_tasks(path, workdir)
    if not path.exists():
        raise TuneForgeError(f"benchmark task {path}: no such file or folder")
    raise TuneForgeError(f"benchmark task {path}: expected an lm-eval task .yaml, or an MMLU/C-Eval/CMMLU folder")


# ---- lm-eval task YAMLs -----------------------------------------------------------------
def import_lm_eval() -> None:
    """Import lm_eval without the one mark it leaves on this process.

    Its import sets HF_XET_HIGH_PERFORMANCE in os.environ; in the app, that changed environment would make
    the warm job server start again (about 11 s of a core) before the next training run after a benchmark.
    """
    if "lm_eval" in sys.modules:
        return
    before = os.environ.get("HF_XET_HIGH_PERFORMANCE")
    import lm_eval  # noqa: F401

    if before is None:
        os.environ.pop("HF_XET_HIGH_PERFORMANCE", None)


def yaml_task(path: Path) -> dict[str, Any]:
    import_lm_eval()
    from lm_eval.tasks._yaml_loader import load_yaml

    if any("!function" in p.read_text(encoding="utf-8", errors="replace") for p in _with_includes(path)):
        raise TuneForgeError(
            f"{path.name}: uses !function (Python code beside the YAML), which is not run here; "
            "a task must be plain YAML: data, prompt template, choices and metrics"
        )
    try:
        config = load_yaml(path, resolve_func=False)
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        raise TuneForgeError(f"{path.name}: not a readable lm-eval task YAML ({exc})".splitlines()[0]) from None
    if not isinstance(config, dict) or "task" not in config:
        raise TuneForgeError(f"{path.name}: an lm-eval task YAML needs a 'task' name (a group YAML is not supported)")
    for key in ("dataset_path", "doc_to_text"):
        if key not in config:
            raise TuneForgeError(f"{path.name}: '{key}' is missing")
    config.pop("group", None)
    return _localized(config, path)


def _with_includes(path: Path) -> list[Path]:
    """The YAML and the files it includes (lm-eval's `include:` key), as far as they exist."""
    found, queue = [], [path]
    while queue and len(found) < 20:
        current = queue.pop()
        if current in found or not current.is_file():
            continue
        found.append(current)
        try:
            included = (yaml.safe_load(current.read_text(encoding="utf-8")) or {}).get("include")
        except (yaml.YAMLError, AttributeError):
            included = None  # the loader says what is wrong with it
        for name in included if isinstance(included, list) else [included] if included else []:
            queue.append(current.parent / str(name))
    return found


def _localized(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The config with its data files resolved beside the YAML; refused when its data is not local."""
    dataset = str(config["dataset_path"])
    kwargs = dict(config.get("dataset_kwargs") or {})
    if dataset in LOCAL_BUILDERS:
        files = kwargs.get("data_files")
        if not files:
            raise TuneForgeError(f"{path.name}: dataset_path '{dataset}' needs dataset_kwargs.data_files")
        kwargs["data_files"] = _resolved_files(files, path)
        config["dataset_kwargs"] = kwargs
        return config
    local = Path(dataset).expanduser()
    local = local if local.is_absolute() else path.parent / local
    if not local.exists():
        raise TuneForgeError(
            f"{path.name}: dataset_path '{dataset}' is not a local file or folder; offline, a benchmark "
            "must be on disk (download it elsewhere and point dataset_path at it)"
        )
    config["dataset_path"] = str(local.resolve())
    return config


def _resolved_files(files, path: Path):
    if isinstance(files, dict):
        return {split: _resolved_files(f, path) for split, f in files.items()}
    if isinstance(files, list):
        return [_resolved_files(f, path) for f in files]
    local = Path(str(files)).expanduser()
    local = local if local.is_absolute() else path.parent / local
    if not local.exists():
        raise TuneForgeError(f"{path.name}: data file {files} not found (looked at {local})")
    return str(local.resolve())


# ---- MMLU, C-Eval and CMMLU folders ---------------------------------------------------------
def layout_of(folder: Path) -> str:
    if any((folder / "val").glob("*_val.csv")):
        return "ceval"
    scored = list((folder / "test").glob("*.csv"))
    if scored and all(f.stem.endswith("_test") for f in scored):
        return "mmlu"
    if scored:
        return "cmmlu"
    raise TuneForgeError(
        f"benchmark folder {folder.name}: no test/<subject>_test.csv (MMLU), val/<subject>_val.csv (C-Eval) "
        "or test/<subject>.csv (CMMLU) inside"
    )


def folder_tasks(folder: Path, workdir: Path) -> list[dict[str, Any]]:
    layout = layout_of(folder)
    split, suffix, prompt, description = LAYOUTS[layout]
    name = _slug(folder.name)
    configs = []
    for scored in sorted((folder / split).glob(f"*{suffix}.csv")):
        subject = scored.stem[: -len(suffix)] if suffix else scored.stem
        data = workdir / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        files = {"test": _normalised(scored, data / f"{subject}_test.jsonl")}
        fewshot = folder / "dev" / f"{subject}{FEWSHOT_SUFFIX[layout]}.csv"
        if fewshot.exists():
            files["dev"] = _normalised(fewshot, data / f"{subject}_dev.jsonl")
        config = {
            "task": f"{name}_{_slug(subject)}",
            "task_alias": f"{folder.name}/{subject}",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": files},
            "test_split": "test",
            "output_type": "multiple_choice",
            "description": description.format(subject.replace("_", " ")),
            "doc_to_text": prompt,
            "doc_to_choice": list(LETTERS),
            "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer)}}",
            "metric_list": [
                {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")
            ],
            "metadata": {"version": 1.0, "layout": layout},
        }
        if "dev" in files:
            config.update(fewshot_split="dev", fewshot_config={"sampler": "first_n"})
        configs.append(config)
    if not configs:
        raise TuneForgeError(f"benchmark folder {folder.name}: no {split}/<subject>{suffix}.csv files")
    return configs


def _normalised(source: Path, target: Path) -> str:
    """A benchmark CSV as JSONL rows {question, A, B, C, D, answer}; with or without a header row."""
    with open(source, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    named = "question" in header and "answer" in header
    lines = []
    for number, row in enumerate(rows[1:] if named else rows, start=2 if named else 1):
        if not any(cell.strip() for cell in row):
            continue
        record = dict(zip(header, row, strict=False)) if named else _positional(row, source, number)
        record = {k: record.get(k.lower(), "") for k in ("question", *LETTERS, "answer")}
        record["answer"] = record["answer"].strip().upper()
        if record["answer"] not in LETTERS:
            raise TuneForgeError(f"{source.parent.name}/{source.name} line {number}: answer must be A-D")
        lines.append(json.dumps(record, ensure_ascii=False))
    if not lines:
        raise TuneForgeError(f"{source.parent.name}/{source.name}: no questions")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(target)


def _positional(row: list[str], source: Path, number: int) -> dict[str, str]:
    if len(row) < 6:
        raise TuneForgeError(
            f"{source.parent.name}/{source.name} line {number}: expected question, A, B, C, D, answer "
            f"({len(row)} columns)"
        )
    return dict(zip(("question", "a", "b", "c", "d", "answer"), row[-6:], strict=True))


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_").lower() or "task"
