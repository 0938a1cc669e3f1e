"""The parent of the embedded multi-process mode (``recsvc-serve --workers N`` without a Qdrant server).

It binds the TCP socket once (and one unix socket per process, ``worker-<i>.sock``: index 0 is the
writer, where readers forward /admin), then starts process 0 (the writer) and processes 1..N-1
(readers), each ``python -m service.supervisor child ...`` running uvicorn on the inherited sockets,
so the kernel hands each new connection to whichever process accepts it first. The sockets stay
open in the parent: a process that dies is started again on the same sockets (connections wait in
the backlog meanwhile); a child that exits 2 (a configuration error: it would fail again) stops
the whole service with status 2. SIGTERM/SIGINT stop every child gracefully (SIGTERM, uvicorn's
30 s drain), then the parent exits 0. Children die with the parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from service.errors import ConfigurationError

if TYPE_CHECKING:
    from service.config import Settings
    from service.state import Components

logger = logging.getLogger("service.supervisor")

STOP_TIMEOUT_S = 40.0  # uvicorn drains for up to 30 s
STABLE_S = 60.0  # a child that ran this long before dying is restarted after the base delay again
MAX_DELAY_S = 30.0


def auto_workers(count: int, embedded: bool) -> int:
    """``RECSVC_WORKERS__COUNT`` / ``--workers``: 0 means one per core with embedded Qdrant, else 1."""
    if count > 0:
        return count
    return max(1, os.cpu_count() or 1) if embedded else 1


def threads_per_process(onnx_threads: int, workers: int) -> int:
    """Intra-op threads of each process's ONNX sessions: the configured number, else the cores shared
    out (every process has its own encoder, and they all run at once under load)."""
    if onnx_threads > 0:
        return onnx_threads
    return max(1, (os.cpu_count() or 1) // workers)


class _Child:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.delay = 0.0
        self.restart_at: float | None = None
        self.restarts = 0

    @property
    def name(self) -> str:
        return "writer" if self.index == 0 else f"reader-{self.index}"


def _listen_unix(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)  # only this user talks to the processes directly (admin still needs the token)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run_workers(settings: Settings, args: argparse.Namespace, workers: int, child_cmd: list[str] | None = None) -> int:
    """Serve with ``workers`` processes (1 writer + readers) until SIGTERM/SIGINT; the exit status.

    ``child_cmd``: the command that runs :func:`child_main` (default ``python -m service.supervisor
    child``; tests start children that serve with the FakeEncoder of their tiny artifact set)."""
    from service.workers import socket_dir, worker_socket

    run_id = uuid.uuid4().hex
    sock_dir = socket_dir(settings)
    sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tcp = socket.create_server((args.host, args.port), backlog=2048)
    tcp.set_inheritable(True)
    uds = [_listen_unix(worker_socket(sock_dir, i)) for i in range(workers)]
    env = dict(os.environ)
    env["RECSVC_ONNX_THREADS"] = str(threads_per_process(settings.onnx_threads, workers))
    children = [_Child(i) for i in range(workers)]
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def start(child: _Child) -> None:
        cmd = [
            *(child_cmd or [sys.executable, "-m", "service.supervisor", "child"]),
            "--index", str(child.index), "--run-id", run_id, "--workers", str(workers),
            "--tcp-fd", str(tcp.fileno()), "--unix-fd", str(uds[child.index].fileno()),
            "--log-level", args.log_level,
        ]  # fmt: skip
        if args.proxy_headers:
            cmd.append("--proxy-headers")
        child.proc = subprocess.Popen(cmd, env=env, pass_fds=(tcp.fileno(), uds[child.index].fileno()))
        child.started = time.monotonic()
        child.restart_at = None
        logger.info("started %s (pid %d)", child.name, child.proc.pid)

    status = 0
    try:
        logger.info(
            "serving on http://%s:%d: %d processes (1 writer + %d readers, %s intra-op threads each; sockets in %s)",
            args.host, args.port, workers, workers - 1, env["RECSVC_ONNX_THREADS"], sock_dir,
        )  # fmt: skip
        for child in children:
            start(child)
        while not stopping:
            now = time.monotonic()
            for child in children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        start(child)
                    continue
                assert child.proc is not None
                rc = child.proc.poll()
                if rc is None:
                    continue
                if rc == 2 and child.index == 0:  # the writer: a reader would only wait for it forever
                    logger.error("%s exited with a configuration error (status 2): stopping", child.name)
                    status = 2
                    stopping.append(0)
                    break
                ran = now - child.started
                base = settings.workers.restart_delay_s
                child.delay = base if ran >= STABLE_S or child.delay == 0 else min(2 * child.delay, MAX_DELAY_S)
                child.restart_at = now + child.delay
                child.restarts += 1
                logger.warning(
                    "%s (pid %d) exited with status %s after %.0f s; starting it again in %.1f s",
                    child.name, child.proc.pid, rc, ran, child.delay,
                )  # fmt: skip
            time.sleep(0.1)
    finally:
        _stop(children)
        for s, handler in previous.items():
            signal.signal(s, handler)
        tcp.close()
        for i, u in enumerate(uds):
            u.close()
            with contextlib.suppress(OSError):
                worker_socket(sock_dir, i).unlink()
    return status


def _stop(children: list[_Child]) -> None:
    live = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for c in live:
        assert c.proc is not None
        with contextlib.suppress(ProcessLookupError):
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for c in live:
        assert c.proc is not None
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s: killing it", c.name, STOP_TIMEOUT_S)
            c.proc.kill()
            c.proc.wait()


# ------------------------------------------------------------------ child
def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the parent dies (so a killed parent leaves no orphans serving)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _name_records(process: str) -> None:
    """Every log line of this process says which one it is: the logger name gets a ``writer:`` /
    ``reader-1:`` prefix (text and JSON formats alike)."""
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.name = f"{process}:{record.name}"
        return record

    logging.setLogRecordFactory(factory)


def child_main(argv: list[str], components: Components | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsvc-serve child")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--tcp-fd", type=int, required=True)
    p.add_argument("--unix-fd", type=int, required=True)
    p.add_argument("--log-level", default="info")
    p.add_argument("--proxy-headers", action="store_true")
    a = p.parse_args(argv)
    _die_with_parent()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    debug = a.log_level == "debug"
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _name_records("writer" if a.index == 0 else f"reader-{a.index}")
    from service.cli import _fail, _serve_one

    try:
        from service.main import create_app, load_settings
        from service.workers import make_role

        settings = load_settings()
        role = make_role(settings, a.index, a.run_id, a.workers)
        sockets = [socket.socket(fileno=a.tcp_fd), socket.socket(fileno=a.unix_fd)]
        serve_args = argparse.Namespace(host="127.0.0.1", port=0, log_level=a.log_level, proxy_headers=a.proxy_headers)
        _serve_one(create_app(settings, components=components, role=role), serve_args, sockets=sockets)
        return 0
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as exc:
        return _fail(exc, debug)
    except Exception as exc:
        return _fail(exc, debug)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit("usage: python -m service.supervisor child ... (started by recsvc-serve --workers N)")
