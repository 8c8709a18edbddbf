"""Trainer callbacks: the contract's step metrics and the session's timing, and the console's
one progress bar a stage."""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException
from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from lorabench import contract
from lorabench.errors import LorabenchError
from lorabench.tracking.runs import Run

if TYPE_CHECKING:  # the planning package is heavier than this module needs at run time
    from lorabench.planning.timing import Utilisation

log = logging.getLogger(__name__)


class TrackingLost(LorabenchError):
    """The store did not take buffered step metrics, after the client's retries."""


THROUGHPUT_METRICS = (
    contract.TRAIN_TOKENS_PER_SECOND,
    contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE,
    contract.TRAIN_MFU,
)
"""The throughput metrics logged per logged step (and as the session's summary)."""


def throughput_metrics(
    tokens: float,
    seconds: float,
    optimisation_seconds: float,
    world_size: int,
    utilisation: Utilisation | None,
) -> dict[str, float]:
    """Tokens per second (all processes, and per process) over `seconds` of wall clock, and the
    MFU over the `optimisation_seconds` among them (checkpoint writing left out, as from hours
    per epoch); no MFU without `utilisation` (CPU hardware, no GPU type): never a 0."""
    rate = tokens / seconds
    metrics = {
        contract.TRAIN_TOKENS_PER_SECOND: rate,
        contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE: rate / world_size,
    }
    if utilisation is not None and optimisation_seconds > 0:
        metrics[contract.TRAIN_MFU] = utilisation.mfu(tokens / optimisation_seconds)
    return metrics


def recorded_gpu_hours(path: Path) -> float:
    """The running GPU-hour total a session wrote to `path` (0 when there is none)."""
    if not path.is_file():
        return 0.0
    try:
        return float(json.loads(path.read_text())["gpu_hours"])
    except (ValueError, KeyError, TypeError):
        return 0.0  # cut short while written (it is replaced atomically, so only by hand)


class ContractMetricsCallback(TrainerCallback):
    """Logs per-step metrics under the contract's names and measures this session.

    Step metrics are buffered and written in batches: one synchronous MLflow write per step
    cost a third of a tiny model's step time. The buffer is flushed every `flush_every` logged
    steps, at each checkpoint, and when training ends or fails.

    A session killed after its last checkpoint may have flushed steps past it; the resumed
    session recomputes those steps from the checkpoint (same data order, same seed) and does not
    log them again (`already_logged`: each metric's last logged step), so every metric's
    history is one entry per step, without a gap. The killed session's values stand for those
    steps: discarding them would need MLflow to delete history entries, which it cannot.

    `train/gpu_hours` is a running total over every session of the run (`previous_gpu_hours`
    from earlier ones): written to `gpu_hours_file` at every logged step, so a session ended by
    SIGKILL still counts up to its last step, and logged with every flush.

    Checkpoint writing is timed on its own (from the step end that decides to save to the save
    event), so hours per epoch measure optimisation alone: FT checkpoints weigh gigabytes, LoRA
    ones megabytes, and counting them would skew the methods' cost comparison.

    Each logged step also gets the throughput of the steps since the previous log
    (`throughput_metrics`: tokens per second, per process, and with `utilisation` the MFU), from
    the Trainer's non-padding token count; the session's last step gets the session's instead,
    from the summary (one entry per step).
    """

    def __init__(
        self,
        run: Run | None,
        *,
        world_size: int = 1,
        previous_gpu_hours: float = 0.0,
        gpu_hours_file: Path | None = None,
        already_logged: Mapping[str, int] | None = None,
        flush_every: int = 50,
        final_window: int = 10,
        utilisation: Utilisation | None = None,
    ) -> None:
        self.run = run
        self.world_size = world_size
        self.utilisation = utilisation
        self.previous_gpu_hours = previous_gpu_hours
        self.gpu_hours_file = gpu_hours_file
        self.already_logged = dict(already_logged or {})
        self.flush_every = flush_every
        self.session: dict[str, float] = {}
        # The last logged losses: their mean is the session's final loss (one step's is noisy).
        self._losses: deque[float] = deque(maxlen=final_window)
        self.checkpoint_seconds = 0.0
        self.checkpoints = 0
        self._pending: list[tuple[str, float, int]] = []
        self._pending_steps = 0
        self._save_started: float | None = None
        self._start = time.perf_counter()
        self._step = 0
        # Where the current logging interval began: clock, tokens seen, checkpoint seconds.
        self._mark = (self._start, 0, 0.0)

    def gpu_hours(self) -> float:
        """GPU hours of the run so far: earlier sessions plus this one's wall clock × processes."""
        seconds = time.perf_counter() - self._start
        return self.previous_gpu_hours + self.world_size * seconds / 3600

    def flush(self, with_gpu_hours: bool = True) -> None:
        """Write the buffered step metrics (and the running GPU hours, at the current step).

        Entries of steps a metric already has are dropped (see the class docstring). A store
        that stays away past the client's retries ends training with `TrackingLost`; the
        buffer is kept, and the killed steps are resumed from the last checkpoint.
        """
        if self.run is None:
            return
        entries = list(self._pending)
        if with_gpu_hours:
            entries.append((contract.TRAIN_GPU_HOURS, self.gpu_hours(), self._step))
        new = [e for e in entries if e[2] > self.already_logged.get(e[0], -1)]
        if new:
            try:
                self.run.log_metric_steps(new)
            except MlflowException as err:
                steps = f"{new[0][2]}-{new[-1][2]}"
                raise TrackingLost(
                    f"the MLflow store {self.run.client.tracking_uri} did not take the step "
                    f"metrics of steps {steps} (after retrying): {err}"
                ) from err
            for key, _, step in new:
                self.already_logged[key] = max(step, self.already_logged.get(key, -1))
        self._pending, self._pending_steps = [], 0

    def _write_gpu_hours(self) -> None:
        if self.gpu_hours_file is None:
            return
        staged = self.gpu_hours_file.with_name(f".{self.gpu_hours_file.name}.tmp")
        staged.write_text(json.dumps({"gpu_hours": self.gpu_hours(), "step": self._step}))
        os.replace(staged, self.gpu_hours_file)  # atomic: a kill never leaves half a file

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen
        self._epoch0 = state.epoch or 0.0
        self._step = state.global_step
        self._mark = (self._start, state.num_input_tokens_seen, self.checkpoint_seconds)

    def on_step_end(self, args, state, control, **kwargs):
        self._step = state.global_step
        if control.should_save:  # set by the Trainer's flow callback, which runs first
            self._save_started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._losses.append(float(logs["loss"]))
        if self.run is None or not logs:
            return
        self._step = state.global_step
        self._write_gpu_hours()
        metrics = [
            (contract.STEP_METRICS[k], v, state.global_step)
            for k, v in logs.items()
            if k in contract.STEP_METRICS
        ]
        if metrics:
            metrics += self._interval_throughput(state)
            self._pending.extend(metrics)
            self._pending_steps += 1
            if self._pending_steps >= self.flush_every:
                self.flush()

    def _interval_throughput(self, state) -> list[tuple[str, float, int]]:
        """The throughput since the previous logged step, as step entries (none at the last
        step, whose entries are the session summary's, nor when the Trainer counts no tokens)."""
        now, checkpoint = time.perf_counter(), self.checkpoint_seconds
        start, tokens0, checkpoint0 = self._mark
        self._mark = (now, state.num_input_tokens_seen, checkpoint)
        tokens, seconds = state.num_input_tokens_seen - tokens0, now - start
        if state.global_step >= state.max_steps or tokens <= 0 or seconds <= 0:
            return []
        optimisation = seconds - (checkpoint - checkpoint0)
        found = throughput_metrics(tokens, seconds, optimisation, self.world_size, self.utilisation)
        return [(key, value, state.global_step) for key, value in found.items()]

    def on_save(self, args, state, control, **kwargs):
        if self._save_started is not None:
            self.checkpoint_seconds += time.perf_counter() - self._save_started
            self.checkpoints += 1
            self._save_started = None
        self._step = state.global_step
        # The last step's GPU hours are the session summary's (one entry per step).
        self.flush(with_gpu_hours=state.global_step < state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        self._step = state.global_step
        # Inside the timed span: its cost counts against throughput. GPU hours are logged with
        # the session's summary, at this step.
        self.flush(with_gpu_hours=False)
        self.session = {
            "seconds": time.perf_counter() - self._start,
            "checkpoint_seconds": self.checkpoint_seconds,
            "tokens": float(state.num_input_tokens_seen - self._tokens0),
            "epochs": (state.epoch or 0.0) - self._epoch0,
            "gpu_hours": self.gpu_hours(),
        }
        if self._losses:
            self.session["final_loss"] = statistics.fmean(self._losses)

        self._write_gpu_hours()


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
