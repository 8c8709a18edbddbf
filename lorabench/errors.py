"""Errors caused by the user's input, and the one place entry points turn them into a message."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class LorabenchError(Exception):
    """Base of the errors whose message tells the user what to fix."""


class ConfigError(LorabenchError, ValueError):
    """A configuration value is invalid; the message names the key."""


class ModelLoadError(LorabenchError, RuntimeError):
    """Weights or tokenizer could not be loaded; the message says how to point at local files."""


class DataError(LorabenchError, ValueError):
    """Training data is missing, malformed or too small; the message names the source."""


class GenerationError(LorabenchError, RuntimeError):
    """Answers could not be generated (an inference server unreachable, not serving the model,
    or failing items); the message names the server and model, and what was kept."""


def exits_on_user_error(task: Callable[P, R]) -> Callable[P, R]:
    """Wrap an entry point's task (what its Hydra app calls; the lightning-hydra-template's
    `task_wrapper`): a LorabenchError ends the process with `error: <message>` on stderr and
    exit code 1, without a traceback, since its message already says what to fix. Any other
    exception keeps its traceback: it is a bug, not the user's input."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except LorabenchError as err:
            sys.exit(f"error: {err}")

    return run
