"""Check that requirements.lock still says what pyproject.toml asks for.

    python scripts/check_lock.py [pyproject.toml] [requirements.lock]

Every dependency of the project (its extras included) must be pinned in the lock at a version
its specifier allows; otherwise `make install` would install something the lock never
recorded, and a clone made on another day would train with other libraries. Exits 1 naming
each requirement that does not match, with the command that refreshes the lock.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REFRESH = "make lock"
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


def mismatches(pyproject: Path, lock: Path) -> list[str]:
    """One line per requirement of `pyproject` that `lock` does not satisfy."""
    pins = locked_versions(lock)
    problems = []
    for req in declared(pyproject):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req}: not in {lock.name}")
        elif not req.specifier.contains(pin[1], prereleases=True):
            problems.append(f"{req}: {lock.name} line {pin[0]} pins {req.name}=={pin[1]}")
    return problems


def main(argv: list[str]) -> int:
    pyproject = Path(argv[0] if argv else "pyproject.toml")
    lock = Path(argv[1] if len(argv) > 1 else "requirements.lock")
    if not lock.is_file():
        print(f"{lock}: no such lock; create it with `{REFRESH}`", file=sys.stderr)
        return 1
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
