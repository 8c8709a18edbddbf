"""MLflow: the store, one run per grid point, and the names every stage shares (DESIGN.md)."""

from __future__ import annotations

import hashlib
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from lorabench.config.schema import TrackingConfig

RUN_ID_FILE = "mlflow_run_id"
RESOLVED_CONFIG_ARTIFACT = "config/resolved.yaml"
# Keys that change how a run executes, not what it computes: left out of the config hash.
HASH_EXCLUDED_KEYS = (
    "tracking",
    "training.progress_bar",
    "training.resume",
    "cache_dir",
    "dry_run",
)


def client_for(tracking: TrackingConfig) -> MlflowClient:
    """An MLflow client on the configured store (creating a local sqlite file's folder)."""
    uri = tracking.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, tracking: TrackingConfig) -> str:
    """The experiment's id, created on first use (artifacts under `artifact_location` locally)."""
    existing = client.get_experiment_by_name(tracking.experiment_name)
    if existing is not None:
        return existing.experiment_id
    artifact_location = None
    if not tracking.tracking_uri.startswith(("http://", "https://", "databricks")):
        artifact_location = Path(tracking.artifact_location).resolve().as_uri()
    try:
        return client.create_experiment(tracking.experiment_name, artifact_location)
    except MlflowException:
        # Another process created it between our lookup and create.
        return client.get_experiment_by_name(tracking.experiment_name).experiment_id


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_hash(cfg: DictConfig) -> str:
    """A stable hash of what a run computes: the resolved config without run-time keys."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = flatten(resolved)
    kept = {
        k: v
        for k, v in flat.items()
        if not any(k == x or k.startswith(f"{x}.") for x in HASH_EXCLUDED_KEYS)
    }
    return hashlib.sha256(repr(sorted(kept.items())).encode()).hexdigest()[:16]


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

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params; values over MLflow's length limit live only in the config artifact."""
        items = [Param(k, str(v)) for k, v in params.items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH]
        self.client.log_batch(self.run_id, params=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags in one request."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

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
    tags: Mapping[str, Any] | None = None,
) -> Iterator[Run]:
    """Open the grid point's run, or reopen the one recorded in `output_dir` when resuming.

    The run ends FINISHED when the block completes, KILLED on Ctrl-C, and FAILED with the error
    as a tag on any other exception, which is re-raised: a run is never left RUNNING.
    """
    client = client_for(tracking)
    id_file = output_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    if run_id is not None:
        try:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        except MlflowException:
            run_id = None  # recorded in another store: start afresh here
    if run_id is None:
        run_id = client.create_run(
            experiment_id(client, tracking), run_name=run_name, tags=dict(tags or {})
        ).info.run_id
        output_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    run = Run(client, run_id)
    try:
        yield run
    except KeyboardInterrupt:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as err:
        message = "".join(traceback.format_exception_only(type(err), err)).strip()
        client.set_tag(run_id, "error", message[:MAX_TAG_VAL_LENGTH])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
