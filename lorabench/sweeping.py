"""Sweeps: each grid point trains then evaluates as one MLflow run, nested under a parent run.

A grid point whose configuration already has a FINISHED, evaluated run is skipped; a failed or
killed one is recorded as such (the run ends FAILED or KILLED with its error) and the sweep goes
on; re-running a sweep resumes unfinished points from their checkpoints. An experiment config
can list explicit rows (`sweep.rows`, e.g. `experiment=paper_table4`); they run in dependency
order, a chained row after the row that trains its base run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from lorabench import contract
from lorabench.config import validate
from lorabench.config.schema import Config, TrackingConfig
from lorabench.errors import ConfigError, LorabenchError
from lorabench.identity import config_hash
from lorabench.launching import DistEnv, launch_command, needs_launcher, training_process
from lorabench.locking import DirectoryBusy, directory_lock, owner_alive
from lorabench.methods import method_for
from lorabench.tracking import client_for, experiment_id

log = logging.getLogger(__name__)

PARENT_RUN_FILE = "mlflow_parent_run_id"
"""In the Hydra sweep directory: the parent run that the sweep's grid points nest under."""
PARENT_CANDIDATES = 1000
"""Unfinished sweep parents looked at for one of the same command to continue (newest first;
MLflow's largest page)."""


@dataclass(frozen=True)
class PointPlan:
    """What a sweep would do for one grid point."""

    run_name: str
    action: str
    """`skip` (finished and evaluated), `resume` (has a checkpoint) or `train`."""
    estimated_gpu_hours: float
    learning_rate: float
    epochs: float


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


def close_parent(client: MlflowClient, run_id: str, pick_learning_rate: bool = False) -> None:
    """FINISHED when every grid point finished, else FAILED naming the others; the finished
    points' learning rates are checked (and, with `pick_learning_rate`, picked) on the way."""
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.`{contract.TAG_PARENT_RUN_ID}` = '{run_id}'",
    )
    finished = [r for r in children if r.info.status == "FINISHED"]
    if finished:
        record_learning_rates(client, run_id, finished, pick_learning_rate)
    unfinished = sorted(r.info.run_name for r in children if r.info.status != "FINISHED")
    client.set_tag(run_id, contract.TAG_SWEEP_GRID_POINTS, len(children))
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


def _tracking_of(config: DictConfig) -> TrackingConfig:
    return OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(TrackingConfig), config.tracking)
    )


class SweepCallback(Callback):
    """Opens a multirun's parent run before the first job and closes it after the last (Hydra
    runs both hooks in the launching process, whatever the launcher)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.sweep.plan:
            return
        # Unresolved: an override like training.output_dir=out/${run_name} names each point.
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        run_id = open_parent(_tracking_of(config), overrides)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / PARENT_RUN_FILE
        if path.is_file():
            close_parent(
                client_for(_tracking_of(config)),
                path.read_text().strip(),
                pick_learning_rate=config.sweep.pick_learning_rate,
            )


def finished_run(cfg: Config) -> str | None:
    """A FINISHED run of this exact training config (evaluated with this eval config, on the
    run's own weights, when the sweep evaluates), or None."""
    client = client_for(cfg.tracking)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    if experiment is None:
        return None
    query = (
        f"tags.{contract.TAG_CONFIG_HASH} = '{config_hash(cfg)}' and attributes.status = 'FINISHED'"
    )
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


def estimated_gpu_hours(cfg: Config) -> float:
    """GPU hours from training FLOPs: the method's FLOPs per token and parameter × N (6 for
    full fine-tuning, 4 for LoRA); tokens = samples × mean length × epochs."""
    from lorabench.training import dry_run

    total = dry_run(cfg).total
    samples = (cfg.data.num_samples or cfg.data.nominal_samples) * (cfg.data.demo_fraction or 1.0)
    tokens = samples * cfg.sweep.mean_tokens_per_sample * cfg.method.epochs
    flops = tokens * method_for(cfg.method).flops_per_token_per_param * total
    return flops / (cfg.sweep.gpu_flops * cfg.sweep.expected_mfu) / 3600


def plan(cfg: Config) -> PointPlan:
    """What `run_point` would do with this grid point, without doing it."""
    if not cfg.sweep.force and finished_run(cfg) is not None:
        action = "skip"
    elif any(Path(cfg.training.output_dir).glob("checkpoint-*")):
        action = "resume"
    else:
        action = "train"
    return PointPlan(
        cfg.run_name, action, estimated_gpu_hours(cfg), cfg.method.learning_rate, cfg.method.epochs
    )


def run_point(cfg: Config, overrides: Sequence[str], train_script: str) -> str:
    """Train and evaluate one grid point; returns `skipped`, `finished`, `busy` or `failed`.

    A failure is recorded in MLflow and logged, not raised, so the sweep goes on; Ctrl-C (or
    SIGTERM) stops the sweep, leaving the point KILLED and resumable. A point another live
    process works on (its output directory's lock) is left to it: `busy`.
    """
    if not cfg.sweep.force and (done := finished_run(cfg)) is not None:
        log.info("%s: finished and evaluated in run %s; skipping", cfg.run_name, done)
        return "skipped"
    try:
        _train_and_evaluate(cfg, overrides, train_script)
    except DirectoryBusy as err:
        log.warning("%s: %s; skipping", cfg.run_name, err)
        return "busy"
    except Exception as err:  # noqa: BLE001 - recorded in MLflow by train/evaluate; sweep goes on
        log.error("%s failed: %s", cfg.run_name, err, exc_info=not isinstance(err, LorabenchError))
        return "failed"
    return "finished"


def _train_and_evaluate(cfg: Config, overrides: Sequence[str], train_script: str) -> None:
    """Train (held: the output directory's lock, by this process or the launched rank 0), then
    evaluate (held by this process)."""
    from lorabench.evaluation import evaluate
    from lorabench.training import train

    output_dir = Path(cfg.training.output_dir)
    with contextlib.ExitStack() as held:
        if needs_launcher(cfg, DistEnv.from_environ()):
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


def run_rows(cfg: Config, overrides: Sequence[str], train_script: str) -> dict[str, str]:
    """Run an experiment's rows under one parent run; returns each run name's outcome."""
    base = [o for o in overrides if not o.startswith("experiment=")]
    rows = [[_mapped_model(o, cfg.sweep.model_map) for o in row] for row in cfg.sweep.rows]
    # The rows are composed without the experiment; its sweep settings (evaluate: a
    # learning-rate search judges nothing) are the sweep's, so every row takes them.
    configs = [
        replace(
            validate(hydra_compose(config_name="config", overrides=[*base, *r]), [*base, *r]),
            sweep=cfg.sweep,
        )
        for r in rows
    ]
    names = [c.run_name for c in configs]
    order = ordered_rows(names, [c.base_run for c in configs])
    if cfg.sweep.plan:
        return {names[i]: _print_plan(configs[i]) for i in order}
    parent = open_parent(cfg.tracking, overrides)
    outcomes = {}
    try:
        for i in order:
            point = _updated(configs[i], tracking={"parent_run_id": parent})
            outcomes[names[i]] = run_point(point, [*base, *rows[i]], train_script)
    finally:
        close_parent(client_for(cfg.tracking), parent, cfg.sweep.pick_learning_rate)
    return outcomes


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


def _print_plan(cfg: Config) -> str:
    p = plan(cfg)
    print(
        f"{p.run_name}: {p.action} lr={p.learning_rate:g} epochs={p.epochs:g} "
        f"(~{p.estimated_gpu_hours:.3g} GPU hours)"
    )
    return p.action


def sweep_main(cfg: DictConfig, train_script: str) -> None:
    """`sweep.py`: one grid point of a multirun, or an experiment's rows in order."""
    config = validate(cfg)
    overrides = list(HydraConfig.get().overrides.task)
    if config.sweep.rows:
        outcomes = run_rows(config, overrides, train_script)
        if not config.sweep.plan:
            for name, outcome in outcomes.items():
                print(f"{name}: {outcome}")
        return
    parent_file = Path(HydraConfig.get().sweep.dir) / PARENT_RUN_FILE
    if parent_file.is_file():
        config = _updated(config, tracking={"parent_run_id": parent_file.read_text().strip()})
    if config.sweep.plan:
        _print_plan(config)
        return
    outcome = run_point(config, overrides, train_script)
    print(f"{config.run_name}: {outcome}")
