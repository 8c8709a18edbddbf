"""What the console shows while training and evaluating: one progress bar a stage and one
summary line a grid point. The libraries' own output (their progress bars, per-step log dicts,
info messages and deprecation warnings) goes to the job's log file instead, where Hydra writes
it (`conf/hydra/job_logging/quiet.yaml`), and the metrics to MLflow.

Each row of a sweep ends with its summary line (`outcome_line`): its name, what happened, its
final training loss, its score with the 95% interval, and its time; the sweep ends with its
counts by outcome, a plan's total GPU hours and judge cost, and the points that failed
(`sweep_summary`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import datasets
import mlflow  # noqa: F401 - it configures its loggers on import, which must come first
import torch
import transformers

from lorabench import contract

if TYPE_CHECKING:
    from lorabench.sweeping.points import PointOutcome


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


def format_seconds(seconds: float) -> str:
    """`42s`, `3m05s`."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def outcome_line(outcome: PointOutcome) -> str:
    """`tiny+lora(2m): finished  loss 1.234  score 0.345 (95% CI 0.301-0.389)  1m05s`."""
    metrics = outcome.metrics
    parts = [f"{outcome.run_name}: {outcome.status}"]
    if (loss := metrics.get(contract.TRAIN_FINAL_LOSS)) is not None:
        parts.append(f"loss {loss:.3f}")
    if (score := metrics.get(contract.EVAL_AVERAGE_SCORE)) is not None:
        low = metrics.get(contract.EVAL_AVERAGE_SCORE_CI_LOW)
        high = metrics.get(contract.EVAL_AVERAGE_SCORE_CI_HIGH)
        ci = f" (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
        parts.append(f"score {score:.3f}{ci}")
    if outcome.failed:
        parts.append("(the error is in the log file and the run's error tag)")
    parts.append(format_seconds(outcome.seconds))
    return "  ".join(parts)


def sweep_summary(outcomes: Sequence[PointOutcome], plan: bool) -> str:
    """The sweep's last lines: counts by outcome, the plan's total GPU hours, and the failed
    points (each printed its error when it failed)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    shown = ", ".join(f"{n} {status}" for status, n in counts.items())
    points = "grid point" if len(outcomes) == 1 else "grid points"
    lines = [f"{len(outcomes)} {points}: {shown or 'none'}"]
    if plan:
        planned = [o for o in outcomes if not o.failed]
        trained = [o for o in planned if o.status not in ("skip", "evaluate")]
        hours = [o.gpu_hours for o in trained if o.gpu_hours is not None]
        unfit = [o.run_name for o in planned if o.fits is False]
        total = f"total: {sum(hours):.4g} GPU hours to train or resume"
        if len(hours) < len(trained):
            total += " (points without a GPU type not counted)"
        lines.append(total)
        lines += judging_total(planned)
        if unfit:
            lines.append(f"do not fit as configured: {', '.join(unfit)}")
    failed = [o.run_name for o in outcomes if o.failed]
    if failed:
        lines.append(f"{'could not be planned' if plan else 'failed'}: {', '.join(failed)}")
    return "\n".join(lines)


def judging_total(outcomes: Sequence[PointOutcome]) -> list[str]:
    """A plan's judge-cost lines: the calls, tokens and cost of judging every point it would
    evaluate, and why a part is unknown."""
    estimates = [o.judging for o in outcomes if o.judging is not None]
    if not estimates:
        return []
    unknown = sorted({e for e in estimates if isinstance(e, str)})
    known = [e for e in estimates if not isinstance(e, str)]
    tokens = sum(e.prompt_tokens + e.completion_tokens for e in known) / 1e6
    head = f"judge: {sum(e.calls for e in known):,} calls, {tokens:.2f}M tokens"
    unpriced = sorted({e.cost.note for e in known if e.cost.usd is None})
    if unknown or unpriced:
        lines = [f"{head} for {len(known)} of {len(estimates)} evaluations; cost unknown:"]
        return lines + [f"  {reason}" for reason in [*unknown, *unpriced]]
    usd = sum(e.cost.usd or 0.0 for e in known)
    notes = "; ".join(sorted({e.cost.note for e in known}))
    line = f"{head}, ${usd:,.2f} ({notes})"
    in_batch = [e.batch_usd for e in known if e.batch_usd is not None]
    if len(in_batch) == len(known) and sum(in_batch) != usd:  # not judged in batches already
        line += f"; through the Batch API (judge.batch=true): ${sum(in_batch):,.2f}"
    return [line, "  (answers assumed as long as the eval set's gold answers)"]
