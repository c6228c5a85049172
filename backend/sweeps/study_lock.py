"""One driver at a time, across machines, where a sweep's study changes shape: creating it and enqueuing its
grid, and choosing its next trial.

The lock lives in the study's own database, the one thing every machine of a sweep shares. On PostgreSQL
it is a session advisory lock: the server drops it when the holder's connection closes, so a driver
killed while holding it blocks no one. Elsewhere (SQLite, MySQL) it is a row in a table of locks, taken
by its primary key; the section it guards takes well under a second, so a row older than STALE_S was
left by a process that died holding it and is taken over.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy
from sqlalchemy.exc import IntegrityError

from backend.errors import TuneForgeError

WAIT_S = 120.0
STALE_S = 60.0
POLL_S = 0.05
LOCKS = sqlalchemy.Table(
    "tuneforge_sweep_locks",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("name", sqlalchemy.String(512), primary_key=True),
    sqlalchemy.Column("holder", sqlalchemy.String(512), nullable=False),
    sqlalchemy.Column("taken", sqlalchemy.Float, nullable=False),
)


@contextmanager
def study_lock(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    lock = _advisory if engine.dialect.name == "postgresql" else _row
    with lock(engine, name):
        yield


@contextmanager
def _advisory(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(f"tuneforge-sweep:{name}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()  # the lock belongs to the session, not to this transaction
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


@contextmanager
def _row(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    try:
        LOCKS.create(engine, checkfirst=True)
    except sqlalchemy.exc.DatabaseError:  # another driver created it between the check and the create
        pass
    holder = f"{socket.gethostname()} pid {os.getpid()} thread {threading.get_ident()}"
    deadline = time.monotonic() + WAIT_S
    while not _take(engine, name, holder):
        if time.monotonic() > deadline:
            raise TuneForgeError(f"sweep {name}: another driver has held its lock for {WAIT_S:.0f} s")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(LOCKS.delete().where(LOCKS.c.name == name, LOCKS.c.holder == holder))


def _take(engine: sqlalchemy.Engine, name: str, holder: str) -> bool:
    try:
        with engine.begin() as connection:
            connection.execute(LOCKS.delete().where(LOCKS.c.name == name, LOCKS.c.taken < time.time() - STALE_S))
            connection.execute(LOCKS.insert().values(name=name, holder=holder, taken=time.time()))
        return True
    except IntegrityError:
        return False
    except sqlalchemy.exc.OperationalError as exc:  # SQLite's "database is locked" past its timeout
        if "locked" in str(exc):
            return False
        raise
