"""Who is working in an output directory: an OS file lock naming its host and pid.

The lock (`flock`) is released by the kernel however its process ends, SIGKILL included, so a
lock file whose lock is free was left by a process that is gone: the directory's run was left
RUNNING by it, and the next process takes the directory over (and says so). A lock that is held
belongs to a live process: nobody else may train there.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lorabench import contract
from lorabench.errors import LorabenchError

log = logging.getLogger(__name__)


class DirectoryBusy(LorabenchError):
    """Another live process holds the output directory's lock."""


def owner_alive(host: str, pid: int) -> bool:
    """Whether a process named by (host, pid) may still be running: on this host, whether the
    pid exists; on another host it cannot be told, so it counts as alive."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _owner_text(text: str) -> str:
    try:
        owner = json.loads(text)
        return f"pid {owner['pid']} on {owner['host']} (since {owner['since']})"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


_held: set[Path] = set()
"""Directories this process holds (flock conflicts with a second open file of the same process,
so a nested claim, e.g. a sweep's point and its training, is a no-op)."""


TRAINING_REMEDY = "give this run another training.output_dir"
EVALUATION_REMEDY = "evaluate under another eval.name"


@contextmanager
def directory_lock(output_dir: Path, remedy: str = TRAINING_REMEDY) -> Iterator[None]:
    """Hold `output_dir`'s lock for the block; `DirectoryBusy` if a live process holds it (its
    message names the owner and, after waiting, `remedy`: what else the user may do)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = (output_dir / contract.LOCK_FILE).resolve()
    if path in _held:
        yield
        return
    with _holding(path, output_dir, remedy):
        yield


@contextmanager
def _holding(path: Path, output_dir: Path, remedy: str) -> Iterator[None]:
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise DirectoryBusy(
                f"{output_dir} is in use by {_owner_text(f.read())} ({path}); wait for it to "
                f"end, or {remedy}"
            ) from None
        f.seek(0)
        if previous := f.read().strip():
            log.warning(
                "%s was left by %s, which is gone; taking the directory over (its run is resumed)",
                output_dir,
                _owner_text(previous),
            )
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        f.seek(0)
        f.truncate()
        f.write(json.dumps(owner))
        f.flush()
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            f.seek(0)
            f.truncate()  # ended normally: nothing stale is left
            f.flush()
