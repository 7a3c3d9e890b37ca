"""One writer per warm table.

With a PostgreSQL ledger the lock is a session-level advisory lock on a dedicated connection; with the embedded
SQLite ledger it is an ``flock`` on a file beside the ledger. Both are released by the operating system or the
server when the holder dies (kill -9 included), so a crash never leaves a stale lock behind.

The PostgreSQL lock's connection is not left idle in a transaction (that would hold back vacuum, and a server's
``idle_in_transaction_session_timeout`` would end the session — and with it the lock — unnoticed). A session can
still end under a run (a network drop, an administrator): :meth:`Held.verify`, called before every Delta commit,
then stops the run before it writes without the lock.
"""

from __future__ import annotations

import contextlib
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


class Held:
    """A held writer lock; :meth:`verify` proves it is still held (a no-op for the file lock, held by our fd)."""

    def __init__(self, name: str, conn: sa.Connection | None = None) -> None:
        self.name = name
        self._conn = conn

    def verify(self) -> None:
        if self._conn is None:
            return
        try:  # a session-level advisory lock lasts as long as its session: a live session still holds it
            self._conn.execute(sa.text("SELECT 1")).scalar()
            self._conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            why = type(getattr(exc, "orig", None) or exc).__name__
            raise LockHeldError(f"the writer lock of {self.name!r} was lost (its PostgreSQL session ended: "
                                f"{why}); nothing more was written — run again to continue") from None


@contextmanager
def writer_lock(ledger_engine: sa.Engine, name: str, *, wait: bool = False) -> Iterator[Held]:
    if ledger_engine.dialect.name == "postgresql":
        with ledger_engine.connect() as c:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = c.execute(sa.text(f"SELECT {fn}(:k)"), {"k": _key(name)}).scalar()
            c.commit()  # the lock is the session's: end the transaction, or the session idles in it all run
            if not wait and not got:
                raise LockHeldError(f"another run is writing {name!r} (PostgreSQL advisory lock held); "
                                    "it will be retried — or wait for the other run to finish")
            try:
                yield Held(name, c)
            finally:
                with contextlib.suppress(sa.exc.SQLAlchemyError):  # a lost session released it already
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
        yield Held(name)
    finally:
        os.close(fd)
