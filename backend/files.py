"""Writing the files that other processes read, so that a crash or a full disk never leaves half of one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

# What a write raises when there is no room: the disk is full, a file-size limit (RLIMIT_FSIZE) was
# reached, or the user's quota is spent. Each is fixed the same way, by freeing space.
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write text beside path and rename it into place: readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full_message(
    exc: BaseException, where: Path | str, then: str = "free space and resume: the checkpoints saved before are intact"
) -> str | None:
    """The one line a person reads when a write found no room; None when exc is something else.

    Savers outside Python report it in words rather than as an OSError: safetensors says
    "I/O error: File too large (os error 27)". So the errno's text is looked for too.
    """
    code = _errno_of(exc)
    if code is None:
        return None
    return f"disk full while saving to {where} ({os.strerror(code)}); {then}"


def _errno_of(exc: BaseException | None) -> int | None:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc.errno
        text = str(exc)
        for code in NO_SPACE:
            if f"os error {code})" in text or os.strerror(code) in text:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def save_staged(folder: Path, *savers) -> None:
    """Run each saver(staging_folder), then move what they wrote into folder, file by file with os.replace.

    A full disk or a crash part-way leaves a staging folder to delete, never a half-written
    weights file where a loader (chat, export, resume) would find it.
    """
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
    try:
        for save in savers:
            save(staging)
        for item in sorted(staging.iterdir()):
            target = folder / item.name
            if item.is_dir() and target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
