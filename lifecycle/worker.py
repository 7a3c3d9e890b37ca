"""``zones worker``: a warm process that has imported datazones' heavy libraries once and forks one child per
command.

Every ``zones`` process pays ~0.5 s to start Python and import pyarrow, delta-rs, SQLAlchemy and pydantic, and every
promotion that judges rows pays ~1.4 s more to import Great Expectations. A scheduler that starts a fresh process
per run pays both each time. The worker pays them once: it imports everything a command needs, freezes those
objects out of the garbage collector's way and waits on a Unix socket. For each command it forks; the child
takes the client's arguments, working directory, environment (keys included) and standard streams, runs the
command exactly as ``zones`` would and exits; the worker reports the child's exit status (a crash included) to the
client. Children share nothing at run time: each opens its own connections, DuckDB, Delta tables and ledger, so a
crash or a kill -9 of one behaves as it does in a fresh process and the ledger's crash recovery is unchanged.

Safety: the socket is created owner-only (0600) and every connection's peer must be this user (``SO_PEERCRED``);
a client running other code than the worker (an edit, a reinstall: :func:`lifecycle.worker_client.fingerprint`)
is refused and runs the command itself. The worker starts no threads of its own and opens no connection before it
forks; the libraries' own helper threads (allocators) are fork-aware. Stop it with SIGTERM or Ctrl-C: it stops
accepting, lets running commands finish and removes its socket.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from lifecycle.worker_client import PROTOCOL, fingerprint, recv_message, send_message

log = logging.getLogger("datazones.worker")
# Libraries and datazones modules a command imports. Not lifecycle.cli: it binds its consoles at import time,
# and a child must bind them to the client's streams.
PRELOAD = ("numpy", "pyarrow", "pyarrow.compute", "pyarrow.parquet", "pyarrow.dataset", "sqlalchemy", "pydantic",
           "yaml", "typer", "rich.console", "rich.table", "rich.progress", "deltalake", "duckdb", "psycopg",
           "adbc_driver_manager", "adbc_driver_postgresql", "cryptography.hazmat.primitives.ciphers",
           "zones.config", "zones.hot", "lifecycle.ledger", "lifecycle.promote", "lifecycle.protect",
           "lifecycle.warm", "lifecycle.warm_files", "lifecycle.fasthmac", "quality.gate", "quality.gx_gate")


def preload() -> float:
    """Import what commands use, Great Expectations included (with the gate's patches); seconds taken."""
    t = time.perf_counter()
    gc.disable()
    try:
        for name in PRELOAD:
            importlib.import_module(name)
        from quality.defer import defer_heavy

        defer_heavy()
        import duckdb_engine  # noqa: F401
        import great_expectations  # noqa: F401

        import quality.expectations  # noqa: F401  (registers the datazones expectations)
        from quality.gx import _patch_gx

        _patch_gx()
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()  # children then leave these pages shared: collections never walk (and so never copy) them
    return time.perf_counter() - t


class Worker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fingerprint = fingerprint()
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.listener = self._listen()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def _listen(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # a socket left by a worker that died
            else:
                probe.close()
                raise RuntimeError(f"a worker already listens on {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        return sock

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector; children are reaped below
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        try:
            while not self.stopping:
                for key, _ in sel.select():
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._drain()
                self._reap()
        finally:
            sel.close()
            self.listener.close()
            self.path.unlink(missing_ok=True)
            while self.children:  # running commands finish; their clients still get the exit code
                self._reap(block=True)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            pid_, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.getuid():
                log.warning("refused a connection from uid %s (pid %s)", uid, pid_)
                conn.close()
                return
            msg, fds = recv_message(conn, max_fds=3)
            refusal = self._check(msg, fds)
            if refusal:
                send_message(conn, {"refused": refusal})
                conn.close()
                return
            assert msg is not None
            pid = os.fork()
            if pid == 0:
                self._child(msg, fds, conn)  # never returns
            self.children[pid] = conn
            send_message(conn, {"pid": pid})
        except OSError as exc:
            log.warning("a command could not be started: %s", exc)
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _check(self, msg: dict[str, Any] | None, fds: list[int]) -> str | None:
        if msg is None or len(fds) != 3:
            return "incomplete request (arguments and three standard streams expected)"
        if msg.get("protocol") != PROTOCOL:
            return f"protocol {msg.get('protocol')} (this worker speaks {PROTOCOL})"
        if msg.get("fingerprint") != self.fingerprint:
            return ("it runs other code than this checkout (edited or reinstalled since it started); "
                    "restart `zones worker`")
        return None

    def _child(self, msg: dict[str, Any], fds: list[int], conn: socket.socket) -> None:
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            conn.close()
            self.listener.close()
            for c in self.children.values():
                c.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            for target, fd in zip((0, 1, 2), fds, strict=True):
                os.dup2(fd, target)
                os.close(fd)
            fds.clear()
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1 if os.isatty(1) else -1)
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
            os.chdir(msg["cwd"])
            os.environ.clear()
            os.environ.update(msg["env"])
            sys.argv = ["zones", *msg["argv"]]
            from lifecycle.cli import main

            try:
                main()
                code = 0
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # the worker must never run on in a child
            with contextlib.suppress(Exception):
                print(f"zones worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _reap(self, *, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            rc = os.waitstatus_to_exitcode(status)
            if conn is not None:
                try:
                    send_message(conn, {"rc": rc if rc >= 0 else 128 - rc})
                except OSError:
                    pass  # the client is gone; the command ran all the same
                conn.close()
            if block:
                return


def serve(path: Path, *, ready: Any = None) -> None:
    """Preload, listen on ``path`` and serve until SIGTERM/SIGINT. ``ready(path, seconds)`` is called once
    listening."""
    seconds = preload()
    worker = Worker(path)
    if ready is not None:
        ready(path, seconds)
    worker.serve()
