"""SIGKILL (the OOM killer, a preempted Slurm job) loses nothing: rerunning the same command
resumes the same MLflow run, logs each step once, keeps counting GPU hours, pays no judge call
twice and skips finished sweep points."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from lorabench import contract
from lorabench.training import train
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import FakeOpenAIServer
from tests.helpers.runs import runs_of


def _env() -> dict[str, str]:
    # Read when a process starts: the session fixture exports the shared pretrained-base
    # directory after this module is imported.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _start(script: str, args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    # Output into a file: a full pipe would stall the process.
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        env=_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _kill_when(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def _rerun(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


class _Writes:
    """The test's own clock on a file a training process rewrites (atomically) as it trains:
    each new content was written after the read that still saw the old one began, and before
    the read that saw it ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()
        self.text = self._read()  # what an earlier session left: not this one's
        self.changes: list[tuple[float, float]] = []  # (written after, written before)

    def _read(self) -> str | None:
        try:
            return self.path.read_text()
        except OSError:
            return None

    def poll(self) -> None:
        """Read the file once."""
        started = time.monotonic()
        text = self._read()
        if text is not None and text != self.text:
            self.changes.append((self.started, time.monotonic()))
            self.text = text
        self.started = started

    def span(self) -> float:
        """Seconds the process certainly trained: from its first write seen here (after its
        first step) to its last one."""
        assert len(self.changes) >= 2, "too few writes seen to time the session"
        return self.changes[-1][0] - self.changes[0][1]


def _watch_until_done(proc: subprocess.Popen, writes: _Writes, timeout: float) -> None:
    """Poll `writes` until `proc` exits (killed, failing the test, after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the process ran past {timeout} s")
        writes.poll()
        time.sleep(0.05)
    writes.poll()


def _step_written(path: Path, least: int) -> bool:
    try:
        return json.loads(path.read_text())["step"] >= least
    except (OSError, ValueError, KeyError):
        return False


@pytest.mark.slow
def test_training_killed_between_checkpoints(tmp_path: Path, isolated, store) -> None:
    total, every = 30, 10
    args = [
        "profile=demo",
        "data=math_0.25m",
        *isolated,
        f"training.max_steps={total}",
        f"training.save_steps={every}",
    ]
    out, log = tmp_path / "out", tmp_path / "first.log"
    gpu_file = out / contract.GPU_HOURS_FILE
    first = _Writes(gpu_file)
    proc = _start("train.py", args, tmp_path, log)

    def ready() -> bool:
        first.poll()
        return _step_written(gpu_file, every + 2)

    _kill_when(ready, proc, log, 300)
    assert not (out / contract.COMPLETE_MARKER).exists(), "finished before the kill"
    (killed,) = runs_of(store)
    assert killed.info.status == "RUNNING"  # nobody closed it
    first_session_hours = json.loads(gpu_file.read_text())["gpu_hours"]
    assert f'"pid": {proc.pid}' in (out / contract.LOCK_FILE).read_text()

    second, rerun_log = _Writes(gpu_file), tmp_path / "second.log"
    rerun = _start("train.py", args, tmp_path, rerun_log)
    _watch_until_done(rerun, second, 600)
    said = rerun_log.read_text()  # Hydra logs to stdout
    assert rerun.returncode == 0, said[-4000:]
    assert f"pid {proc.pid}" in said and "which is gone" in said

    (run,) = runs_of(store)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    for key in contract.STEP_METRICS.values():
        steps = [m.step for m in store.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, total + 1)), key  # no gap, no step twice
    gpu = store.get_metric_history(run.info.run_id, contract.TRAIN_GPU_HOURS)
    assert len({m.step for m in gpu}) == len(gpu)
    assert run.data.metrics[contract.TRAIN_GPU_HOURS] > first_session_hours
    # Both sessions, each at least as long as the test saw it train (one process: GPU hours are
    # its wall clock).
    trained = first.span() + second.span()
    assert run.data.metrics[contract.TRAIN_GPU_HOURS] * 3600 >= trained, trained
    assert (out / contract.LOCK_FILE).read_text() == ""  # ended normally: released


@pytest.mark.slow
def test_evaluation_killed_while_judging(
    tmp_path: Path, isolated, demo_config, store, monkeypatch
) -> None:
    trained = train(demo_config("data=math_0.25m", "training.max_steps=2"))
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    with FakeOpenAIServer(api_key=key, latency=0.3) as server:
        args = [
            "profile=demo",
            "data=math_0.25m",
            "training.max_steps=2",
            *isolated,
            f"run={trained.run_id}",
            "eval.demo_per_class=2",
            "eval.decoding.max_new_tokens=4",
            "judge=openai",
            f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}",
            "judge.prompts=project",
            "judge.concurrency=1",
        ]
        log = tmp_path / "first.log"
        proc = _start("evaluate.py", args, tmp_path, log)
        _kill_when(lambda: server.chat_calls >= 6, proc, log, 300)
        calls_before = server.chat_calls
        _rerun("evaluate.py", args, tmp_path)
        bodies = [json.dumps(r.body["messages"]) for r in server.chat_requests]
    repeated = {b: n for b, n in collections.Counter(bodies).items() if n > 1}
    # At most the one-token preflight (each session) and the request in flight at the kill.
    assert len(repeated) <= 2 and all(n == 2 for n in repeated.values()), repeated
    assert len(set(bodies)) == 20 + 1  # every item judged, plus the preflight
    (run,) = runs_of(store)
    assert run.info.run_id == trained.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["eval/judge_cache_hits"] >= calls_before - 2
    assert run.data.metrics["eval/judged_items"] == 20


@pytest.mark.slow
def test_sweep_killed_between_points(tmp_path: Path, isolated, store) -> None:
    args = ["-m", "profile=demo", "method=lora,ft", "data=math_0.25m", *isolated]
    args = [a for a in args if not a.startswith("training.output_dir=")]
    args += [
        f"training.output_dir={tmp_path}/out/${{run_name}}",
        "training.max_steps=2",
        "eval.demo_per_class=1",
        "eval.decoding.max_new_tokens=4",
    ]

    def one_point_done() -> bool:
        return any(
            # The demo's point is done once its anatomy is logged (after its evaluation).
            r.info.status == "FINISHED" and contract.TAG_ANATOMY_HASH in r.data.tags
            for r in runs_of(store)
            if "sweep" not in r.data.tags
        )

    log = tmp_path / "first.log"
    proc = _start("sweep.py", args, tmp_path, log)
    _kill_when(one_point_done, proc, log, 400)
    done = _rerun("sweep.py", args, tmp_path)
    outcomes = re.findall(r"^tiny\+(\w+)\(math_0\.25m\)\[steps=2\]: (\w+)\b", done.stdout, re.M)
    assert sorted(o for _, o in outcomes) == ["finished", "skipped"], done.stdout[-3000:]
    assert "continuing sweep parent run" in done.stdout + done.stderr

    runs = runs_of(store)
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    points = [r for r in runs if "sweep" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["grid_points"] == "2"
    assert len(points) == 2 and all(p.info.status == "FINISHED" for p in points)
    assert {p.data.tags[contract.TAG_PARENT_RUN_ID] for p in points} == {parent.info.run_id}
    assert "sweep.py -m profile=demo method=lora,ft" in parent.data.tags[contract.TAG_NOTE]
