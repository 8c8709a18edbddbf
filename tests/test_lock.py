"""The lock every install uses says what pyproject.toml asks for and was made from it as it is; a
lock that does not is refused with the package, the lock's line (or the edit it predates) and the
command that refreshes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_lock.py"


def check(pyproject: Path, lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(pyproject), str(lock)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_committed_lock_matches_pyproject() -> None:
    result = check(ROOT / "pyproject.toml", ROOT / "requirements.lock")
    assert result.returncode == 0, result.stderr


def test_a_lock_missing_a_dependency_or_pinning_outside_its_range_is_refused(
    tmp_path: Path,
) -> None:
    lines = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith("scipy==")]
    mlflow = next(i for i, line in enumerate(kept) if line.startswith("mlflow=="))
    kept[mlflow] = "mlflow==2.22.0"  # pyproject asks for mlflow>=3.0,<4
    lock = tmp_path / "requirements.lock"
    lock.write_text("\n".join(kept) + "\n", encoding="utf-8")

    result = check(ROOT / "pyproject.toml", lock)

    assert result.returncode == 1
    assert "scipy>=1.11: not in requirements.lock" in result.stderr
    assert f"requirements.lock line {mlflow + 1} pins mlflow==2.22.0" in result.stderr
    assert "make lock" in result.stderr


def test_a_pyproject_edited_after_the_lock_was_made_is_refused(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8") + "# edited\n")

    result = check(pyproject, ROOT / "requirements.lock")

    assert result.returncode == 1
    assert "pyproject.toml changed since requirements.lock was made" in result.stderr
    assert "make lock" in result.stderr
    unstamped = tmp_path / "requirements.lock"
    lines = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    unstamped.write_text("\n".join(x for x in lines if not x.startswith("# made from")) + "\n")
    subprocess.run(
        [sys.executable, str(CHECK), "--stamp", str(pyproject), str(unstamped)], check=True
    )
    assert check(pyproject, unstamped).returncode == 0  # `make lock`'s stamp: the lock is current


def test_torch_is_locked_at_the_version_pyproject_pins() -> None:
    # The lock drops the local `+cpu` label, so one lock serves the CPU wheel and a CUDA build.
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (pin,) = [line for line in lock if line.startswith("torch==")]
    assert f'"{pin}"' in pyproject


def test_a_missing_lock_names_the_command_that_creates_it(tmp_path: Path) -> None:
    result = check(ROOT / "pyproject.toml", tmp_path / "requirements.lock")
    assert result.returncode == 1
    assert "no such lock" in result.stderr and "make lock" in result.stderr
