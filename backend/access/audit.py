"""The audit trail: `workspace/audit.jsonl`, one JSON object a line per state-changing call or refusal.

Each line has `time` (ISO 8601, UTC), `user` (the login name; "local" without logins), `action`
(the API name, e.g. `train_abort`), `run_id` where there is one, and `result`: `ok` or
`refused: <reason>`. Lines are appended whole under a lock, so two calls never interleave, and
read tolerantly, so a half-written last line after a crash is skipped.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


class AuditLog:
    def __init__(self, workspace: Path):
        self.path = Path(workspace) / AUDIT_FILE
        self._lock = threading.Lock()

    def record(self, user: str, action: str, result: str, run_id: str | None = None, **details: Any) -> None:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": user, "action": action}
        line.update(run_id=run_id, result=result, **details)
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)

    def lines(self, last: int = 200) -> list[dict[str, Any]]:
        """The newest `last` lines, newest first."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = []
        for raw in text.splitlines()[-last:]:
            try:
                rows.append(json.loads(raw))
            except ValueError:
                continue
        return rows[::-1]
