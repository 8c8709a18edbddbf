"""One grid point of a sweep: skipped, planned, or trained then evaluated as one MLflow run.

A grid point whose configuration already has a FINISHED, evaluated run is skipped; a failed or
killed one is recorded as such (the run ends FAILED or KILLED with its error) and the sweep goes
on; re-running a sweep resumes unfinished points from their checkpoints. A point that cannot
start here (no GPUs, a model that does not load: `lorabench.launching.preflight`) fails once,
before any rank starts. `sweep.plan=true` runs nothing and prints each point's plan
(`lorabench.planning`). A base row evaluates an untuned base model (`<model> (base)`) once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow.exceptions import MlflowException

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.errors import LorabenchError
from lorabench.launching.preflight import preflight
from lorabench.launching.topology import (
    DistEnv,
    is_first_node,
    launch_ranks,
    needs_launcher,
    training_process,
)
from lorabench.locking import DirectoryBusy, directory_lock
from lorabench.modeling.kernels import same_kernels
from lorabench.modeling.trained import training_hash
from lorabench.planning import PointEstimate, estimate_point
from lorabench.planning.judging import JudgingEstimate, estimate_judging
from lorabench.tracking.runs import client_for

log = logging.getLogger(__name__)

FAILED = "failed"
"""The outcome of a grid point that could not run (or, planned, could not be planned)."""


@dataclass(frozen=True)
class PointPlan:
    """What a sweep would do for one grid point."""

    run_name: str
    action: str
    """`skip` (finished and evaluated), `resume` (has a checkpoint) or `train`."""
    learning_rate: float
    epochs: float
    estimate: PointEstimate


@dataclass(frozen=True)
class PointOutcome:
    """What became of one grid point: run (`skipped` (done before), `finished` (trained and
    evaluated), `evaluated` (a base row), `trained` (not evaluated: `sweep.evaluate=false`),
    `failed`) or planned (`skip`, `resume`, `train`, or `failed`: it could not be planned).
    Its console line is `lorabench.console.outcome_line`."""

    run_name: str
    status: str
    gpu_hours: float | None = None
    """Planned: the point's GPU hours (None without a GPU type)."""
    fits: bool | None = None
    """Planned: whether it fits the GPU's memory (None without a GPU type)."""
    seconds: float = 0.0
    """Run: how long the row took."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Run: the row's run's metrics (training loss, scores); empty when it has none."""
    judging: JudgingEstimate | str | None = None
    """Planned: what judging its answers would cost, or why that is unknown; None when it
    would not be evaluated."""

    @property
    def failed(self) -> bool:
        """Whether the point could not run (or be planned)."""
        return self.status == FAILED


def under_parent(cfg: Config, parent_run_id: str) -> Config:
    """`cfg` with its run nested under the sweep's parent run `parent_run_id`."""
    # A replace, not a merge into the config and its validation again: the same checks run
    # (`Config.__post_init__`), in microseconds rather than the tenths of a second a
    # validation of the whole config takes at every grid point.
    return replace(cfg, tracking=replace(cfg.tracking, parent_run_id=parent_run_id))


def finished_run(cfg: Config) -> str | None:
    """A FINISHED run of this exact training config (for a chained run: on its base run's
    current weights; evaluated with this eval config, on the run's own weights, when the sweep
    evaluates; with its anatomy of these settings, when the sweep measures it), or None."""
    client = client_for(cfg.tracking)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    if experiment is None:
        return None
    try:
        key = training_hash(cfg)
    except LorabenchError:
        return None  # its base run is not trained (yet): neither is this run
    query = f"tags.{contract.TAG_CONFIG_HASH} = '{key}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=1)
    if not runs:
        return None
    run_id = runs[0].info.run_id
    tags = runs[0].data.tags
    if cfg.sweep.evaluate and not _evaluated(cfg, run_id, tags):
        return None
    if cfg.sweep.anatomy and not _measured(cfg, tags):
        return None
    return run_id


def _measured(cfg: Config, tags: dict[str, str]) -> bool:
    """Whether the run holds the anatomy of these settings on its current weights."""
    from lorabench.anatomy.stage import anatomy_key

    weights = tags.get(contract.TAG_WEIGHTS_DIGEST)
    return weights is not None and tags.get(contract.TAG_ANATOMY_HASH) == anatomy_key(cfg, weights)


def _evaluated(cfg: Config, run_id: str, tags: dict[str, str]) -> bool:
    """Whether the run holds this evaluation (and benchmarks) of its current weights."""
    from lorabench.benchmarks import benchmarked
    from lorabench.evaluation.targets import evaluation_hash, resolve_target

    if contract.TAG_EVAL_HASH not in tags:
        return False
    try:
        target = resolve_target(replace(cfg, run=run_id))
    except LorabenchError:
        return False  # its model is gone: evaluating it again says why
    same = tags[contract.TAG_EVAL_HASH] == evaluation_hash(cfg, target)
    return same and benchmarked(cfg, target, tags)


def plan(cfg: Config) -> PointPlan:
    """What `run_point` would do with this grid point, and its memory and hours, without doing
    it (raises PlanError when the point cannot be planned)."""
    if not cfg.sweep.force and finished_run(cfg) is not None:
        action = "skip"
    elif any(Path(cfg.training.output_dir).glob("checkpoint-*")):
        action = "resume"
    else:
        action = "train"
    estimate = estimate_point(cfg)
    return PointPlan(cfg.run_name, action, cfg.method.learning_rate, cfg.method.epochs, estimate)


def print_plan(cfg: Config) -> PointOutcome:
    """Print one grid point's plan line (or why it cannot be planned) and return its outcome."""
    try:
        p = plan(cfg)
    except LorabenchError as err:
        print(f"{cfg.run_name}: error: {err}")
        return PointOutcome(cfg.run_name, FAILED)
    estimate = p.estimate
    # A point with a finished run: the MFU it measured beside the plan's assumption, when it
    # ran the kernels planned (they are no part of its identity). `plan` found no finished run
    # for a point it trains, unless sweep.force trains it again.
    if estimate.time is not None and (p.action == "skip" or cfg.sweep.force):
        if (run_id := finished_run(cfg)) is not None:
            data = client_for(cfg.tracking).get_run(run_id).data
            if same_kernels(cfg, data.params):
                estimate = replace(estimate, measured_mfu=data.metrics.get(contract.TRAIN_MFU))
    head = f"{p.run_name}: {p.action} lr={p.learning_rate:g} epochs={p.epochs:g}"
    judging = planned_judging(cfg) if cfg.sweep.evaluate and p.action != "skip" else None
    print(f"{head} | {estimate.describe()}{judging_part(judging)}")
    time = estimate.time
    return PointOutcome(
        p.run_name,
        p.action,
        gpu_hours=None if time is None else time.gpu_hours,
        fits=estimate.memory.fits,
        judging=judging,
    )


def planned_judging(cfg: Config) -> JudgingEstimate | str:
    """What judging the point's answers would cost, or why that cannot be said yet."""
    try:
        return estimate_judging(cfg)
    except LorabenchError as err:
        return str(err)


def judging_part(judging: JudgingEstimate | str | None) -> str:
    """A plan line's judge part: ` | judge: 1,000 calls, 0.91M tokens, $0.52`."""
    if judging is None:
        return ""
    if isinstance(judging, str):
        return " | judge: cost unknown (see below)"
    return f" | {judging.describe()}"


def plan_base_row(cfg: Config) -> PointOutcome:
    """Print a base row's plan line (an evaluation of the untuned base, nothing to train)."""
    judging = planned_judging(cfg) if cfg.sweep.evaluate else None
    name = f"{cfg.model.name} (base)"
    print(f"{name}: evaluate the untuned base (no training){judging_part(judging)}")
    return PointOutcome(name, "evaluate", judging=judging)


def _outcome(cfg: Config, name: str, status: str, run_id: str | None, start: float) -> PointOutcome:
    metrics: Mapping[str, float] = {}
    if run_id is not None:
        metrics = client_for(cfg.tracking).get_run(run_id).data.metrics
    return PointOutcome(name, status, seconds=time.perf_counter() - start, metrics=dict(metrics))


def run_point(cfg: Config, overrides: Sequence[str], train_script: str) -> PointOutcome:
    """Train and evaluate one grid point; its outcome is `skipped`, `finished` (`trained`
    without evaluation, and on the other nodes of a multi-node job, whose node 0 evaluates),
    `busy` or `failed`.

    A failure is recorded in MLflow and logged, not raised, so the sweep goes on; a point that
    cannot start here fails its preflight before any rank starts. Ctrl-C (or SIGTERM) stops the
    sweep, leaving the point KILLED and resumable. A point another live process works on (its
    output directory's lock) is left to it: `busy`.
    """
    start = time.perf_counter()
    if not cfg.sweep.force and (done := finished_run(cfg)) is not None:
        log.info("%s: finished and evaluated in run %s; skipping", cfg.run_name, done)
        return _outcome(cfg, cfg.run_name, "skipped", done, start)
    try:
        preflight(cfg)
        run_id = _train_and_evaluate(cfg, overrides, train_script)
    except DirectoryBusy as err:
        log.warning("%s: %s; skipping", cfg.run_name, err)
        return _outcome(cfg, cfg.run_name, "busy", None, start)
    except Exception as err:  # noqa: BLE001 - recorded in MLflow by train/evaluate; sweep goes on
        log.error("%s failed: %s", cfg.run_name, err, exc_info=not isinstance(err, LorabenchError))
        return _outcome(cfg, cfg.run_name, FAILED, None, start)
    evaluated = cfg.sweep.evaluate and is_first_node(cfg.hardware)
    return _outcome(cfg, cfg.run_name, "finished" if evaluated else "trained", run_id, start)


def _train_and_evaluate(cfg: Config, overrides: Sequence[str], train_script: str) -> str:
    """Train (held: the output directory's lock, by this process or the launched rank 0), then
    evaluate and measure the anatomy (held by this process); returns the point's run id."""
    from lorabench.evaluation import evaluate
    from lorabench.training import train

    output_dir = Path(cfg.training.output_dir)
    with contextlib.ExitStack() as held:
        if needs_launcher(cfg, DistEnv.from_environ()):
            # Every rank gets the same overrides (parent run, output directory); rank 0 opens
            # the point's run, records its id in the output directory and holds its lock.
            parent = f"tracking.parent_run_id={cfg.tracking.parent_run_id}"
            if code := launch_ranks(cfg, train_script, [*overrides, parent]):
                raise LorabenchError(f"training exited with code {code}")
            run_id = (output_dir / contract.RUN_ID_FILE).read_text().strip()
            if not is_first_node(cfg.hardware):
                return run_id  # node 0 of a multi-node job evaluates the point
        else:
            held.enter_context(directory_lock(output_dir))
            with training_process(cfg):
                run_id = train(cfg).run_id
        held.enter_context(directory_lock(output_dir))  # a no-op when held already
        if cfg.sweep.evaluate:
            evaluate(replace(cfg, run=run_id))
        if cfg.sweep.anatomy:
            from lorabench.anatomy.stage import measure_run

            measure_run(cfg, run_id, progress=False)
    return run_id


def evaluated_base(cfg: Config, target: Any) -> str | None:
    """The run of the base row `target` when it holds this evaluation (same eval hash) and
    benchmarks (same bench hash)."""
    from lorabench.benchmarks import benchmarked
    from lorabench.evaluation.targets import evaluation_hash

    id_file = target.eval_dir / contract.RUN_ID_FILE
    if not id_file.is_file():
        return None
    run_id = id_file.read_text().strip()
    try:
        run = client_for(cfg.tracking).get_run(run_id)
    except MlflowException:
        return None  # recorded in another store
    tags = run.data.tags
    same = tags.get(contract.TAG_EVAL_HASH) == evaluation_hash(cfg, target)
    done = same and benchmarked(cfg, target, tags)
    return run_id if run.info.status == "FINISHED" and done else None


def run_base_row(cfg: Config) -> PointOutcome:
    """Evaluate the untuned base model of `cfg` as a base row (`<model> (base)`), unless it
    already holds this evaluation; a failure is logged and the sweep goes on."""
    from lorabench.evaluation import evaluate
    from lorabench.evaluation.targets import resolve_target

    start = time.perf_counter()
    cfg = replace(cfg, run=None, model_path=None)
    name = cfg.model.name
    try:
        target = resolve_target(cfg)  # a demo base is pretrained here when it is missing
        name = target.name
        with FileLock(target.eval_dir.parent / ".base-row.lock"):  # one evaluation at a time
            if not cfg.sweep.force and (done := evaluated_base(cfg, target)) is not None:
                return _outcome(cfg, name, "skipped", done, start)
            result = evaluate(cfg)
    except Exception as err:  # noqa: BLE001 - as run_point: the sweep goes on
        log.error("%s failed: %s", name, err, exc_info=not isinstance(err, LorabenchError))
        return _outcome(cfg, name, FAILED, None, start)
    return _outcome(cfg, name, "evaluated", result.run_id, start)
