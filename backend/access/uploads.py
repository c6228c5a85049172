"""Uploaded files, kept in the workspace so jobs can read them after the browser's temp copy is gone.

The stored name is rebuilt from the upload's name (letters, digits, '.', '_' and '-' only, no
leading dot, at most 100 characters), so no name a browser sends can point elsewhere or hide.
Only regular files are taken, so a symlink cannot smuggle in a file from elsewhere on disk.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from backend.data.readers import SUPPORTED_SUFFIXES
from backend.errors import TuneForgeError
from backend.files import disk_full_message

MAX_STEM = 100


def safe_name(name: str) -> str:
    """A file name that stays inside a folder and reads back the same: 'report (2).csv' -> 'report-2-.csv'."""
    path = Path(name.replace("\0", ""))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).lstrip(".-")[:MAX_STEM] or "upload"
    return stem + path.suffix.lower()


def store_upload(source: str | Path, uploads_dir: str | Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> Path:
    """Copy an upload into uploads_dir; a different file with the same name gets a -2, -3… suffix.

    suffixes: the file types taken (a dataset's by default; a recipe takes documents)."""
    source = Path(str(source).replace("\0", ""))
    name = safe_name(source.name)
    if Path(name).suffix not in suffixes:
        raise TuneForgeError(f"{name}: unsupported file type (use {', '.join(suffixes)})")
    if source.is_symlink() or not source.is_file():
        raise TuneForgeError(f"{name}: not a regular file")
    uploads_dir = Path(uploads_dir)
    uploads_dir.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    target, n = uploads_dir / name, 1
    while target.exists() and not _same_file(target, source):
        n += 1
        target = uploads_dir / f"{stem}-{n}{suffix}"
    if not target.exists():
        _copy_whole(source, target)
    return target


def _copy_whole(source: Path, target: Path) -> None:
    """Copy beside the target and rename, so a full disk never leaves half an upload that looks whole."""
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise TuneForgeError(
            disk_full_message(exc, target.parent, "free space and upload it again")
            or f"{target.name}: cannot store the upload ({exc.strerror or exc})"
        ) from None


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while chunk := fa.read(1 << 20):
            if chunk != fb.read(1 << 20):
                return False
    return True
