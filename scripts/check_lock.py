"""Check that requirements.lock still says what pyproject.toml asks for.

    python scripts/check_lock.py [pyproject.toml] [requirements.lock]
    python scripts/check_lock.py --stamp [pyproject.toml] [requirements.lock]

Every dependency of the project (its extras included) must be pinned in the lock at a version
its specifier allows; otherwise `make install` would install something the lock never
recorded, and a clone made on another day would train with other libraries. The lock's last
line records the digest of the pyproject.toml it was made from (`--stamp`, which `make lock`
runs): a pyproject.toml edited since is refused until the lock is made again, whatever the edit
(pip-compile reads the whole file). Exits 1 naming each problem, with the command that
refreshes the lock.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REFRESH = "make lock"
STAMP = "# made from pyproject.toml with sha256 "
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def locked_versions(lock: Path) -> dict[str, tuple[int, Version]]:
    """`name → (line number, version)` for every `name==version` line of the lock."""
    pins: dict[str, tuple[int, Version]] = {}
    for number, line in enumerate(lock.read_text(encoding="utf-8").splitlines(), start=1):
        match = _PIN.match(line.strip())
        if match:
            pins[canonicalize_name(match["name"])] = (number, Version(match["version"]))
    return pins


def declared(pyproject: Path) -> list[Requirement]:
    """The project's dependencies and those of every extra, except the project itself."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    own = canonicalize_name(project["name"])
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != own]


def digest(pyproject: Path) -> str:
    """The sha256 of pyproject.toml's bytes, as the lock's stamp records it."""
    return hashlib.sha256(pyproject.read_bytes()).hexdigest()


def stamp(pyproject: Path, lock: Path) -> None:
    """Record in `lock` (its last line; an earlier stamp is dropped) the pyproject it came from."""
    lines = [x for x in lock.read_text(encoding="utf-8").splitlines() if not x.startswith(STAMP)]
    lock.write_text("\n".join([*lines, STAMP + digest(pyproject)]) + "\n", encoding="utf-8")


def staleness(pyproject: Path, lock: Path) -> str | None:
    """Why `lock` was not made from this `pyproject`, or None when it was."""
    stamps = [x for x in lock.read_text(encoding="utf-8").splitlines() if x.startswith(STAMP)]
    if not stamps:
        return f"{lock.name} does not record the {pyproject.name} it was made from"
    if stamps[-1] != STAMP + digest(pyproject):
        return f"{pyproject.name} changed since {lock.name} was made"
    return None


def mismatches(pyproject: Path, lock: Path) -> list[str]:
    """One line per requirement of `pyproject` that `lock` does not satisfy, after the reason
    the lock is stale (if it is)."""
    pins = locked_versions(lock)
    problems = [p for p in [staleness(pyproject, lock)] if p]
    for req in declared(pyproject):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req}: not in {lock.name}")
        elif not req.specifier.contains(pin[1], prereleases=True):
            problems.append(f"{req}: {lock.name} line {pin[0]} pins {req.name}=={pin[1]}")
    return problems


def main(argv: list[str]) -> int:
    stamping = argv[:1] == ["--stamp"]
    paths = argv[1:] if stamping else argv
    pyproject = Path(paths[0] if paths else "pyproject.toml")
    lock = Path(paths[1] if len(paths) > 1 else "requirements.lock")
    if not lock.is_file():
        print(f"{lock}: no such lock; create it with `{REFRESH}`", file=sys.stderr)
        return 1
    if stamping:
        stamp(pyproject, lock)
        return 0
    problems = mismatches(pyproject, lock)
    if problems:
        print(f"{lock} does not match {pyproject}:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        print(f"Refresh the lock with `{REFRESH}` and commit it.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
