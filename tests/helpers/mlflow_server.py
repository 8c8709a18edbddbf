"""Starting MLflow's servers (`mlflow server`, `mlflow ui`) for a test, on 127.0.0.1 and a free
port, and stopping them with their workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_START_S = 180
"""A loaded CI machine takes a while to import MLflow's server and start its workers."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    command: list[str],
    cwd: Path,
    uri: str,
    log_name: str = "server.log",
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run an MLflow server (`command`, in `cwd`, its output in `cwd / log_name`) until the block
    ends; `uri` and the process once `uri/health` answers. The server's process group (its
    workers too) gets `stop` at the end."""
    log_path = cwd / log_name
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers are stopped with it
    )
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"the MLflow server did not start: {command}"
                time.sleep(0.5)
        yield uri, proc
    finally:
        try:
            os.killpg(proc.pid, stop)
        except ProcessLookupError:  # the server and its workers are gone already
            pass
        proc.wait(timeout=60)
