"""Property-based: random and mutated files never escape the parsers as anything but TuneForgeError."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.data import DataOptions
from backend.data.readers import SUPPORTED_SUFFIXES
from backend.data.report import inspect_dataset
from backend.errors import TuneForgeError
from tests.helpers import DATA

SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*")) if p.suffix in SUPPORTED_SUFFIXES]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Records that look like our formats, so the fuzz reaches the converters, not only the readers.
record_keys = st.sampled_from(
    ["instruction", "input", "output", "history", "system", "conversations", "messages", "prompt", "completion",
     "response", "text", "label", "from", "value", "role", "content"]
)  # fmt: skip
records = st.dictionaries(record_keys, json_values, max_size=5)


def inspect_only_fails_cleanly(path, **options):
    for task in ("sft", "pt", "classification"):
        try:
            inspect_dataset(DataOptions(dataset=str(path), task=task, **options))
        except TuneForgeError as exc:
            assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from(SUPPORTED_SUFFIXES))
def test_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    inspect_only_fails_cleanly(path)


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3), st.integers(0, 3)), max_size=6),
    suffix=st.sampled_from(SUPPORTED_SUFFIXES),
)
def test_mutated_valid_files(tmp_path, seed, edits, suffix):
    data = bytearray(seed)
    for position, insert, delete in edits:
        at = position % (len(data) + 1)
        data[at : at + delete] = insert
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(data))
    inspect_only_fails_cleanly(path, skip_bad_rows=True)
    inspect_only_fails_cleanly(path)


@FUZZ
@given(rows=st.lists(records, min_size=1, max_size=6), as_list=st.booleans(), skip=st.booleans())
def test_random_records(tmp_path, rows, as_list, skip):
    path = tmp_path / ("rows.json" if as_list else "rows.jsonl")
    path.write_text(json.dumps(rows) if as_list else "\n".join(json.dumps(r) for r in rows))
    inspect_only_fails_cleanly(path, skip_bad_rows=skip)
