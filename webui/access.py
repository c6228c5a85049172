"""Who may open the app: logins from flags or a file, each with a role, and a generated password for --share.

A line is `user:password[:role]`, role one of admin, member or viewer (backend.access.roles). A
line of the auth file without a role is a member's; the one login of --auth, and the generated
--share login, are the owner's own, so they are an admin's. A password may hold ':' as long as it
does not end in ':admin', ':member' or ':viewer'.

A public share link must never expose an open app; a non-loopback host without credentials
gets a warning.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import NamedTuple

from backend.access.roles import ROLE_NAMES, Role
from backend.errors import TuneForgeError

SHARE_USER = "tuneforge"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Login(NamedTuple):
    """A (user, password) pair as gr.launch takes it, with the role the gate gives the user."""

    user: str
    password: str
    role: Role = Role.MEMBER


def parse_login(text: str, where: str, default: Role = Role.MEMBER) -> Login:
    user, sep, password = text.strip().partition(":")
    role = default
    secret, _, last = password.rpartition(":")
    if secret and last in ROLE_NAMES:
        password, role = secret, Role(last)
    if not sep or not user or not password:
        raise TuneForgeError(f"{where}: expected user:password or user:password:role ({', '.join(ROLE_NAMES)})")
    return Login(user, password, role)


def roles_of(logins: list[Login]) -> dict[str, Role] | None:
    """Login name → role for the gate; None for an app without logins (one person, an admin)."""
    return {login.user: login.role for login in logins} if logins else None


def credentials(auth: str | None, auth_file: str | None, share: bool, host: str) -> tuple[list[Login], list[str]]:
    """(logins for gr.launch and the gate, lines to print once on the console)."""
    pairs: list[Login] = []
    notes: list[str] = []
    if auth:
        pairs.append(parse_login(auth, "--auth", Role.ADMIN))
    if auth_file:
        path = Path(auth_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TuneForgeError(f"--auth-file {path}: cannot read ({exc})") from None
        for lineno, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                pairs.append(parse_login(line, f"{path.name}: line {lineno}"))
        if not pairs:
            raise TuneForgeError(f"--auth-file {path}: no user:password lines")
    if share and not pairs:
        password = secrets.token_urlsafe(16)
        pairs.append(Login(SHARE_USER, password, Role.ADMIN))
        notes.append(f"--share without --auth: log in as '{SHARE_USER}' with password {password} (shown only now)")
    if not pairs and host not in LOOPBACK:
        notes.append(
            f"warning: listening on {host} without --auth; anyone who can reach this address can train and read runs"
        )
    return pairs, notes
