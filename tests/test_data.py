"""Datasets: every format and file type becomes examples; bad input gets a located message."""

import json

import pandas as pd
import pytest

from backend.access.uploads import store_upload
from backend.data import DataOptions, ExampleReader, load_splits, register_dataset
from backend.data.report import inspect_dataset
from backend.errors import TuneForgeError
from tests.helpers import DATA, LLAMAFACTORY_DATA


def examples(spec, **options):
    return list(ExampleReader(str(spec), DataOptions(dataset=str(spec), **options)))


def report(spec, **options):
    return inspect_dataset(DataOptions(dataset=str(spec), **options))


@pytest.mark.parametrize(
    "name, fmt, rows",
    [
        ("alpaca.json", "alpaca", 2),
        ("sharegpt.json", "sharegpt", 2),
        ("openai.jsonl", "openai", 2),
        ("prompt_completion.csv", "prompt_completion", 2),
    ],
)
def test_each_chat_format_is_detected_and_previewed(name, fmt, rows):
    result = report(DATA / name)
    assert (result.format, result.usable_rows) == (fmt, rows)
    assert result.preview and set(result.preview[0]) <= set(result.columns)


def test_alpaca_system_history_and_input_become_messages():
    first, second = examples(DATA / "alpaca.json")
    assert first["messages"] == [
        {"role": "user", "content": "Translate to French\n\ncat"},
        {"role": "assistant", "content": "chat"},
    ]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_sharegpt_roles_are_mapped():
    assert [m["role"] for m in examples(DATA / "sharegpt.json")[1]["messages"]] == ["system", "user", "assistant"]


def test_tsv_parquet_txt_and_column_json_are_read(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("prompt\tcompletion\nHi\tHello\nBye\tGoodbye, friend\n")
    parquet = tmp_path / "pairs.parquet"
    pd.DataFrame({"prompt": ["Hi", "Bye"], "completion": ["Hello", "Goodbye"]}).to_parquet(parquet)
    txt = tmp_path / "notes.txt"
    txt.write_text("First paragraph,\nstill first.\n\nSecond paragraph.\n")
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({"text": ["good film", "bad film"], "label": ["pos", "neg"]}))
    assert examples(tsv)[1]["messages"][1]["content"] == "Goodbye, friend"
    assert examples(parquet)[1]["messages"][1] == {"role": "assistant", "content": "Goodbye"}
    assert examples(txt, task="pt") == [{"text": "First paragraph,\nstill first."}, {"text": "Second paragraph."}]
    assert examples(columns, task="classification") == [
        {"text": "good film", "label": "pos"},
        {"text": "bad film", "label": "neg"},
    ]


def test_text_and_classification_formats_need_their_task(tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a document"}\n')
    assert report(texts, task="pt").format == "text"
    with pytest.raises(TuneForgeError, match="format text does not fit task sft"):
        report(texts)


def test_column_mapping_makes_any_table_usable_and_names_missing_columns(tmp_path):
    table = tmp_path / "qa.csv"
    table.write_text("question,answer,notes\nWhat is 2+2?,4,easy\n")
    mapping = {"prompt": "question", "response": "answer"}
    assert examples(table, mapping=mapping)[0]["messages"][1]["content"] == "4"
    with pytest.raises(TuneForgeError, match="column 'output' not found; columns are: question, answer, notes"):
        examples(table, mapping={"prompt": "question", "response": "output"})


def test_explicit_format_checks_its_columns(tmp_path):
    table = tmp_path / "foo.csv"
    table.write_text("foo,bar\n1,2\n")
    with pytest.raises(TuneForgeError, match="column 'instruction' not found for format alpaca; columns are: foo, bar"):
        examples(table, dataset_format="alpaca")


@pytest.mark.parametrize(
    "name, message",
    [
        ("bad_line.jsonl", r"bad_line.jsonl: line 3: invalid JSON \(Unterminated string"),
        ("empty_answer.json", r"empty_answer.json: row 2: empty answer \(turn on skip_bad_rows"),
    ],
)
def test_bad_rows_refuse_the_file_with_their_location(name, message):
    with pytest.raises(TuneForgeError, match=message):
        report(DATA / name)


def test_skip_bad_rows_counts_and_shows_reasons():
    result = report(DATA / "bad_line.jsonl", skip_bad_rows=True)
    assert (result.usable_rows, result.skipped_count) == (2, 1)
    assert result.skipped[0].startswith("line 3: invalid JSON")
    assert any("Skipped 1 bad rows" in line for line in result.summary_lines())


def test_a_file_with_no_usable_rows_is_refused_even_when_skipping(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": ""}\n{"prompt": "b", "completion": " "}\n')
    with pytest.raises(TuneForgeError, match=r"bad.jsonl: no usable rows \(2 bad: line 1: empty answer"):
        report(bad, skip_bad_rows=True)


def test_empty_binary_unknown_and_missing_files_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    binary = tmp_path / "blob.json"
    binary.write_bytes(b"\x00\x01\x02garbage")
    columns = tmp_path / "cols.csv"
    columns.write_text("foo,bar\n1,2\n")
    with pytest.raises(TuneForgeError, match="file is empty"):
        report(empty)
    with pytest.raises(TuneForgeError, match="not a text file"):
        report(binary)
    with pytest.raises(TuneForgeError, match="cannot tell the dataset format from columns: bar, foo"):
        report(columns)
    with pytest.raises(TuneForgeError, match="neither a file, a registered name, nor a bundled demo"):
        report(tmp_path / "missing.json")


def test_encodings_bom_utf16_and_invalid_utf8(tmp_path):
    row = '{"prompt": "café", "completion": "crème"}\n'
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + row.encode())
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text(row, encoding="utf-16")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(('{"prompt": "a", "completion": "b"}\n' + row).encode("latin-1"))
    assert examples(bom)[0]["messages"][0]["content"] == "café"
    assert examples(utf16)[0]["messages"][1]["content"] == "crème"
    with pytest.raises(TuneForgeError, match=r"latin1.jsonl: line 2: not valid UTF-8 \(byte 0xe9"):
        report(latin1)


def test_pii_is_scrubbed_and_counted(tmp_path):
    path = tmp_path / "pii.jsonl"
    answer = "Mail jo@example.com, call +1 415-555-0134, card 4111 1111 1111 1111, host 192.168.1.20."
    path.write_text(json.dumps({"prompt": "contact?", "completion": answer}) + "\n")
    (example,) = examples(path, scrub_pii=True)
    assert example["messages"][1]["content"] == "Mail [EMAIL], call [PHONE], card [CARD], host [IP]."
    assert report(path, scrub_pii=True).pii == {"email": 1, "phone": 1, "card": 1, "ipv4": 1}


def test_duplicates_leakage_and_their_removal(tmp_path):
    path = tmp_path / "dupes.jsonl"
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(20)]
    rows += [{"prompt": "Q1!", "completion": "A1"}, {"prompt": "q2", "completion": "a2"}]  # near and exact copies
    path.write_text("\n".join(json.dumps(r) for r in rows))
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(
        json.dumps({"prompt": "q3", "completion": "a3"}) + "\n" + json.dumps(rows[0] | {"prompt": "new"})
    )
    assert report(path).duplicates == 1
    assert (
        report(path, dedup=True).usable_rows == 22
        and len(load_splits(DataOptions(str(path), dedup=True, val_size=0)).train) == 21
    )

    leaky = report(path, eval_dataset=str(eval_file))
    assert (leaky.train_rows, leaky.validation_rows, leaky.leaked) == (22, 2, 1)
    assert "user: q3" in leaky.leaked_examples[0]
    splits = load_splits(DataOptions(str(path), eval_dataset=str(eval_file), drop_leaked=True))
    assert len(splits.validation) == 1 and splits.leaked_dropped == 1
    assert any("also occur in training: dropped" in line for line in splits.summary())


def test_val_size_split_matches_between_report_and_training(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(30)))
    options = {"val_size": 0.2, "seed": 7}
    result, splits = report(path, **options), load_splits(DataOptions(str(path), **options))
    assert (result.train_rows, result.validation_rows) == (len(splits.train), len(splits.validation)) == (24, 6)


def test_named_datasets_are_registered_in_the_workspace(tmp_path):
    table = tmp_path / "qa.csv"
    table.write_text("question,answer\nWhat is 2+2?,4\n")
    workspace = tmp_path / "workspace"
    register_dataset(workspace, "arithmetic", table, columns={"prompt": "question", "response": "answer"})
    info = json.loads((workspace / "datasets" / "dataset_info.json").read_text())
    assert info == {
        "arithmetic": {"file_name": "arithmetic.csv", "columns": {"prompt": "question", "response": "answer"}}
    }
    (example,) = list(ExampleReader("arithmetic", DataOptions("arithmetic", workspace=workspace)))
    assert example["messages"][1]["content"] == "4"
    with pytest.raises(TuneForgeError, match="dataset name"):
        register_dataset(workspace, "../escape", table)


def test_bundled_demo_is_a_persona_dataset():
    result = report("demo_identity")
    assert result.format == "alpaca" and result.usable_rows >= 100
    assert any("Forge" in row["output"] for row in result.preview)


def test_upload_is_copied_into_the_workspace_without_clobbering(tmp_path):
    uploads = tmp_path / "uploads"
    first = store_upload(DATA / "alpaca.json", uploads)
    again = store_upload(DATA / "alpaca.json", uploads)
    other = tmp_path / "alpaca.json"
    other.write_text('[{"instruction": "x", "output": "y"}]')
    renamed = store_upload(other, uploads)
    assert first == again and first.read_bytes() == (DATA / "alpaca.json").read_bytes()
    assert renamed.name == "alpaca-2.json"


needs_llamafactory = pytest.mark.skipif(
    not LLAMAFACTORY_DATA.is_dir(), reason="../shared/data/llamafactory is absent (it ships with CI, not with clones)"
)


@needs_llamafactory
@pytest.mark.parametrize("name, task, fmt", [
    ("alpaca_en_demo.json", "sft", "alpaca"),
    ("identity.json", "sft", "alpaca"),
    ("c4_demo.jsonl", "pt", "text"),
])  # fmt: skip
def test_llamafactory_demos_load_unchanged(name, task, fmt):
    result = report(LLAMAFACTORY_DATA / name, task=task)
    assert result.format == fmt and result.usable_rows > 50
