"""The Trainer callback that writes the contract's step metrics and times the session."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from lorabench import contract
from lorabench.tracking import Run


class ContractMetricsCallback(TrainerCallback):
    """Logs per-step metrics under the contract's names and measures this session.

    Step metrics are buffered and written in batches: one synchronous MLflow write per step
    cost a third of a tiny model's step time. The buffer is flushed every `flush_every` logged
    steps, at each checkpoint (so a resumed run's history matches its checkpoint), and when
    training ends or fails.

    Checkpoint writing is timed on its own (from the step end that decides to save to the save
    event), so hours per epoch measure optimisation alone: FT checkpoints weigh gigabytes, LoRA
    ones megabytes, and counting them would skew the methods' cost comparison.
    """

    def __init__(self, run: Run | None, flush_every: int = 50) -> None:
        self.run = run
        self.flush_every = flush_every
        self.session: dict[str, float] = {}
        self.checkpoint_seconds = 0.0
        self.checkpoints = 0
        self._pending: list[tuple[str, float, int]] = []
        self._pending_steps = 0
        self._save_started: float | None = None

    def flush(self) -> None:
        """Write the buffered step metrics."""
        if self.run is not None and self._pending:
            self.run.log_metric_steps(self._pending)
        self._pending, self._pending_steps = [], 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen
        self._epoch0 = state.epoch or 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # set by the Trainer's flow callback, which runs first
            self._save_started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        metrics = [
            (contract.STEP_METRICS[k], v, state.global_step)
            for k, v in logs.items()
            if k in contract.STEP_METRICS
        ]
        if metrics:
            self._pending.extend(metrics)
            self._pending_steps += 1
            if self._pending_steps >= self.flush_every:
                self.flush()

    def on_save(self, args, state, control, **kwargs):
        if self._save_started is not None:
            self.checkpoint_seconds += time.perf_counter() - self._save_started
            self.checkpoints += 1
            self._save_started = None
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()  # inside the timed span: its cost counts against throughput
        self.session = {
            "seconds": time.perf_counter() - self._start,
            "checkpoint_seconds": self.checkpoint_seconds,
            "tokens": float(state.num_input_tokens_seen - self._tokens0),
            "epochs": (state.epoch or 0.0) - self._epoch0,
        }
