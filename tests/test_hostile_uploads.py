"""Hostile dataset files through the upload path: stored and inspected, or refused in one located line.

Each file goes where the Dataset tab sends an upload: store_upload() copies it into the workspace's
uploads folder, then the tab's own inspection (the confined _inspect behind its preview) reads it.
Nothing may escape as another exception, and nothing may be written outside uploads/.
"""

import bz2
import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from backend.access.confine import Confinement
from backend.access.uploads import store_upload
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from webui.context import AppContext
from webui.tab_dataset import DatasetTab

ROW = {"instruction": "What is the secret word?", "input": "", "output": "pineapple"}
SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


def zip_bomb() -> bytes:
    """64 MB of zeros in a ~64 KB zip: readers must not inflate it into memory."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.jsonl", b"\0" * (64 << 20))
    return out.getvalue()


def parquet_of(table: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table(table), out)
    return out.getvalue()


def hostile_files(folder: Path) -> list[Path]:
    """More than 50 files, each written into folder under its hostile name; returns their paths."""
    good = (json.dumps(ROW) + "\n").encode()
    garbage = os.urandom(4096)
    bomb = zip_bomb()
    files: dict[str, bytes] = {}
    # wrong or misleading extensions
    for name in ("data.exe", "data.py", "data.sh", "data.html", "data.svg", "data", "data.json.exe", "data.tar.gz"):
        files[name] = good
    files["UPPER.JSONL"] = good
    # binary garbage under each accepted extension, and empty files
    for suffix in SUFFIXES:
        files[f"garbage{suffix}"] = garbage
        files[f"empty{suffix}"] = b""
    # huge lines (3 MB, no newline)
    files["huge_line.txt"] = b"a" * (3 << 20)
    files["huge_line.jsonl"] = b'{"instruction": "' + b"x" * (3 << 20) + b'", "output": "y"}'
    files["huge_cell.csv"] = b"instruction,output\n" + b"x" * (3 << 20) + b",y\n"
    # bad encodings
    files["latin1.csv"] = "instruction,output\ncafé,naïve\n".encode("latin-1")
    files["utf16_no_bom.json"] = json.dumps([ROW]).encode("utf-16-le")
    files["utf16_bom.jsonl"] = good.decode().encode("utf-16")
    files["utf32.txt"] = "hello\n\nworld\n".encode("utf-32")
    files["invalid_utf8.jsonl"] = b'{"instruction": "\xff\xfe\xfa", "output": "y"}\n'
    files["lone_surrogate.json"] = b'[{"instruction": "\\ud800", "output": "y"}]'
    # archives renamed as data
    files["bomb.json"] = bomb
    files["bomb.jsonl"] = bomb
    files["bomb.csv"] = bomb
    files["bomb.parquet"] = bomb
    files["gzip.jsonl"] = gzip.compress(good * 1000)
    files["bzip2.json"] = bz2.compress(good * 1000)
    # deep nesting
    files["deep_list.json"] = b"[" * 100_000 + b"]" * 100_000
    files["deep_object.jsonl"] = b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"\n"
    files["deep_history.json"] = json.dumps([{**ROW, "history": [[["x"] * 2] * 3] * 2}]).encode()
    # NUL bytes
    files["nul.csv"] = b"instruction,output\nwhat\0is,it\0\n"
    files["nul.tsv"] = b"instruction\toutput\nwhat\0is\tit\n"
    files["nul.jsonl"] = b'{"instruction": "a\0b", "output": "c"}\n\0\0\0\n'
    # BOMs
    files["bom.json"] = b"\xef\xbb\xbf" + json.dumps([ROW]).encode()
    files["bom.csv"] = b"\xef\xbb\xbfinstruction,output\nq,a\n"
    files["bom_only.jsonl"] = b"\xef\xbb\xbf"
    # mixed and wrong types
    files["mixed.json"] = json.dumps([1, "a", None, ROW, [ROW], {"instruction": 5, "output": True}]).encode()
    files["mixed.jsonl"] = b'[1, 2]\n"text"\n42\nnull\n' + good
    files["ragged.csv"] = b"instruction,output\nq\nq,a,extra,more\n,\n"
    files["numbers.json"] = b'[{"instruction": 1e999, "output": NaN}, {"instruction": -Infinity, "output": "x"}]'
    files["duplicate_keys.json"] = b'[{"instruction": "a", "instruction": "b", "output": "c"}]'
    files["top_level_string.json"] = b'"just a string"'
    files["formula.csv"] = b'instruction,output\n=cmd|\' /C calc\'!A0,"=HYPERLINK(""http://x"")"\n'
    files["wrong_types.parquet"] = parquet_of({"instruction": [1, 2], "output": [None, 3.5]})
    files["no_columns.parquet"] = parquet_of({"zzz": ["a", "b"]})
    # names a browser could send
    for name in (
        "..json",
        "...jsonl",
        ".hidden.json",
        "-rf.jsonl",
        "con.json",
        " spaced name .csv",
        "new\nline.jsonl",
        "semi;rm -rf ~.csv",
        "evil\u202egnp.json",
        "%2e%2e%2fup.json",
        "x" * 240 + ".json",
        "é" * 120 + ".jsonl",
    ):
        files[name] = good
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    # symlinks, a directory and a pipe named like data files
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    (folder / "dir_link.jsonl").symlink_to("/etc")
    (folder / "dangling.json").symlink_to(folder / "nowhere.json")
    (folder / "folder.json").mkdir()
    os.mkfifo(folder / "pipe.jsonl")
    paths += [folder / n for n in ("passwd.txt", "dir_link.jsonl", "dangling.json", "folder.json", "pipe.jsonl")]
    # path-traversal names, as a caller might pass them
    paths += [folder / "sub" / ".." / ".." / "escape.json", Path(f"{folder}/../../../../etc/passwd.json")]
    return paths


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_fifty_hostile_files_are_stored_and_inspected_or_refused_in_one_line(tmp_path):
    sources, workspace = tmp_path / "sources", tmp_path / "workspace"
    sources.mkdir()
    workspace.mkdir()
    files = hostile_files(sources)
    assert len(files) >= 50
    before = tree(tmp_path)
    jobs = JobManager(workspace, Confinement(workspace))
    tab = DatasetTab(AppContext(jobs=jobs, chat=None, blocks=None))
    uploads = workspace / "uploads"
    outcomes, escaped = {}, []
    try:
        for path in files:
            try:
                stored = store_upload(path, uploads)
                assert stored.resolve().parent == uploads.resolve(), f"{path.name!r} stored at {stored}"
                values = [
                    getattr(TrainConfig(dataset=str(stored)), f.name) for f in TrainConfig.__dataclass_fields__.values()
                ]
                report = tab._inspect(values)[1]
                outcomes[path.name] = f"ok: {report.format}, {report.usable_rows} rows"
            except TuneForgeError as exc:
                assert str(exc) and "\n" not in str(exc), f"{path.name!r}: {exc!r}"
                outcomes[path.name] = f"refused: {exc}"
            except Exception as exc:  # noqa: BLE001 - collected, so one run shows every escape
                escaped.append(f"{path.name!r}: {type(exc).__name__}: {exc}"[:300])
    finally:
        jobs.shutdown()
    assert not escaped, "\n".join(escaped)
    written = tree(tmp_path) - before
    assert all(p.startswith(("workspace/uploads", "workspace/runs")) or p == "workspace/uploads" for p in written), (
        sorted(written)
    )
    assert not any(Path(p).name.startswith(".upload-") for p in written)  # no half-copied upload left behind
    refused = [name for name, outcome in outcomes.items() if outcome.startswith("refused")]
    for name in ("passwd.txt", "dir_link.jsonl", "pipe.jsonl", "data.exe", "garbage.parquet", "deep_list.json"):
        assert name in refused, (name, outcomes.get(name))
    print("\n".join(f"{name!r}: {outcome[:150]}" for name, outcome in outcomes.items()))


@pytest.mark.parametrize(
    "name, stored",
    [
        ("report (2).csv", "report-2-.csv"),
        ("..json", "upload.json"),
        (".hidden.jsonl", "hidden.jsonl"),
        ("evil\u202egnp.json", "evil-gnp.json"),
        ("x" * 240 + ".JSON", "x" * 100 + ".json"),
    ],
)
def test_stored_upload_names_are_plain(tmp_path, name, stored):
    source = tmp_path / name
    source.write_text(json.dumps([ROW]))
    assert store_upload(source, tmp_path / "uploads").name == stored
