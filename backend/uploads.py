"""Uploaded files, kept in the workspace so jobs can read them after the browser's temp copy is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

from backend.data.readers import SUPPORTED_SUFFIXES
from backend.errors import TuneForgeError


def store_upload(source: str | Path, uploads_dir: str | Path) -> Path:
    """Copy an upload into uploads_dir; a different file with the same name gets a -2, -3… suffix."""
    source = Path(source)
    if source.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise TuneForgeError(f"{source.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})")
    uploads_dir = Path(uploads_dir)
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / source.name
    n = 1
    while target.exists() and not _same_file(target, source):
        n += 1
        target = uploads_dir / f"{source.stem}-{n}{source.suffix}"
    if not target.exists():
        shutil.copyfile(source, target)
    return target


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while chunk := fa.read(1 << 20):
            if chunk != fb.read(1 << 20):
                return False
    return True
