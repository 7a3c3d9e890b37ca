"""`zones worker`: commands run in forked children of a warm process, with the client's arguments, directory,
environment and streams; exit codes (a crash included) come back; the socket is owner-only; stale code, malformed
and silent clients are refused without stopping the worker."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, write_project
from tests.helpers import assert_warm_matches_hot
from zones.config import load

AS_OF = "2026-01-01T00:00:00+00:00"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAZONES__", "DATAZONES_WORKER"))}
    env.update(extra)
    return env


def zones(*args: str, cwd: Path, worker: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    extra = {"DATAZONES_WORKER": str(worker)} if worker else {}
    res = subprocess.run([sys.executable, "-m", "lifecycle.entry", *args], cwd=cwd, env=_env(**extra, **env),
                         capture_output=True, text=True, timeout=300)
    if worker and worker.exists():  # it ran in the worker, not here after a fallback
        assert "running the command in this process" not in res.stderr, res.stderr
    return res


class Running:
    """A ``zones worker`` process and what it has said on stderr so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.said = proc, ""

    def wait_for(self, text: str, timeout: float = 120) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while text not in self.said:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, f"the worker did not say {text!r}: {self.said}"
            if select.select([self.proc.stderr], [], [], left)[0]:
                self.said += self.proc.stderr.readline()


@contextmanager
def running_worker(sock: Path, *args: str) -> Iterator[Running]:
    """A ``zones [args] worker`` on ``sock``, listening; stopped (SIGTERM, exit 0, socket removed) at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "lifecycle.entry", *args, "worker", "--socket", str(sock)],
                            cwd=REPO, env=_env(COLUMNS="400"), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    w = Running(proc)
    try:
        w.wait_for("ready on")  # listening (the socket file exists a moment earlier, at bind)
        yield w
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        assert proc.stderr is not None
        w.said += proc.stderr.read()
        assert rc == 0, w.said
        assert not sock.exists()  # it removed its socket
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "run" / "worker.sock"
    with running_worker(sock):
        yield sock


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def test_commands_through_the_worker(tmp_path: Path, worker: Path) -> None:
    assert stat.S_IMODE(worker.stat().st_mode) == 0o600  # owner-only: the environment it receives holds keys
    cfg = write_project(tmp_path, datasets=["utbetalning"])
    res = zones("demo", "seed", "--as-of", AS_OF, cwd=tmp_path, worker=worker)
    assert res.returncode == 0, res.stderr
    assert "seeded" in res.stdout and "no worker" not in res.stderr
    # a crash of the child (kill at a fault point) is reported as its exit status; the next run repairs it
    res = zones("promote", "utbetalning", "--as-of", "2026-01-01T01:00:00+00:00", cwd=tmp_path, worker=worker,
                DATAZONES_FAULT="after_delta_commit")
    assert res.returncode == 137, res.stderr
    res = zones("promote", "utbetalning", "--json", "--as-of", "2026-01-01T01:00:00+00:00", cwd=tmp_path,
                worker=worker)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["recovered_batches"] == 1
    assert assert_warm_matches_hot(load(cfg), "utbetalning") > 0
    status = json.loads(zones("status", "--json", cwd=tmp_path, worker=worker).stdout)
    assert status[0]["hot_rows"] == status[0]["warm_rows"] > 0
    # exit codes, stderr and the client's own environment
    assert zones("promote", "nosuch", cwd=tmp_path, worker=worker).returncode == 2
    (tmp_path / "bad.yaml").write_text(cfg.read_text().replace("watermark: andrad", "watermark_col: andrad", 1))
    res = zones("validate", "--config", "bad.yaml", cwd=tmp_path, worker=worker)
    assert res.returncode == 2 and "bad.yaml:" in res.stderr and "watermark_col" in res.stderr
    res = zones("promote", "utbetalning", cwd=tmp_path, worker=worker, DATAZONES_PSEUDONYM_KEY="")
    assert res.returncode == 2 and "DATAZONES_PSEUDONYM_KEY" in res.stderr


def test_stale_code_and_absent_workers_fall_back_to_this_process(tmp_path: Path, worker: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from lifecycle import worker_client

    monkeypatch.setattr(worker_client, "fingerprint", lambda: "edited since the worker started")
    assert worker_client.delegate(str(worker), ["--help"]) is None
    assert "runs other code than this checkout" in capsys.readouterr().err
    assert worker_client.delegate(str(tmp_path / "nobody.sock"), ["--help"]) is None
    assert "no worker answers" in capsys.readouterr().err
    # and through the command line: the command still runs, here
    res = zones("--help", cwd=tmp_path, worker=tmp_path / "nobody.sock")
    assert res.returncode == 0 and "promote" in res.stdout and "no worker answers" in res.stderr


def test_a_request_without_its_streams_is_refused(worker: Path) -> None:
    from lifecycle.worker_client import PROTOCOL, fingerprint, recv_message, send_message

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(worker))
        send_message(s, {"protocol": PROTOCOL, "argv": ["status"], "cwd": "/", "env": {},
                         "fingerprint": fingerprint()})
        reply, _ = recv_message(s)
    assert reply is not None and "three standard streams" in reply["refused"]


def test_the_client_stays_light() -> None:
    code = ("import sys, lifecycle.entry, lifecycle.worker_client; heavy = {'typer', 'rich', 'pydantic', 'pyarrow',"
            "'sqlalchemy', 'great_expectations'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_bad_and_silent_clients_do_not_stop_the_worker(tmp_path: Path, worker: Path) -> None:
    from lifecycle.worker import REQUEST_TIMEOUT
    from lifecycle.worker_client import recv_message

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # not JSON an object: refused, worker lives on
        s.connect(str(worker))
        socket.send_fds(s, [b"\x00\x00\x00\x02[]"], [0, 1, 2])
        reply, _ = recv_message(s)
    assert reply is not None and "incomplete request" in reply["refused"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(worker))
        socket.send_fds(s, [b"\x00\x00\x00\x05{bad"], [0, 1, 2])
        reply, _ = recv_message(s)
    assert reply is not None and "bad request" in reply["refused"]
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(worker))  # connects and says nothing: the worker gives up on it after a few seconds
    try:
        t0 = time.monotonic()
        res = zones("--help", cwd=tmp_path, worker=worker)
        assert res.returncode == 0 and "promote" in res.stdout
        assert time.monotonic() - t0 < REQUEST_TIMEOUT + 30  # served once the worker gave up on it
    finally:
        silent.close()


def test_the_next_command_goes_to_a_standby_warmed_for_the_last_promotion(tmp_path: Path) -> None:
    """While idle the worker keeps one forked child that has made GX's runner and rehearsed the gates of the last
    promotion's datasets; the next command runs in it, with its own environment (keys included), and is correct.
    At stop the standby goes too."""
    from lifecycle.worker_client import PROTOCOL, fingerprint, recv_message, send_message

    cfg = write_project(tmp_path, datasets=["utbetalning"])
    sock = tmp_path / "run" / "worker.sock"
    with running_worker(sock, "--verbose") as w:
        wpid = w.proc.pid
        assert zones("demo", "seed", "--as-of", AS_OF, cwd=tmp_path, worker=sock).returncode == 0
        res = zones("promote", "utbetalning", "--as-of", "2026-01-01T01:00:00+00:00", cwd=tmp_path, worker=sock)
        assert res.returncode == 0, res.stderr
        w.wait_for("rehearsed the gates of utbetalning")  # a standby, forked once the worker was idle
        spid = int(w.said.split("rehearsed the gates of utbetalning")[0].rsplit("standby ", 1)[1].split(":")[0])
        assert _children(wpid) == {spid}
        assert zones("demo", "churn", "--as-of", "2026-01-02T00:00:00+00:00", cwd=tmp_path,
                     worker=None).returncode == 0
        out = tmp_path / "out.json"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, open(os.devnull) as null, \
                out.open("w") as stdout:
            s.connect(str(sock))
            env = _env(DATAZONES_WORKER=str(sock))
            send_message(s, {"protocol": PROTOCOL, "fingerprint": fingerprint(), "cwd": str(tmp_path), "env": env,
                             "argv": ["promote", "utbetalning", "--json", "--as-of", "2026-01-02T01:00:00+00:00"]},
                         [null.fileno(), stdout.fileno(), null.fileno()])
            reply, _ = recv_message(s)
            assert reply == {"pid": spid}  # the standby took it
            done, _ = recv_message(s)
        assert done == {"rc": 0}
        report = json.loads(out.read_text())[0]
        assert report["mode"] == "incremental" and report["rows_read"] > 0
        assert assert_warm_matches_hot(load(cfg), "utbetalning") > 0
        deadline = time.monotonic() + 60
        while not (spare := _children(wpid) - {spid}):  # the next standby
            assert time.monotonic() < deadline, "no standby after the command"
            time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in spare)  # stopped and collected with the worker


def test_a_standby_learns_only_where_the_last_promotion_was_and_never_its_keys() -> None:
    from lifecycle.standby import hint, target

    env = {"DATAZONES__HOT__URL": "postgresql+psycopg://u@h/db", "PGPASSFILE": "/p", "PATH": "/bin",
           "DATAZONES_PSEUDONYM_KEY": "k" * 64, "DATAZONES_SEAL_KEY": "s" * 64,
           "DATAZONES_PSEUDONYM_KEYS_RETIRED": "r", "AWS_SECRET_ACCESS_KEY": "x", "DATAZONES_CONFIG": "z.yaml"}
    got = hint({"argv": ["-v", "promote", "utbetalning", "--json"], "cwd": "/srv/p", "env": env})
    assert got == {"argv": ["-v", "promote", "utbetalning", "--json"], "cwd": "/srv/p",
                   "env": {"DATAZONES__HOT__URL": "postgresql+psycopg://u@h/db", "PGPASSFILE": "/p", "PATH": "/bin",
                           "DATAZONES_CONFIG": "z.yaml"}}
    assert hint({"argv": ["status", "--json"], "cwd": "/", "env": env}) is None
    assert hint({"argv": ["--help"], "cwd": "/", "env": env}) is None
    assert target(["promote", "a", "b", "--config", "x.yaml", "--as-of", "2026-01-01", "--json"]) == \
        ("x.yaml", ["a", "b"], False)
    assert target(["--verbose", "promote", "--all"]) == ("zones.yaml", [], True)
    assert target(["archive", "a"]) is None and target([]) is None
    assert target(["promote", "--batch-rows", "x"]) == ("zones.yaml", [], False)  # the command will say what is wrong


def test_a_command_that_comes_while_the_standby_warms_up_gets_a_fresh_fork_alone(tmp_path: Path) -> None:
    """A standby still warming up would take a core from the command: it is killed and the command gets a fresh
    fork, which runs it and reports its code. (The request goes out within milliseconds of the standby's fork;
    its warm-up, GX's runner included, takes a few hundred.)"""
    from lifecycle.worker_client import PROTOCOL, fingerprint, recv_message, send_message

    sock = tmp_path / "run" / "worker.sock"
    with running_worker(sock) as w:
        deadline = time.monotonic() + 30
        while not (standby := _children(w.proc.pid)):  # forked at once, then warming up (~0.3 s and more)
            assert time.monotonic() < deadline, "no standby"
            time.sleep(0.005)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, open(os.devnull) as null, \
                open(os.devnull, "w") as sink:
            s.connect(str(sock))
            send_message(s, {"protocol": PROTOCOL, "fingerprint": fingerprint(), "cwd": str(tmp_path),
                             "env": _env(), "argv": ["--help"]}, [null.fileno(), sink.fileno(), sink.fileno()])
            reply, _ = recv_message(s)
            done, _ = recv_message(s)
        assert done == {"rc": 0}
        assert reply["pid"] not in standby  # a fresh fork, and the standby that was warming up is gone
        deadline = time.monotonic() + 10
        while standby & _children(w.proc.pid):
            assert time.monotonic() < deadline, "the warming standby was not stopped"
            time.sleep(0.02)
