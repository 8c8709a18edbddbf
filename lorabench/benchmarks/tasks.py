"""Which lm-eval tasks a config names, where they are found, and loading them one by one.

Task names are checked against lm-eval's task index before any compute: the demo's tasks and
`eval.lm_eval.include`'s first (their index is read in milliseconds), lm-eval's own ~15,000 only
when a name is not among them (reading that index takes seconds). A task whose dataset cannot be
loaded (offline, and not in the datasets cache) is a failure of that task alone.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench.config.schema import Config
from lorabench.demo import panel
from lorabench.errors import ConfigError

log = logging.getLogger(__name__)

NEAREST = 5
"""How many similar task names an unknown name's error lists."""
OFFLINE_HINT = (
    "offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE set, or no network), lm-eval reads a Hub "
    "dataset from the datasets cache only: run the benchmark once where the Hub is reachable "
    "with HF_DATASETS_CACHE pointing at a directory you then copy here and point "
    "HF_DATASETS_CACHE at, or give a task over a local copy (eval.lm_eval.include); see README.md"
)


@dataclass(frozen=True)
class TaskFailure:
    """A named task that could not run: its dataset did not load."""

    task: str
    message: str


def include_paths(cfg: Config) -> list[Path]:
    """The task directories besides lm-eval's own: the demo panel's (its data generated on
    first use) when a demo task is named, and `eval.lm_eval.include`."""
    paths = [Path(p) for p in cfg.eval.lm_eval.include]
    if any(task in panel.TASKS for task in cfg.eval.benchmarks):
        p = cfg.eval.demo_panel
        root = Path(cfg.cache_dir) / "benchmarks"
        paths.insert(
            0, panel.write_panel(root, p.retention_rounds, p.retention_choices, p.math_items)
        )
    return paths


@functools.cache
def _manager(paths: tuple[str, ...], defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths) or None, include_defaults=defaults)


def task_manager(cfg: Config) -> Any:
    """An lm-eval TaskManager that knows every task `cfg` names (read once per process)."""
    paths = tuple(str(p) for p in include_paths(cfg))
    local = _manager(paths, False) if paths else None
    if local is not None and all(t in local.all_tasks for t in cfg.eval.benchmarks):
        return local
    return _manager(paths, True)


def check_benchmarks(cfg: Config) -> None:
    """Before any compute: every `eval.benchmarks` name is an lm-eval task, group or tag (else
    a ConfigError listing the nearest names), and has a role."""
    e = cfg.eval
    if not e.benchmarks:
        return
    known = task_manager(cfg).all_tasks
    for task in e.benchmarks:
        if task not in known:
            # The demo's tasks are named too (their directory is written only when used).
            names = [*known, *panel.TASKS]
            nearest = difflib.get_close_matches(task, names, n=NEAREST, cutoff=0.5)
            hint = f"nearest: {', '.join(nearest)}" if nearest else "no similar name"
            raise ConfigError(
                f"eval.benchmarks: {task!r} is not an lm-eval task, group or tag ({hint}); "
                "`lm-eval ls tasks` lists them, eval.lm_eval.include adds directories of yours"
            )
        if task not in e.benchmark_roles:
            raise ConfigError(
                f"eval.benchmark_roles.{task}=None: give the role of benchmark {task}: "
                "retention or target"
            )


def load_tasks(manager: Any, names: list[str]) -> tuple[list[tuple[str, Any]], list[TaskFailure]]:
    """The named tasks and groups, loaded (their datasets read) one by one, as (the name given,
    a Task or Group: a tag gives each of its tasks); those whose dataset fails to load are
    returned as failures, naming it, and the others still load."""
    loaded: list[tuple[str, Any]] = []
    failures = []
    for name in names:
        try:
            found = manager.load([name])
        except OSError as err:  # datasets: not found, offline, unreachable (ConnectionError)
            failures.append(TaskFailure(name, _dataset_failure(manager, name, err)))
            continue
        groups = found.get("groups", {})
        found = [groups[name]] if name in groups else list(found["tasks"].values())
        loaded += [(name, task) for task in found]
    return loaded, failures


def _dataset_failure(manager: Any, name: str, err: Exception) -> str:
    entry = manager.task_index.get(name)
    dataset = (entry.cfg or {}).get("dataset_path") if entry is not None else None
    what = f"dataset {dataset}" if dataset else "its dataset"
    offline = any(os.environ.get(v, "") not in ("", "0") for v in OFFLINE_VARS)
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hint = f"; {OFFLINE_HINT}" if offline or isinstance(err, ConnectionError) else ""
    return f"{name}: {what} could not be loaded ({first_line}){hint}"


OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
