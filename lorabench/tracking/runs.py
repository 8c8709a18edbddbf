"""MLflow: the store, one run per grid point, runs closed as they ended (names: `contract`)."""

from __future__ import annotations

import functools
import logging
import subprocess
import threading
import time
import traceback
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
)
from omegaconf import DictConfig, OmegaConf

from lorabench import contract
from lorabench.config.schema import TrackingConfig
from lorabench.errors import ConfigError
from lorabench.identity import flatten

log = logging.getLogger(__name__)

# Config keys of the evaluation stage, the sweep, the plan's assumptions and the GPU catalogue:
# not training params (the GPU type a run names is, as hardware.gpu).
NON_TRAINING_KEYS = ("eval", "judge", "run", "model_path", "sweep", "plan", "anatomy", "gpus")

# Several processes may log into one sqlite store (grid points run in parallel, `mlflow ui` on
# the same file). MLflow waits up to 20 s for a lock on each statement (its own `PRAGMA
# busy_timeout`, which overrides a `?timeout=` in the URI), then raises "database is locked".
# Such calls are retried after these pauses; the locked call's transaction was rolled back, so a
# retry neither loses nor repeats a write.
LOCKED_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# MLflow logs a run's dataset by looking it up and inserting it when absent, in one transaction;
# runs logging the same new dataset at once (two sweeps on one server) race, and the losers fail
# on the table's key. Their transaction was rolled back, and a retry finds the winner's row and
# links it. Messages of sqlite and of PostgreSQL (whose key MLflow names `dataset_pk`).
RETRIED_ERRORS: tuple[str, ...] = (
    "database is locked",
    "UNIQUE constraint failed: datasets.",
    '"dataset_pk"',
)
SERVER_CHECK_TIMEOUT_S = 10.0
"""How long a tracking server may take to answer its health check before the store counts as
unreachable (a loaded server answers in milliseconds)."""
_retrying = threading.local()


class LockRetryingClient(MlflowClient):
    """An MlflowClient whose public calls are retried while a sqlite store is locked or when a
    concurrent writer created the same dataset first (`RETRIED_ERRORS`)."""

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr):
            return attr
        return functools.partial(_retry_while_locked, attr)


def _retry_while_locked(call: Any, *args: Any, **kwargs: Any) -> Any:
    if getattr(_retrying, "active", False):
        return call(*args, **kwargs)  # called by another client method, which retries
    _retrying.active = True
    try:
        for delay in LOCKED_RETRY_DELAYS:
            try:
                return call(*args, **kwargs)
            except MlflowException as err:
                if not any(marker in str(err) for marker in RETRIED_ERRORS):
                    raise
                name = getattr(call, "__name__", "call")
                reason = _first_line(err)
                log.warning("MLflow store: %s; retrying %s in %.0f s", reason, name, delay)
                time.sleep(delay)
        return call(*args, **kwargs)
    finally:
        _retrying.active = False


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200]


@functools.cache
def _create_sqlite_store(uri: str) -> None:
    """Create (or check) a sqlite store's tables, one process at a time: MLflow creates them
    without a lock, and processes opening a new store together fail on each other's tables."""
    path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(f"{path.name}.lock")):
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


@functools.cache
def _check_server(uri: str) -> None:
    """Fail at once, naming the URI, when an MLflow server does not answer (the client would
    otherwise retry each call for minutes, after the model was loaded)."""
    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=SERVER_CHECK_TIMEOUT_S) as reply:
            reply.read()
    except OSError as err:  # URLError, HTTPError, timeouts, refused connections
        raise ConfigError(
            f"tracking.tracking_uri={uri}: the MLflow server does not answer ({health}: {err}); "
            "start it, or point tracking.tracking_uri (or MLFLOW_TRACKING_URI) at a store that "
            "can be reached"
        ) from err


def client_for(tracking: TrackingConfig) -> MlflowClient:
    """An MLflow client on the configured store (creating a local sqlite store on first use;
    checking once per process that a server answers)."""
    uri = tracking.tracking_uri
    if uri.startswith("sqlite:///"):
        _create_sqlite_store(uri)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    return LockRetryingClient(tracking_uri=uri)


EXPERIMENT_KIND = contract.EXPERIMENT_KIND_TRAINING
"""lorabench's experiments train models: the MLflow UI opens them on their runs."""


def experiment_id(client: MlflowClient, tracking: TrackingConfig) -> str:
    """The experiment's id, created on first use (artifacts under `artifact_location` locally),
    marked as a model-training experiment."""
    existing = client.get_experiment_by_name(tracking.experiment_name)
    if existing is not None:
        if existing.tags.get(contract.TAG_EXPERIMENT_KIND) is None:  # made before the tag
            client.set_experiment_tag(
                existing.experiment_id, contract.TAG_EXPERIMENT_KIND, EXPERIMENT_KIND
            )
        return existing.experiment_id
    artifact_location = None
    if not tracking.tracking_uri.startswith(("http://", "https://", "databricks")):
        artifact_location = Path(tracking.artifact_location).resolve().as_uri()
    try:
        return client.create_experiment(
            tracking.experiment_name,
            artifact_location,
            tags={contract.TAG_EXPERIMENT_KIND: EXPERIMENT_KIND},
        )
    except MlflowException:
        # Another process may have created it between our lookup and create.
        raced = client.get_experiment_by_name(tracking.experiment_name)
        if raced is None:
            raise
        return raced.experiment_id


def training_params(cfg: DictConfig) -> dict[str, Any]:
    """The flattened resolved config without the evaluation's keys (they vary per evaluation)."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {
        k: v
        for k, v in flat.items()
        if not any(k == x or k.startswith(f"{x}.") for x in NON_TRAINING_KEYS)
    }


def git_commit() -> str:
    """The repository's HEAD commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


@dataclass
class Run:
    """An open MLflow run: a thin handle that logs through one client."""

    client: MlflowClient
    run_id: str

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log several metrics at one step in one request."""
        batch = [Metric(k, float(v), _now_ms(), step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_metric_steps(self, entries: list[tuple[str, float, int]]) -> None:
        """Log (key, value, step) entries in as few requests as MLflow allows."""
        now = _now_ms()
        metrics = [Metric(k, float(v), now, step) for k, v, step in entries]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(
                self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH]
            )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags in one request."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def latest_metrics(self) -> dict[str, float]:
        """Every metric's latest value."""
        return dict(self.client.get_run(self.run_id).data.metrics)

    def metric_history(self, key: str) -> list[float]:
        """Logged values of a metric, oldest first."""
        history = self.client.get_metric_history(self.run_id, key)
        return [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def tracked_run(
    tracking: TrackingConfig,
    run_name: str,
    output_dir: Path,
    *,
    resume: bool = True,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[Run]:
    """Open the grid point's run, or reopen the one recorded in `output_dir` when resuming.

    `params` are logged on a new run (the caller checks that a resumed directory holds the same
    config: `identity.check_output_dir`). The run closes as `reopened_run` says.
    """
    client = client_for(tracking)
    params = {k: str(v) for k, v in (params or {}).items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH}
    id_file = output_dir / contract.RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    if run_id is not None:
        try:
            client.get_run(run_id)
        except MlflowException:
            run_id = None  # recorded in another store: start afresh here
    if run_id is None:
        run_id = client.create_run(
            experiment_id(client, tracking), run_name=run_name, tags=dict(tags or {})
        ).info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        output_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    with reopened_run(client, run_id) as run:
        yield run


@contextmanager
def reopened_run(client: MlflowClient, run_id: str) -> Iterator[Run]:
    """Mark a run RUNNING for the block, then close it, never leaving it RUNNING.

    FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM (as KeyboardInterrupt), and
    FAILED with the error as the `error` tag on any other exception, which is re-raised. An
    `error` tag from an earlier attempt is removed first.
    """
    if contract.TAG_ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, contract.TAG_ERROR)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    try:
        yield Run(client, run_id)
    except KeyboardInterrupt:
        _close_after_failure(client, run_id, RunStatus.KILLED)
        raise
    except BaseException as err:
        message = "".join(traceback.format_exception_only(type(err), err)).strip()
        _close_after_failure(client, run_id, RunStatus.FAILED, message)
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


def _close_after_failure(
    client: MlflowClient, run_id: str, status: int, message: str | None = None
) -> None:
    """Record how a run ended; a store that cannot be reached is said, and the failure that
    ended the run is what the caller raises (the run stays RUNNING, resumed on the next start)."""
    try:
        if message is not None:
            client.set_tag(run_id, contract.TAG_ERROR, message[:MAX_TAG_VAL_LENGTH])
        client.set_terminated(run_id, RunStatus.to_string(status))
    except MlflowException as err:
        log.error(
            "could not mark run %s %s in %s: %s",
            run_id,
            RunStatus.to_string(status),
            client.tracking_uri,
            err,
        )


def find_run(client: MlflowClient, tracking: TrackingConfig, ref: str, key: str = "run") -> Run:
    """A run by id, or the newest run of that name in the configured experiment (`key`: the
    config key that named it, for the error)."""
    try:
        return Run(client, client.get_run(ref).info.run_id)
    except MlflowException:
        pass
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    runs = []
    if experiment is not None:
        escaped = ref.replace("'", "\\'")
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.run_name = '{escaped}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise ConfigError(
            f"{key}={ref!r}: no run with that id, nor of that name in experiment "
            f"{tracking.experiment_name!r} of {tracking.tracking_uri}"
        )
    return Run(client, runs[0].info.run_id)
