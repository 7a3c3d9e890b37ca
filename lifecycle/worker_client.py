"""The client side of ``zones worker``: hand one command to a warm worker, or say why not.

Imported by the console entry point before anything heavy, so it uses the standard library only. A command goes
to the worker when ``DATAZONES_WORKER`` names its socket; the worker forks a child that runs the command with this
process's arguments, working directory, environment and standard streams (passed as file descriptors), and the
exit code comes back here. When no worker answers, or it runs other code than this checkout (see
:func:`fingerprint`), the command runs in this process as usual, after a one-line note on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

PROTOCOL = 1
PACKAGES = ("zones", "lifecycle", "quality", "lineage", "catalog")
_ROOT = Path(__file__).resolve().parents[1]
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def fingerprint() -> str:
    """Which code a process runs: the interpreter, its environment prefix, the installed distributions (name and
    version) and every module file of datazones (path, size, modification time). A worker started before an edit,
    a reinstall or an upgrade refuses commands, so a command never runs on stale code."""
    h = hashlib.sha256(f"{PROTOCOL}\0{sys.version}\0{sys.prefix}\0{_ROOT}".encode())
    for site in sorted({p for p in sys.path if p.endswith("site-packages")}):
        try:
            h.update("\0".join(sorted(n for n in os.listdir(site) if n.endswith(".dist-info"))).encode())
        except OSError:
            continue
    for pkg in PACKAGES:
        folder = _ROOT / pkg
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith((".py", ".so")) and entry.is_file():
                st = entry.stat()
                h.update(f"{pkg}/{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def send_message(sock: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], fds)
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


MAX_MESSAGE = 1 << 24


def _exactly(sock: socket.socket, n: int, fds: list[int], max_fds: int) -> bytes | None:
    """``n`` bytes (never more: the next message may already be waiting), collecting file descriptors sent with
    the first of them; None at end of stream."""
    buf = b""
    while len(buf) < n:
        if max_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, n - len(buf), max_fds)
            fds.extend(got)
        else:
            chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[Any, list[int]]:
    """One length-prefixed JSON message (and the file descriptors sent with it); None at end of stream. On an
    error the descriptors already received are closed."""
    fds: list[int] = []
    try:
        head = _exactly(sock, 4, fds, max_fds)
        if head is None:
            raise EOFError
        (n,) = struct.unpack("!I", head)
        if n > MAX_MESSAGE:
            raise ValueError(f"message of {n} bytes (at most {MAX_MESSAGE})")
        body = _exactly(sock, n, fds, max_fds)
        if body is None:
            raise EOFError
        return json.loads(body), fds
    except EOFError:
        for fd in fds:
            os.close(fd)
        return None, []
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (Linux); None where it cannot be known."""
    try:
        return int(struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1])
    except (AttributeError, OSError):
        return None


def _note(text: str) -> None:
    print(f"zones: {text}; running the command in this process", file=sys.stderr)


def delegate(path: str, argv: list[str]) -> int | None:
    """Run ``zones ARGV`` in the worker at ``path``: its exit code, or None when this process should run it."""
    request = {"protocol": PROTOCOL, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
               "umask": _umask(), "fingerprint": fingerprint()}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        _note(f"no worker answers at {path} ({exc.strerror or exc})")
        return None
    with sock:
        if peer_uid(sock) != os.getuid():  # the request carries the keys: only to a worker of this user
            _note(f"the socket {path} is served by another user")
            return None
        try:
            send_message(sock, request, [0, 1, 2])
            reply, _ = recv_message(sock)
        except (OSError, ValueError) as exc:
            _note(f"the worker at {path} failed to take the command ({exc})")
            return None
        if not isinstance(reply, dict) or "pid" not in reply:
            why = reply.get("refused") if isinstance(reply, dict) else None
            _note(f"the worker at {path} refused: {why or 'it closed the connection'}")
            return None
        pid = int(reply["pid"])

        def forward(signum: int, _frame: Any) -> None:  # Ctrl-C reaches this process, not the worker's child
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for sig in _FORWARDED:
            signal.signal(sig, forward)
        try:
            done, _ = recv_message(sock)
        except (OSError, ValueError):
            done = None
    if not isinstance(done, dict) or "rc" not in done:
        print(f"zones: the worker at {path} lost the command (pid {pid}) before it ended", file=sys.stderr)
        return 4
    return int(done["rc"])


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
