"""The completion record of a finished training (`training_complete.json`) and the run it
belongs to in the store now in use.

The record names every store the result was logged in and its run there (`runs`: tracking URI
→ run id), its config hash, the saved model and the run's metrics. Against a store that lacks
the run (the local store removed, `MLFLOW_TRACKING_URI` pointed at a team server), the finished
result is recorded there as a new run rather than trained again (`TrainingRecipe.adopt`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.errors import ConfigError

log = logging.getLogger(__name__)


def read_record(output_dir: Path, config_hash: str) -> dict[str, Any] | None:
    """The completion record in `output_dir` (None: training has not finished there).

    A record of another config (its `config_hash` differs) is refused, not trusted.
    """
    path = output_dir / contract.COMPLETE_MARKER
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        recorded_hash = record["config_hash"]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a completion record ({err})") from err
    if recorded_hash != config_hash:
        raise ConfigError(
            f"{path} records a training of another config (config hash {recorded_hash}, "
            f"asked for {config_hash}); give this run another training.output_dir, or "
            "retrain the directory with training.resume=false"
        )
    return record


def write_record(output_dir: Path, record: dict[str, Any]) -> None:
    """Write the completion record (replacing it atomically)."""
    path = output_dir / contract.COMPLETE_MARKER
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(record, indent=2))
    staged.replace(path)


def recorded_runs(record: dict[str, Any]) -> dict[str, str]:
    """Tracking URI → run id of every store the record's result was logged in."""
    runs = dict(record.get("runs", {}))
    if record.get("run_id") and record.get("tracking_uri"):
        runs.setdefault(record["tracking_uri"], record["run_id"])
    return runs


def run_in_store(client: MlflowClient, experiment_name: str, record: dict[str, Any]) -> str | None:
    """The id of the record's run in the client's store, or None when the store lacks it.

    A recorded id is accepted only with the record's config hash; failing those, a run of this
    config hash that saved this model is looked up (the record of an earlier import was lost).
    """
    for run_id in recorded_runs(record).values():
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue  # another store's id
        tags = run.data.tags
        if (
            run.info.lifecycle_stage == "active"
            and tags.get(contract.TAG_CONFIG_HASH) == record["config_hash"]
        ):
            return run_id
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    model_path = str(Path(record["model_path"]).resolve()).replace("'", "\\'")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.{contract.TAG_CONFIG_HASH} = '{record['config_hash']}' and "
            f"tags.{contract.TAG_MODEL_PATH} = '{model_path}'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def close_finished(client: MlflowClient, run_id: str) -> None:
    """Mark FINISHED a run whose training finished but which a killed process left open."""
    status = client.get_run(run_id).info.status
    if status == RunStatus.to_string(RunStatus.FINISHED):
        return
    log.warning(
        "run %s is %s but its training finished (a process was stopped after saving the "
        "model); closing it as FINISHED",
        run_id,
        status,
    )
    if contract.TAG_ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, contract.TAG_ERROR)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
