"""``zones worker``: a warm process that has imported datazones' heavy libraries once and forks one child per
command.

Every ``zones`` process pays ~0.5 s to start Python and import pyarrow, delta-rs, SQLAlchemy and pydantic, and every
promotion that judges rows pays ~1 s more to import Great Expectations. A scheduler that starts a fresh process
per run pays both each time. The worker pays them once: it imports everything a command needs, freezes those
objects out of the garbage collector's way and waits on a Unix socket. For each command it forks; the child
takes the client's arguments, working directory, environment (keys included) and standard streams, runs the
command exactly as ``zones`` would and exits; the worker reports the child's exit status (a crash included) to the
client. Children share nothing at run time: each opens its own connections, DuckDB, Delta tables and ledger, so a
crash or a kill -9 of one behaves as it does in a fresh process and the ledger's crash recovery is unchanged.

**Standby.** The first command a child runs that judges rows pays for Great Expectations' runner (its context
and DuckDB) and for building its suite's query graphs: ~0.25 s of a small incremental run. The worker cannot do
that itself (DuckDB's threads would not survive a fork), so while idle it keeps one forked child in reserve that
has done it (:mod:`lifecycle.standby`), for the datasets of the last promotion it saw. The next command goes to
that standby (its streams and the client's connection passed over a socket pair) instead of a fresh fork; a
command that arrives while the standby is still warming up, or a second one at the same time, gets a fresh fork
as before. ``--no-standby`` turns this off; a standby that dies three times before use turns it off too.

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
import stat
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lifecycle.worker_client import PROTOCOL, fingerprint, peer_uid, recv_message, send_message

log = logging.getLogger("datazones.worker")
STANDBY = "standby"  # selector data of the standby's socket
STANDBY_FAILURES = 3  # standbys in a row that died before use: then commands get fresh forks only
_COLD = object()
REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request once connected (it sends at once)
_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}  # blocked across fork: the child resets them first
# Libraries and datazones modules a command imports. (lifecycle.cli is loaded too, by `zones worker` itself: a
# child re-binds its consoles and logging to the client's streams.)
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
        from quality.defer import import_gx

        import_gx()
        import duckdb_engine  # noqa: F401

        import quality.expectations  # noqa: F401  (registers the datazones expectations)
        from quality.gx import _patch_gx

        _patch_gx()
        from lifecycle.cli import build_once

        build_once()
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()  # children then leave these pages shared: collections never walk (and so never copy) them
    return time.perf_counter() - t


class _Standby:
    def __init__(self, pid: int, sock: socket.socket, hint: dict[str, Any] | None) -> None:
        self.pid, self.sock, self.hint, self.ready = pid, sock, hint, False


class Worker:
    def __init__(self, path: Path, code: str, *, standby: bool = True) -> None:
        self.path = path
        self.use_standby = standby
        self.standby: _Standby | None = None
        self.standby_failures = 0
        self.hint: dict[str, Any] | None = None  # the last promotion's (lifecycle.standby.hint)
        self._detached = False
        self._warmed_tz: str | object | None = _COLD  # in a standby: TZ when GX's runner was made
        self.fingerprint = code  # taken before the preload: an edit made while it ran is caught
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.listener = self._listen()
        self.inode = self.path.stat().st_ino
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def _listen(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise RuntimeError(f"{self.path} exists and is not a socket: choose another --socket path")
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
        sel = self.sel
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        try:
            while not self.stopping:
                self._keep_standby()
                for key, _ in sel.select():
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self.wake_r:
                        self._drain()
                    elif key.data == STANDBY:
                        self._standby_says(key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._client_gone(key.fileobj, key.data)  # type: ignore[arg-type]
                self._reap()
        finally:
            self._drop_standby(kill=True)
            self.listener.close()
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self.inode:  # not a socket another worker has put there since
                    self.path.unlink()
            while self.children:  # running commands finish; their clients still get the exit code
                self._reap(block=True)
            sel.close()

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:  # EMFILE and the like: the client sees its connection closed and runs the command
            log.warning("could not accept a connection: %s", exc)
            return
        fds: list[int] = []
        try:
            uid = peer_uid(conn)
            if uid != os.getuid():
                log.warning("refused a connection from uid %s", uid)
                conn.close()
                return
            conn.settimeout(REQUEST_TIMEOUT)  # one silent client must not hold up the others
            msg, fds = recv_message(conn, max_fds=3)
            conn.settimeout(None)
            refusal = self._check(msg, fds)
            if refusal:
                send_message(conn, {"refused": refusal})
                conn.close()
                return
            pid = self._to_standby(msg, fds, conn)
            if pid is None:
                if self.standby is not None:  # still warming up: it must not take a core from this command
                    self._drop_standby(kill=True)
                old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
                try:
                    pid = os.fork()
                except BaseException:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                    raise
                if pid == 0:
                    try:
                        self._child(msg, fds, conn, old)  # never returns
                    finally:
                        os._exit(70)  # whatever escaped, a child never runs on in the worker's loop
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            self.children[pid] = conn
            send_message(conn, {"pid": pid})
            self.sel.register(conn, selectors.EVENT_READ, pid)  # readable only when the client is gone
            with contextlib.suppress(Exception):  # only a hint for the next standby
                from lifecycle.standby import hint

                self.hint = hint(msg) or self.hint
        except Exception as exc:  # a bad request or a broken client must not stop the worker
            log.warning("a command could not be started: %s: %s", type(exc).__name__, exc)
            if conn.fileno() >= 0 and conn not in self.children.values():
                with contextlib.suppress(OSError):
                    send_message(conn, {"refused": f"bad request ({type(exc).__name__})"})
                conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    # --- the standby -----------------------------------------------------------------------------------------------

    def _keep_standby(self) -> None:
        """Fork a standby when there is none and nothing runs (its warm-up must not slow a running command); one
        warmed up for another promotion than the last is replaced."""
        if self.children or self.stopping or not self.use_standby or self.standby_failures >= STANDBY_FAILURES:
            return
        if self.standby is not None:
            if self.standby.hint == self.hint:
                return
            self._drop_standby(kill=True)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            mine.close()
            theirs.close()
            self.standby_failures += 1
            log.warning("could not fork a standby: %s", exc)
            return
        if pid == 0:
            mine.close()
            try:
                self._standby_child(theirs, old)  # never returns
            finally:
                os._exit(70)  # whatever escaped, a child never runs on in the worker's loop
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        theirs.close()
        self.standby = _Standby(pid, mine, self.hint)
        self.sel.register(mine, selectors.EVENT_READ, STANDBY)

    def _standby_says(self, sock: socket.socket, *, wait: bool = True) -> None:
        sb = self.standby
        if sb is None or sock is not sb.sock:
            return  # a standby handed a command in this round of events
        try:
            said = sock.recv(16) if wait else sock.recv(16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return  # nothing said yet
        except OSError:
            said = b""
        if said:
            sb.ready = True
        else:  # it died warming up; _reap collects it
            self._drop_standby(kill=False)
            self.standby_failures += 1
            log.warning("the standby exited before a command came")

    def _to_standby(self, msg: dict[str, Any], fds: list[int], conn: socket.socket) -> int | None:
        """Hand the command to a ready standby; its pid, or None (then the command gets a fresh fork)."""
        sb = self.standby
        if sb is not None and not sb.ready:  # its "ready" may be waiting in this same round of events
            self._standby_says(sb.sock, wait=False)
            sb = self.standby
        if sb is None or not sb.ready:
            return None
        self.standby = None
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sb.sock)
        try:
            send_message(sb.sock, msg, [*fds, conn.fileno()])
        except OSError as exc:
            log.warning("the standby could not take a command (%s): forking one", exc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(sb.pid, signal.SIGKILL)
            return None
        finally:
            sb.sock.close()
        self.standby_failures = 0  # counted in a row
        return sb.pid

    def _drop_standby(self, *, kill: bool) -> None:
        sb, self.standby = self.standby, None
        if sb is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sb.sock)
        sb.sock.close()
        if kill:  # _reap collects it (or, at stop, the wait below)
            with contextlib.suppress(ProcessLookupError):
                os.kill(sb.pid, signal.SIGKILL)
        if kill and self.stopping:
            deadline = time.monotonic() + 5
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(sb.pid, os.WNOHANG)[0] == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)

    def _standby_child(self, sock: socket.socket, mask: Any) -> None:
        """In the standby: warm up, say so, wait for one command and run it as :meth:`_child` does."""
        try:
            self._detach(mask)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            from lifecycle.standby import warm

            try:
                warm(self.hint)
            except Exception as exc:  # best effort: the command runs all the same
                log.info("standby warm-up incomplete: %s: %s", type(exc).__name__, exc)
            self._warmed_tz = os.environ.get("TZ")  # as GX's runner (if made) saw it
            gc.collect()
            gc.freeze()
            sock.sendall(b"R")
            # Signals wait again until _child is inside its handlers: a Ctrl-C forwarded between the hand-over and
            # then must not unwind into this copy of the worker's loop (whose exit would remove the worker's socket).
            signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        except BaseException:  # stopped (SIGTERM) or its worker is gone, before any command came: nothing to say
            os._exit(0)
        try:
            msg, fds = recv_message(sock, max_fds=4)
            if msg is None:  # the worker let it go
                os._exit(0)
            if not isinstance(msg, dict) or len(fds) != 4:
                os._exit(70)
            os.set_inheritable(fds[3], False)  # as accept() makes it for a forked command: not for its programs
            conn = socket.socket(fileno=fds[3])
            sock.close()
        except KeyboardInterrupt:  # the client's Ctrl-C, forwarded before the command began
            os._exit(128 + signal.SIGINT)
        except BaseException:  # a command was handed over but cannot run: never report success for it
            os._exit(70)
        self._child(msg, fds[:3], conn, mask)

    def _detach(self, mask: Any) -> None:
        """A child's first steps: its own session, default signals, none of the worker's sockets. (A standby calls it
        again when its command comes: the signals are reset again, the rest is done once.)"""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if self._detached:
            return
        self._detached = True
        os.setsid()  # signals for the worker (its terminal's Ctrl-C, a service stop) are not the command's
        self.listener.close()
        for c in self.children.values():
            c.close()
        if self.standby is not None:
            self.standby.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _client_gone(self, conn: socket.socket, pid: int) -> None:
        """The client of a running command hung up (killed, timed out): stop its command as Ctrl-C would."""
        self.sel.unregister(conn)
        with contextlib.suppress(OSError):
            if conn.recv(1):
                return  # clients send nothing after the request; ignore it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            log.warning("the client of command %s hung up: stopped it (SIGTERM)", pid)

    def _check(self, msg: Any, fds: list[int]) -> str | None:
        if not isinstance(msg, dict) or len(fds) != 3:
            return "incomplete request (arguments and three standard streams expected)"
        if msg.get("protocol") != PROTOCOL:
            return f"protocol {msg.get('protocol')} (this worker speaks {PROTOCOL})"
        if msg.get("fingerprint") != self.fingerprint:
            return ("it runs other code than this checkout (edited or reinstalled since it started); "
                    "restart `zones worker`")
        return None

    def _child(self, msg: dict[str, Any], fds: list[int], conn: socket.socket, mask: Any) -> None:
        code = 70
        try:
            # ``conn`` stays open until this process ends: the client sees the end of the stream only then, even
            # if the worker itself is killed meanwhile.
            self._detach(mask)
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
            time.tzset()
            tz_changed = self._warmed_tz is not _COLD and os.environ.get("TZ") != self._warmed_tz
            if tz_changed:
                from quality.gx import discard_runner  # its DuckDB took the warm-up's time zone: make a new one

                discard_runner()
            os.umask(int(msg.get("umask", 0o022)))
            sys.argv = ["zones", *msg["argv"]]
            _rebind_output()
            from lifecycle.cli import main

            try:
                main()
                code = 0
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:  # Ctrl-C forwarded by the client: as Python ends on it
            code = 128 + signal.SIGINT
            with contextlib.suppress(Exception):
                print("zones: interrupted", file=sys.stderr)
        except BaseException:  # as Python ends on an uncaught exception (the worker must never run on in a child)
            code = 1
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _reap(self, *, block: bool = False) -> None:
        while self.children or not block:  # not blocking: also collects a standby that died
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if self.standby is not None and pid == self.standby.pid:  # died before it was used
                self._drop_standby(kill=False)
                self.standby_failures += 1
                log.warning("the standby exited before a command came (%s)", os.waitstatus_to_exitcode(status))
                continue
            conn = self.children.pop(pid, None)
            rc = os.waitstatus_to_exitcode(status)
            if conn is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(conn)
                try:
                    send_message(conn, {"rc": rc if rc >= 0 else 128 - rc})
                except OSError:
                    pass  # the client is gone; the command ran all the same
                conn.close()
            if block:
                return


def _rebind_output() -> None:
    """In a child: the CLI's consoles and logging were set up for the worker's streams and environment."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    cli = sys.modules.get("lifecycle.cli")
    if cli is not None:  # re-initialised in place: other modules imported these objects by name
        cli.out.__init__()  # type: ignore[misc]
        cli.err.__init__(stderr=True)  # type: ignore[misc]


def serve(path: Path, *, ready: Any = None, standby: bool = True) -> None:
    """Preload, listen on ``path`` and serve until SIGTERM/SIGINT. ``ready(path, seconds)`` is called once
    listening; ``standby`` keeps a warmed-up child in reserve (module docstring)."""
    code = fingerprint()
    seconds = preload()
    worker = Worker(path, code, standby=standby)
    if ready is not None:
        ready(path, seconds)
    worker.serve()
