"""Who works where: an output directory's lock, and a sweep's parent run, are never taken from a
live process, and are taken over (with a message) from a dead one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench import contract
from lorabench.evaluation.targets import resolve_target
from lorabench.locking import DirectoryBusy, directory_lock
from lorabench.tracking.parents import open_parent
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.runs import runs_of

HOLDER = """
import sys, time
from pathlib import Path
from lorabench.locking import directory_lock
with directory_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_keeps_the_directory_and_a_killed_one_loses_it(tmp_path, caplog) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        with pytest.raises(DirectoryBusy, match=f"pid {proc.pid} on "):
            with directory_lock(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with directory_lock(out):
        assert '"pid": ' in (out / contract.LOCK_FILE).read_text()
    assert f"left by pid {proc.pid}" in caplog.text and "which is gone" in caplog.text
    assert (out / contract.LOCK_FILE).read_text() == ""  # released: nothing stale


def test_an_evaluation_another_process_is_writing_is_refused_before_generating(
    tmp_path, isolated, demo_config, store
) -> None:
    small = ("eval.demo_per_class=1", "eval.decoding.max_new_tokens=2")
    eval_dir = resolve_target(demo_config(*small)).eval_dir  # the base row's (pretrains it)
    proc = _holder(eval_dir)
    try:
        result = run_cli("evaluate.py", "profile=demo", *isolated, *small, cwd=tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"pid {proc.pid} on " in result.stderr and "eval.name" in result.stderr
    assert not (eval_dir / contract.GENERATIONS_FILE).exists()
    assert runs_of(store) == []  # refused before its run opened


def test_nested_claims_in_one_process_are_one_claim(tmp_path) -> None:
    with directory_lock(tmp_path / "out"), directory_lock(tmp_path / "out"):
        pass


def test_a_rerun_sweep_continues_the_parent_a_dead_sweep_left(tracking, store) -> None:
    overrides = ["method=lora,ft", "data='0.6m'"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = open_parent(tracking, overrides)
    store.set_tag(left, contract.TAG_SWEEP_PID, str(dead.pid))  # its sweep was killed
    assert open_parent(tracking, overrides) == left
    run = store.get_run(left)
    assert run.info.status == "RUNNING"
    assert run.data.tags[contract.TAG_SWEEP_PID] != str(dead.pid)
    assert run.data.tags[contract.TAG_NOTE].startswith("python")  # the command, as run
    # Now held by this live process: another sweep of the same overrides opens its own.
    assert open_parent(tracking, overrides) != left
    assert open_parent(tracking, ["method=ft"]) != left


def test_a_parent_that_was_closed_unfinished_is_continued(tracking, store) -> None:
    left = open_parent(tracking, ["x=1"])
    store.set_terminated(left, "KILLED")  # Ctrl-C: the sweep ended
    assert open_parent(tracking, ["x=1"]) == left
    store.set_terminated(left, "FINISHED")
    assert open_parent(tracking, ["x=1"]) != left  # a finished sweep is not reopened
