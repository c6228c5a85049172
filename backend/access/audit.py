"""The audit trail: `workspace/audit.jsonl`, one JSON object a line per state-changing call or refusal.

Each line has `time` (ISO 8601, UTC), `user` (the login name; "local" without logins), `action`
(the API name, e.g. `train_abort`), `run_id` where there is one, and `result`: `ok` or
`refused: <reason>`; some add `sweep_id` or `file`. Lines are appended whole under a lock, so two
calls never interleave, and read tolerantly, so a half-written last line after a crash is skipped.

Whatever a line quotes is cut to a few hundred characters (QUOTED_MAX): a caller's 10 MB run id
must not become 10 MB of log per call. The view reads pages from the end of the file, so a
large log opens as fast as a small one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
QUOTED_MAX = 200  # characters of any one value; a refusal's reason gets RESULT_MAX
RESULT_MAX = 600
_CHUNK = 64 * 1024


def clipped(value: Any, limit: int = QUOTED_MAX) -> Any:
    """A value as the log keeps it: text cut with a note of its length; numbers and None as they are."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


class AuditLog:
    def __init__(self, workspace: Path):
        self.path = Path(workspace) / AUDIT_FILE
        self._lock = threading.Lock()

    def record(self, user: str, action: str, result: str, run_id: str | None = None, **details: Any) -> None:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": clipped(user)}
        line.update(action=clipped(action), run_id=clipped(run_id), result=clipped(result, RESULT_MAX))
        line.update({str(key)[:40]: clipped(value) for key, value in details.items()})
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)

    def lines(self, last: int = 200, page: int = 1) -> list[dict[str, Any]]:
        """Page `page` (1: the newest) of `last` lines each, newest first; read backwards from the end."""
        skip, rows = (max(page, 1) - 1) * last, []
        for raw in self._backwards():
            try:
                row = json.loads(raw)
            except ValueError:
                continue  # a half-written line
            if skip:
                skip -= 1
                continue
            rows.append(row)
            if len(rows) >= last:
                break
        return rows

    def _backwards(self):
        """The file's lines, last first, read in chunks from its end."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            end = f.seek(0, os.SEEK_END)
            tail = b""
            while end > 0:
                start = max(0, end - _CHUNK)
                f.seek(start)
                block = f.read(end - start) + tail
                end = start
                parts = block.split(b"\n")
                tail = parts.pop(0) if end > 0 else b""
                for raw in reversed(parts):
                    if raw.strip():
                        yield raw.decode("utf-8", errors="replace")
