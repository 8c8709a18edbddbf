"""What a test session may not change: the user's own results in the checkout."""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the tests run from (its entry points, README, bench/ and scripts/)."""

USER_FOLDERS = ("mlruns", "outputs", "multirun", "reports")
"""The checkout's folders of runs and reports: `make demo`'s and the user's, never the tests'."""


def folder_state(root: Path, folders: tuple[str, ...] = USER_FOLDERS) -> dict[str, str]:
    """Every file under `root`'s `folders`, by path relative to `root`, with a digest of its
    bytes (a folder that does not exist holds nothing)."""
    state = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                with path.open("rb") as f:
                    state[path.relative_to(root).as_posix()] = hashlib.file_digest(
                        f, "sha256"
                    ).hexdigest()
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """`added PATH`, `removed PATH`, `changed PATH` lines, sorted by path."""
    lines = [f"added {p}" for p in after.keys() - before.keys()]
    lines += [f"removed {p}" for p in before.keys() - after.keys()]
    lines += [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(lines, key=lambda line: line.split(" ", 1)[1])
