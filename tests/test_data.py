"""Datasets in every supported format become chat messages; bad files get located messages."""

import pandas as pd
import pytest

from backend.data import inspect_dataset, load_conversations, store_upload
from backend.errors import TuneForgeError
from tests.conftest import DATA, LLAMAFACTORY_DATA


@pytest.mark.parametrize(
    "name, fmt, rows",
    [
        ("alpaca.json", "alpaca", 2),
        ("sharegpt.json", "sharegpt", 2),
        ("openai.jsonl", "openai", 2),
        ("prompt_completion.csv", "prompt_completion", 2),
    ],
)
def test_each_format_is_detected_and_previewed(name, fmt, rows):
    info = inspect_dataset(str(DATA / name))
    assert (info.format, info.rows) == (fmt, rows)
    assert info.preview and set(info.preview[0]) <= set(info.columns)


def test_alpaca_system_history_and_input_become_messages():
    first, second = load_conversations(str(DATA / "alpaca.json"))
    assert first == [
        {"role": "user", "content": "Translate to French\n\ncat"},
        {"role": "assistant", "content": "chat"},
    ]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user", "assistant"]
    assert second[0]["content"] == "Answer in one word." and second[-1]["content"] == "Rome."


def test_sharegpt_roles_are_mapped():
    conversation = load_conversations(str(DATA / "sharegpt.json"))[1]
    assert [m["role"] for m in conversation] == ["system", "user", "assistant"]


def test_parquet_is_read(tmp_path):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"prompt": ["Hi", "Bye"], "completion": ["Hello", "Goodbye"]}).to_parquet(path)
    assert load_conversations(str(path))[1][1] == {"role": "assistant", "content": "Goodbye"}


def test_bundled_demo_is_a_persona_dataset():
    info = inspect_dataset("demo_identity")
    assert info.format == "alpaca" and info.rows >= 100
    assert any("Forge" in row["output"] for row in info.preview)


@pytest.mark.parametrize(
    "name, message",
    [
        ("bad_line.jsonl", r"bad_line.jsonl: line 3: invalid JSON \(Unterminated string"),
        ("empty_answer.json", r"empty_answer.json: row 2: empty answer"),
    ],
)
def test_bad_rows_are_located(name, message):
    with pytest.raises(TuneForgeError, match=message):
        inspect_dataset(str(DATA / name))


def test_empty_binary_and_unknown_files_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    binary = tmp_path / "blob.json"
    binary.write_bytes(b"\x00\x01\x02garbage")
    columns = tmp_path / "cols.csv"
    columns.write_text("foo,bar\n1,2\n")
    with pytest.raises(TuneForgeError, match="file is empty"):
        inspect_dataset(str(empty))
    with pytest.raises(TuneForgeError, match="not a text file"):
        inspect_dataset(str(binary))
    with pytest.raises(TuneForgeError, match="cannot tell the dataset format from columns: bar, foo"):
        inspect_dataset(str(columns))
    with pytest.raises(TuneForgeError, match="neither a file nor a bundled demo"):
        inspect_dataset(str(tmp_path / "missing.json"))


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
@pytest.mark.parametrize("name", ["alpaca_en_demo.json", "identity.json"])
def test_llamafactory_alpaca_demos_load_unchanged(name):
    info = inspect_dataset(str(LLAMAFACTORY_DATA / name))
    assert info.format == "alpaca" and info.rows > 50
