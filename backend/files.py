"""Writing the files that other processes read, so that a crash or a full disk never leaves half of one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from backend.errors import TuneForgeError

# What a write raises when there is no room: the disk is full, a file-size limit (RLIMIT_FSIZE) was
# reached, or the user's quota is spent. Each is fixed the same way, by freeing space.
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def write_atomic(path: str | Path, text: str) -> None:
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


def no_space(exc: BaseException) -> bool:
    """Whether exc (or what caused it) is a write that found no room."""
    return _errno_of(exc) is not None


def disk_full_error(exc: BaseException, doing: str, where: Path | str) -> TuneForgeError:
    """The one line a person reads when a write ran out of room."""
    reason = os.strerror(_errno_of(exc) or errno.ENOSPC)
    return TuneForgeError(
        f"disk full while {doing} in {where} ({reason}); free space and resume from the last checkpoint"
    )


def _errno_of(exc: BaseException | None) -> int | None:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None
