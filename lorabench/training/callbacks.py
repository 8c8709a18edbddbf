"""Trainer callbacks: the contract's step metrics and the session's timing, and the console's
one progress bar a stage."""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from lorabench import contract
from lorabench.tracking import Run

log = logging.getLogger(__name__)


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

    def __init__(self, run: Run | None, flush_every: int = 50, final_window: int = 10) -> None:
        self.run = run
        self.flush_every = flush_every
        self.session: dict[str, float] = {}
        # The last logged losses: their mean is the session's final loss (one step's is noisy).
        self._losses: deque[float] = deque(maxlen=final_window)
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
        if logs and "loss" in logs:
            self._losses.append(float(logs["loss"]))
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
        if self._losses:
            self.session["final_loss"] = statistics.fmean(self._losses)


class StageProgress(TrainerCallback):
    """The Trainer's console output as one progress bar named after its stage (`tiny+lora(2m)
    training`), instead of the Trainer's bar plus one printed dict per logged step.

    The dicts (loss, learning rate, the final runtime summary) go to the log file at INFO
    level; the step metrics are in MLflow already (`ContractMetricsCallback`). Replace the
    Trainer's own progress and printer callbacks with it through `use_stage_progress`.
    """

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc = desc
        self.enabled = enabled
        self.bar: tqdm | None = None
        self._step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=state.max_steps, desc=self.desc, unit="step", disable=not self.enabled
            )
            self._step = state.global_step
            self.bar.update(self._step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self._step)
            self._step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            log.info("%s step %d: %s", self.desc, state.global_step, logs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_stage_progress(trainer: Trainer, desc: str, enabled: bool = True) -> StageProgress:
    """Give `trainer` a `StageProgress` in place of its default console callbacks."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    progress = StageProgress(desc, enabled)
    trainer.add_callback(progress)
    return progress
