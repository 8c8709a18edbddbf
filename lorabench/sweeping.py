"""Sweeps: each grid point trains then evaluates as one MLflow run, nested under a parent run.

A grid point whose configuration already has a FINISHED, evaluated run is skipped; a failed or
killed one is recorded as such (the run ends FAILED or KILLED with its error) and the sweep goes
on; re-running a sweep resumes unfinished points from their checkpoints. A point that cannot
start here (no GPUs, a model that does not load: `lorabench.launching.preflight`) fails once,
before any rank starts. A sweep with failed points finishes the others, lists the failures and exits
non-zero. An experiment config can list explicit rows (`sweep.rows`, e.g.
`experiment=paper_table4`); they run in dependency order, a chained row after the row that
trains its base run, after the untuned base models it names (`sweep.base_models`), each
evaluated as a base row (`<model> (base)`) once. `sweep.plan=true` runs nothing and prints each
point's plan (`lorabench.planning`) and a total.

Each row ends with one summary line on the console (`PointOutcome.line`): its name, what
happened, its final training loss, its score with the 95% interval, and its time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra import compose as hydra_compose
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from lorabench import contract
from lorabench.config import validate
from lorabench.config.schema import Config, StatsConfig, TrackingConfig
from lorabench.errors import ConfigError, LorabenchError
from lorabench.launching.preflight import preflight
from lorabench.launching.topology import (
    DistEnv,
    launch_command,
    needs_launcher,
    set_cpu_threads,
    training_process,
)
from lorabench.locking import DirectoryBusy, directory_lock, owner_alive
from lorabench.modeling.trained import training_hash
from lorabench.planning import PointEstimate, estimate_point
from lorabench.tracking.runs import client_for, experiment_id

log = logging.getLogger(__name__)

PARENT_RUN_FILE = "mlflow_parent_run_id"
"""In the Hydra sweep directory: the parent run that the sweep's grid points nest under."""
OUTCOMES_DIR = "point_outcomes"
"""In the Hydra sweep directory: one JSON record per job of what became of its grid point, read
by the process that launched the jobs (they may have run in other processes or on other nodes)."""

FAILED = "failed"
"""The outcome of a grid point that could not run (or, planned, could not be planned)."""
PARENT_CANDIDATES = 1000
"""Unfinished sweep parents looked at for one of the same command to continue (newest first;
MLflow's largest page)."""


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
    `failed`) or planned (`skip`, `resume`, `train`, or `failed`: it could not be planned)."""

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

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def line(self) -> str:
        """`tiny+lora(2m): finished  loss 1.234  score 0.345 (95% CI 0.301-0.389)  1m05s`."""
        parts = [f"{self.run_name}: {self.status}"]
        if (loss := self.metrics.get(contract.TRAIN_FINAL_LOSS)) is not None:
            parts.append(f"loss {loss:.3f}")
        if (score := self.metrics.get(contract.EVAL_AVERAGE_SCORE)) is not None:
            low = self.metrics.get(contract.EVAL_AVERAGE_SCORE_CI_LOW)
            high = self.metrics.get(contract.EVAL_AVERAGE_SCORE_CI_HIGH)
            ci = f" (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
            parts.append(f"score {score:.3f}{ci}")
        if self.failed:
            parts.append("(the error is in the log file and the run's error tag)")
        parts.append(format_seconds(self.seconds))
        return "  ".join(parts)


def open_parent(tracking: TrackingConfig, overrides: Sequence[str]) -> str:
    """The sweep's parent run (tagged `sweep=true`, its overrides, and its command as the
    description): the unfinished parent of the same overrides that a process now gone left
    (a killed sweep, rerun, continues it), else a new one. A live sweep's parent is not taken.
    """
    client = client_for(tracking)
    joined = " ".join(overrides)
    owner = {
        contract.TAG_SWEEP_HOST: socket.gethostname(),
        contract.TAG_SWEEP_PID: str(os.getpid()),
    }
    experiment = experiment_id(client, tracking)
    if (left := _abandoned_parent(client, experiment, joined)) is not None:
        log.warning(
            "continuing sweep parent run %s (left %s by pid %s on %s, which is gone)",
            left.info.run_id,
            left.info.status,
            left.data.tags.get(contract.TAG_SWEEP_PID),
            left.data.tags.get(contract.TAG_SWEEP_HOST),
        )
        if contract.TAG_SWEEP_UNFINISHED in left.data.tags:
            client.delete_tag(left.info.run_id, contract.TAG_SWEEP_UNFINISHED)
        client.update_run(left.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        for key, value in owner.items():
            client.set_tag(left.info.run_id, key, value)
        return left.info.run_id
    return client.create_run(
        experiment,
        run_name=f"sweep {joined}".strip()[:250],
        tags={
            contract.TAG_SWEEP: "true",
            contract.TAG_SWEEP_OVERRIDES: joined,
            contract.TAG_NOTE: shlex.join([Path(sys.executable).name, *sys.argv]),
            **owner,
        },
    ).info.run_id


def _abandoned_parent(client: MlflowClient, experiment: str, overrides: str) -> Run | None:
    # Overrides are compared here, not in the filter: they hold quotes the filter cannot escape.
    candidates = client.search_runs(
        [experiment],
        filter_string=f"tags.{contract.TAG_SWEEP} = 'true' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=PARENT_CANDIDATES,
    )
    for run in candidates:
        tags = run.data.tags
        if tags.get(contract.TAG_SWEEP_OVERRIDES) != overrides:
            continue
        pid = tags.get(contract.TAG_SWEEP_PID, "")
        alive = pid.isdigit() and owner_alive(tags.get(contract.TAG_SWEEP_HOST, ""), int(pid))
        if run.info.status != "RUNNING" or not alive:
            return run
    return None


def close_parent(
    client: MlflowClient,
    run_id: str,
    failed: Sequence[str] = (),
    pick_learning_rate: bool = False,
    stats: StatsConfig | None = None,
) -> None:
    """FINISHED when every grid point (and base row) finished, else FAILED naming the others;
    the finished points' learning rates are checked (and, with `pick_learning_rate`, picked)
    on the way (base rows train nothing, so they have none). `failed`: the points that failed;
    those that failed before opening a run of their own (a preflight) count as grid points
    too."""
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.`{contract.TAG_PARENT_RUN_ID}` = '{run_id}'",
    )
    points = [r for r in children if contract.TAG_RUN_KIND not in r.data.tags]
    finished = [r for r in points if r.info.status == "FINISHED"]
    if finished:
        record_learning_rates(client, run_id, finished, pick_learning_rate)
        record_statistics(client, run_id, finished, stats or StatsConfig())
    runless = set(failed) - {r.info.run_name for r in children}
    unfinished = sorted(
        {r.info.run_name for r in children if r.info.status != "FINISHED"} | set(failed)
    )
    client.set_tag(run_id, contract.TAG_SWEEP_GRID_POINTS, len(points) + len(runless))
    if unfinished:
        client.set_tag(run_id, contract.TAG_SWEEP_UNFINISHED, ", ".join(unfinished)[:5000])
    status = RunStatus.FAILED if unfinished else RunStatus.FINISHED
    client.set_terminated(run_id, RunStatus.to_string(status))


def record_learning_rates(
    client: MlflowClient, parent_id: str, runs: Sequence[Run], pick: bool
) -> None:
    """Warn about (and tag the parent with) methods compared at one unusual learning rate;
    with `pick`, print and log per method the learning rate of the lowest dev loss."""
    from lorabench.analysis.learning_rates import (
        best_learning_rates,
        shared_learning_rate_warnings,
    )
    from lorabench.analysis.runs import AnalysisError, run_frame

    frame = run_frame(runs)
    warnings = shared_learning_rate_warnings(frame)
    for warning in warnings:
        log.warning(warning)
    if warnings:
        client.set_tag(parent_id, contract.TAG_SWEEP_LR_WARNINGS, "\n".join(warnings)[:5000])
    if not pick:
        return
    try:
        picks = best_learning_rates(frame)
    except AnalysisError as err:  # nothing to pick from: said, and the sweep still closes
        log.error("sweep.pick_learning_rate: %s", err)
        client.set_tag(parent_id, contract.TAG_SWEEP_LR_PICKS, str(err)[:5000])
        return
    lines = [
        f"{p.candidates}: learning rate {p.learning_rate:g} (dev loss {p.dev_loss:.4f}, "
        f"best of {p.tried})"
        for p in picks.itertuples(index=False)
    ]
    print("\n".join(["learning rates picked on the development split:", *lines]))
    client.set_tag(parent_id, contract.TAG_SWEEP_LR_PICKS, "\n".join(lines)[:5000])
    client.log_text(parent_id, picks.to_csv(index=False), contract.ARTIFACT_LR_PICKS)


def record_statistics(
    client: MlflowClient, parent_id: str, runs: Sequence[Run], stats: StatsConfig
) -> None:
    """Log the statistics of the sweep's runs (replicates, comparisons, ...) to its parent as
    artifacts `statistics/`; a failure to compute them is logged and the sweep still closes."""
    import tempfile

    from lorabench.analysis.items import load_item_scores
    from lorabench.analysis.runs import run_frame
    from lorabench.analysis.statistics import write_statistics

    frame = run_frame(runs)
    try:
        items = load_item_scores(client.tracking_uri, list(frame["run_id"]))
        with tempfile.TemporaryDirectory() as tmp:
            written = write_statistics(frame, items, tmp, stats)
            client.log_artifacts(parent_id, str(Path(tmp) / contract.ARTIFACT_STATS_DIR),
                                 contract.ARTIFACT_STATS_DIR)  # fmt: skip
            figures = Path(tmp) / "figures"
            if figures.is_dir():
                client.log_artifacts(parent_id, str(figures), contract.ARTIFACT_STATS_DIR)
    except (LorabenchError, ValueError) as err:  # said, and the sweep still closes
        log.error("sweep statistics: %s", err)
        return
    # One line on the console (the demo's console stays quiet); the sections are artifacts.
    log.debug("sweep statistics:\n%s", written.markdown)
    print(f"statistics: artifacts {contract.ARTIFACT_STATS_DIR}/ of the sweep's run {parent_id}")


def _tracking_of(config: DictConfig) -> TrackingConfig:
    return OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(TrackingConfig), config.tracking)
    )


def _stats_of(config: DictConfig) -> StatsConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StatsConfig), config.stats))


class SweepCallback(Callback):
    """Opens a multirun's parent run before the first job and closes it after the last (Hydra
    runs both hooks in the launching process, whatever the launcher); after the last job it
    prints the sweep's summary from the jobs' outcome records, and exits non-zero when a point
    failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        # Records of an earlier sweep into the same directory are not this sweep's.
        shutil.rmtree(sweep_dir / OUTCOMES_DIR, ignore_errors=True)
        if config.sweep.plan:
            return
        # Unresolved: an override like training.output_dir=out/${run_name} names each point.
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        run_id = open_parent(_tracking_of(config), overrides)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        outcomes = read_outcomes(sweep_dir)
        path = sweep_dir / PARENT_RUN_FILE
        if path.is_file():
            failed = [o.run_name for o in outcomes if o.failed]
            close_parent(
                client_for(_tracking_of(config)),
                path.read_text().strip(),
                failed,
                pick_learning_rate=config.sweep.pick_learning_rate,
                stats=_stats_of(config),
            )
        print(summary(outcomes, plan=bool(config.sweep.plan)))
        if any(o.failed for o in outcomes):
            # SystemExit passes Hydra's callback guard (it catches Exception only).
            sys.exit(1)


def record_outcome(outcome: PointOutcome, sweep_dir: Path, job_num: int) -> None:
    """Record multirun job `job_num`'s outcome in the sweep directory."""
    directory = sweep_dir / OUTCOMES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{job_num}.json").write_text(json.dumps(asdict(outcome)))


def read_outcomes(sweep_dir: Path) -> list[PointOutcome]:
    """The outcome records of a multirun's jobs, in job order."""
    paths = sorted((sweep_dir / OUTCOMES_DIR).glob("*.json"), key=lambda p: int(p.stem))
    return [PointOutcome(**json.loads(p.read_text())) for p in paths]


def summary(outcomes: Sequence[PointOutcome], plan: bool) -> str:
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
        hours = [o.gpu_hours for o in planned if o.gpu_hours is not None and o.status != "skip"]
        unfit = [o.run_name for o in planned if o.fits is False]
        total = f"total: {sum(hours):.4g} GPU hours to train or resume"
        if len(hours) < len([o for o in planned if o.status != "skip"]):
            total += " (points without a GPU type not counted)"
        lines.append(total)
        if unfit:
            lines.append(f"do not fit as configured: {', '.join(unfit)}")
    failed = [o.run_name for o in outcomes if o.failed]
    if failed:
        lines.append(f"{'could not be planned' if plan else 'failed'}: {', '.join(failed)}")
    return "\n".join(lines)


def finished_run(cfg: Config) -> str | None:
    """A FINISHED run of this exact training config (for a chained run: on its base run's
    current weights; evaluated with this eval config, on the run's own weights, when the sweep
    evaluates), or None."""
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
    if cfg.sweep.evaluate and not _evaluated(cfg, run_id, runs[0].data.tags):
        return None
    return run_id


def _evaluated(cfg: Config, run_id: str, tags: dict[str, str]) -> bool:
    from lorabench.evaluation.targets import evaluation_hash, resolve_target

    if contract.TAG_EVAL_HASH not in tags:
        return False
    try:
        target = resolve_target(_updated(cfg, run=run_id))
    except LorabenchError:
        return False  # its model is gone: evaluating it again says why
    return tags[contract.TAG_EVAL_HASH] == evaluation_hash(cfg, target)


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
    head = f"{p.run_name}: {p.action} lr={p.learning_rate:g} epochs={p.epochs:g}"
    print(f"{head} | {p.estimate.describe()}")
    time = p.estimate.time
    return PointOutcome(
        p.run_name,
        p.action,
        gpu_hours=None if time is None else time.gpu_hours,
        fits=p.estimate.memory.fits,
    )


def format_seconds(seconds: float) -> str:
    """`42s`, `3m05s`."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _outcome(cfg: Config, name: str, status: str, run_id: str | None, start: float) -> PointOutcome:
    metrics: Mapping[str, float] = {}
    if run_id is not None:
        metrics = client_for(cfg.tracking).get_run(run_id).data.metrics
    return PointOutcome(name, status, seconds=time.perf_counter() - start, metrics=dict(metrics))


def run_point(cfg: Config, overrides: Sequence[str], train_script: str) -> PointOutcome:
    """Train and evaluate one grid point; its outcome is `skipped`, `finished` (`trained`
    without evaluation), `busy` or `failed`.

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
    status = "finished" if cfg.sweep.evaluate else "trained"
    return _outcome(cfg, cfg.run_name, status, run_id, start)


def evaluated_base(cfg: Config, target: Any) -> str | None:
    """The run of the base row `target` when it holds this evaluation (same eval hash)."""
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
    return run_id if run.info.status == "FINISHED" and same else None


def run_base_row(cfg: Config) -> PointOutcome:
    """Evaluate the untuned base model of `cfg` as a base row (`<model> (base)`), unless it
    already holds this evaluation; a failure is logged and the sweep goes on."""
    from lorabench.evaluation import evaluate
    from lorabench.evaluation.targets import resolve_target

    start = time.perf_counter()
    cfg = _updated(cfg, run=None, model_path=None)
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


def _train_and_evaluate(cfg: Config, overrides: Sequence[str], train_script: str) -> str:
    """Train (held: the output directory's lock, by this process or the launched rank 0), then
    evaluate (held by this process); returns the point's run id."""
    from lorabench.evaluation import evaluate
    from lorabench.training import train

    output_dir = Path(cfg.training.output_dir)
    with contextlib.ExitStack() as held:
        if needs_launcher(cfg, DistEnv.from_environ()):
            from lorabench.demo.pretraining import resolved_model

            resolved_model(cfg)  # the ranks load the pretrained base; it is made here, once
            # Every rank gets the same overrides (parent run, output directory); rank 0 opens
            # the point's run, records its id in the output directory and holds its lock.
            parent = f"tracking.parent_run_id={cfg.tracking.parent_run_id}"
            command = launch_command(cfg, train_script, [*overrides, parent])
            if code := subprocess.call(command):
                raise LorabenchError(f"training exited with code {code}")
            run_id = (output_dir / contract.RUN_ID_FILE).read_text().strip()
        else:
            held.enter_context(directory_lock(output_dir))
            with training_process(cfg):
                run_id = train(cfg).run_id
        if cfg.sweep.evaluate:
            held.enter_context(directory_lock(output_dir))  # a no-op when held already
            evaluate(_updated(cfg, run=run_id))
    return run_id


def _updated(cfg: Config, **changes: Any) -> Config:
    return validate(OmegaConf.merge(OmegaConf.structured(cfg), changes))


def ordered_rows(names: Sequence[str], bases: Sequence[str | None]) -> list[int]:
    """Row indices with every row after the row that trains its base run (a base run that no
    row trains must exist already)."""
    order: list[int] = []
    done: set[str] = set()
    pending = list(range(len(names)))
    while pending:
        ready = [i for i in pending if bases[i] in done or bases[i] not in names]
        if not ready:
            raise ConfigError(f"sweep.rows: circular base_run among {[names[i] for i in pending]}")
        order.extend(ready)
        done.update(names[i] for i in ready)
        pending = [i for i in pending if i not in ready]
    return order


def _composed(overrides: Sequence[str], experiment: Config) -> Config:
    """A row composed without the experiment, taking the experiment's sweep settings
    (`evaluate`: a learning-rate search judges nothing), which every row shares."""
    composed = validate(hydra_compose(config_name="config", overrides=list(overrides)), overrides)
    return replace(composed, sweep=experiment.sweep)


def run_rows(cfg: Config, overrides: Sequence[str], train_script: str) -> list[PointOutcome]:
    """Run (or plan) an experiment's base rows, then its rows, under one parent run, printing
    each one's summary line as it ends; returns their outcomes in the order they ran.

    Every row's config is validated before any row trains; a plan instead reports a row whose
    config is invalid as that row's error and plans the others.
    """
    base = [o for o in overrides if not o.startswith("experiment=")]
    model_map = cfg.sweep.model_map
    bases = [_composed([*base, f"model={model_map.get(m, m)}"], cfg) for m in cfg.sweep.base_models]
    rows = [[_mapped_model(o, model_map) for o in row] for row in cfg.sweep.rows]
    configs: list[Config] = []
    invalid: list[PointOutcome] = []
    for row in rows:
        try:
            configs.append(_composed([*base, *row], cfg))
        except LorabenchError as err:
            if not cfg.sweep.plan:
                raise
            label = " ".join(row)
            print(f"{label}: error: {err}")
            invalid.append(PointOutcome(label, FAILED))
    names = [c.run_name for c in configs]
    order = ordered_rows(names, [c.base_run for c in configs])
    if cfg.sweep.plan:
        for config in bases:
            print(f"{config.model.name} (base): evaluate the untuned base (no training)")
        return [*invalid, *(print_plan(configs[i]) for i in order)]
    parent = open_parent(cfg.tracking, overrides)
    outcomes = []
    try:
        steps = [lambda c=c: run_base_row(c) for c in _nested(bases, parent)]
        steps += [
            lambda c=c, r=r: run_point(c, [*base, *r], train_script)
            for c, r in zip(_nested([configs[i] for i in order], parent),
                            [rows[i] for i in order], strict=True)
        ]  # fmt: skip
        for step in steps:
            outcome = step()
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    finally:
        failed = [o.run_name for o in outcomes if o.failed]
        close_parent(
            client_for(cfg.tracking), parent, failed, cfg.sweep.pick_learning_rate, cfg.stats
        )
    return outcomes


def _nested(configs: Sequence[Config], parent: str) -> list[Config]:
    return [_updated(c, tracking={"parent_run_id": parent}) for c in configs]


def _mapped_model(override: str, model_map: dict[str, str]) -> str:
    """`model=llama-7b` → `model=tiny`, `base_run='llama-7b+ft(2m)'` → `base_run='tiny+ft(2m)'`."""
    key, _, value = override.partition("=")
    if key == "model" and value in model_map:
        return f"model={model_map[value]}"
    if key == "base_run":
        head, plus, rest = value.strip("'\"").partition("+")
        if head in model_map:
            return f"base_run='{model_map[head]}{plus}{rest}'"
    return override


def sweep_main(cfg: DictConfig, train_script: str) -> int:
    """`sweep.py`: one grid point of a multirun, or an experiment's rows in order; returns the
    exit code.

    A multirun job records its point's outcome and returns 0 whatever it was, so that Hydra
    runs the next job; `SweepCallback` reports the sweep at its end. Rows and a single point
    report themselves: 1 when a point failed.
    """
    hydra = HydraConfig.get()
    overrides = list(hydra.overrides.task)
    if hydra.mode != RunMode.MULTIRUN:
        config = validate(cfg)
        set_cpu_threads(config.hardware)
        if config.sweep.rows:
            outcomes = run_rows(config, overrides, train_script)
        else:
            outcomes = [_point(config, overrides, train_script)]
        print(summary(outcomes, plan=config.sweep.plan))
        return int(any(o.failed for o in outcomes))
    try:
        config = validate(cfg)
        set_cpu_threads(config.hardware)
    except LorabenchError as err:  # this point's config; the sweep's other points go on
        label = " ".join(overrides)
        print(f"{label}: error: {err}")
        record_outcome(PointOutcome(label, FAILED), Path(hydra.sweep.dir), hydra.job.num)
        return 0
    parent_file = Path(hydra.sweep.dir) / PARENT_RUN_FILE
    if parent_file.is_file():
        config = _updated(config, tracking={"parent_run_id": parent_file.read_text().strip()})
    outcome = _point(config, overrides, train_script)
    record_outcome(outcome, Path(hydra.sweep.dir), hydra.job.num)
    return 0


def _point(config: Config, overrides: Sequence[str], train_script: str) -> PointOutcome:
    if config.sweep.plan:
        return print_plan(config)
    outcome = run_point(config, overrides, train_script)
    print(outcome.line(), flush=True)
    return outcome
