"""Who may open the app: credentials from flags or a file, and a generated password for --share.

A public share link must never expose an open app; a non-loopback host without credentials
gets a warning.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from backend.errors import TuneForgeError

SHARE_USER = "tuneforge"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_pair(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise TuneForgeError(f"{where}: expected user:password")
    return user, password


def credentials(auth: str | None, auth_file: str | None, share: bool, host: str) -> tuple[list, list[str]]:
    """(credentials for gr.launch, lines to print once on the console)."""
    pairs: list[tuple[str, str]] = []
    notes: list[str] = []
    if auth:
        pairs.append(parse_pair(auth, "--auth"))
    if auth_file:
        path = Path(auth_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TuneForgeError(f"--auth-file {path}: cannot read ({exc})") from None
        for lineno, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                pairs.append(parse_pair(line, f"{path.name}: line {lineno}"))
        if not pairs:
            raise TuneForgeError(f"--auth-file {path}: no user:password lines")
    if share and not pairs:
        password = secrets.token_urlsafe(16)
        pairs.append((SHARE_USER, password))
        notes.append(f"--share without --auth: log in as '{SHARE_USER}' with password {password} (shown only now)")
    if not pairs and host not in LOOPBACK:
        notes.append(
            f"warning: listening on {host} without --auth; anyone who can reach this address can train and read runs"
        )
    return pairs, notes
