"""What the console shows while training and evaluating: one progress bar a stage and one
summary line a grid point. The libraries' own output (their progress bars, per-step log dicts,
info messages and deprecation warnings) goes to the job's log file instead, where Hydra writes
it (`conf/hydra/job_logging/quiet.yaml`), and the metrics to MLflow."""

from __future__ import annotations

import logging
import os

import datasets
import mlflow  # noqa: F401 - it configures its loggers on import, which must come first
import torch
import transformers


def quiet_libraries() -> None:
    """Hide transformers' and datasets' own progress bars (shard writing, dataset maps), and
    send transformers' messages and Python warnings through logging, whose configuration then
    decides where they go (the console shows warnings of our own code and errors)."""
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    datasets.disable_progress_bars()
    logging.captureWarnings(True)
    # MLflow logs its store's set-up at INFO through a handler of its own, and draws a bar for
    # every artifact it downloads (a run's resolved config, read at each evaluation).
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not torch.cuda.is_available():
        # DeepSpeed (imported by the Trainer) picks its CPU accelerator on such a machine anyway,
        # with a warning on every start; naming it is the same choice, silently.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
