"""Running the repository's entry points and `python -m` modules as a user would, and reading
what they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.checkout import REPO_ROOT


def run_cli(
    script: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run one of the repository's entry points (`train.py`, `bench/...`) as a user would."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def module_cli(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` in `cwd` with the checkout's package importable (offline)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m lorabench.analysis ARGS` (the study's report) in `cwd`, on the store its
    arguments name (an inherited MLFLOW_TRACKING_URI is dropped)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "lorabench.analysis", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def parse_counts(stdout: str) -> dict[str, int]:
    """The `*_params=N` lines a dry run prints, as {name: N}."""
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {k: int(v) for k, v in pairs if k.endswith("_params")}
