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
    """Which code a process runs: the interpreter, its environment prefix and every module file of datazones
    (path, size, modification time). A worker started before an edit or a reinstall refuses commands, so a
    command never runs on stale code."""
    h = hashlib.sha256(f"{PROTOCOL}\0{sys.version}\0{sys.prefix}\0{_ROOT}".encode())
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


def recv_message(sock: socket.socket, *, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One length-prefixed JSON message (and the file descriptors sent with it); None at end of stream."""
    fds: list[int] = []
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack("!I", buf[:4])[0]:
        if max_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 1 << 16, max_fds)
            fds.extend(got)
        else:
            chunk = sock.recv(1 << 16)
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None, []
        buf += chunk
    (n,) = struct.unpack("!I", buf[:4])
    return json.loads(buf[4:4 + n]), fds


def _note(text: str) -> None:
    print(f"zones: {text}; running the command in this process", file=sys.stderr)


def delegate(path: str, argv: list[str]) -> int | None:
    """Run ``zones ARGV`` in the worker at ``path``: its exit code, or None when this process should run it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        _note(f"no worker answers at {path} ({exc.strerror or exc})")
        return None
    with sock:
        send_message(sock, {"protocol": PROTOCOL, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                            "fingerprint": fingerprint()}, [0, 1, 2])
        reply, _ = recv_message(sock)
        if reply is None or "pid" not in reply:
            _note(f"the worker at {path} refused: {(reply or {}).get('refused', 'it closed the connection')}")
            return None
        pid = int(reply["pid"])

        def forward(signum: int, _frame: Any) -> None:  # Ctrl-C reaches this process, not the worker's child
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for sig in _FORWARDED:
            signal.signal(sig, forward)
        done, _ = recv_message(sock)
    if done is None or "rc" not in done:
        print(f"zones: the worker at {path} lost the command (pid {pid}) before it ended", file=sys.stderr)
        return 4
    return int(done["rc"])
