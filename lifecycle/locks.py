"""One writer per warm table.

With a PostgreSQL ledger the lock is a session-level advisory lock on a dedicated connection; with the embedded
SQLite ledger it is an ``flock`` on a file beside the ledger. Both are released by the operating system or the
server when the holder dies (kill -9 included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from zones.errors import LockHeldError


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"datazones:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def writer_lock(ledger_engine: sa.Engine, name: str, *, wait: bool = False) -> Iterator[None]:
    if ledger_engine.dialect.name == "postgresql":
        with ledger_engine.connect() as c:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = c.execute(sa.text(f"SELECT {fn}(:k)"), {"k": _key(name)}).scalar()
            if not wait and not got:
                raise LockHeldError(f"another run is writing {name!r} (PostgreSQL advisory lock held); "
                                    "it will be retried — or wait for the other run to finish")
            try:
                yield
            finally:
                c.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
                c.commit()
        return
    db = ledger_engine.url.database
    base = Path(db).parent if db and db != ":memory:" else Path(tempfile.gettempdir())
    lockdir = base / ".locks"
    lockdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lockdir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(f"another run is writing {name!r} (lock file {lockdir / (name + '.lock')} held); "
                                "it will be retried — or wait for the other run to finish") from None
        yield
    finally:
        os.close(fd)
