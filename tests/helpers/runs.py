"""Reading the MLflow runs a test made: the runs of an experiment, and the training metrics
every run must hold."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from lorabench import contract

# The training metrics every run must hold (lorabench.contract's training metrics).
CONTRACT_METRICS = {
    "train/loss",
    "train/learning_rate",
    "train/grad_norm",
    "train/tokens_per_second",
    "train/hours_per_epoch",
    "train/gpu_hours",
    "model/additional_params",
    "model/trainable_params",
    "model/total_params",
    "system/peak_memory_gb",
}


def runs_of(
    client: MlflowClient, experiment: str = "lorabench-demo", pretraining: bool = False
) -> list:
    """The runs of an experiment, oldest first; a demo base's pretraining run only with
    `pretraining` (whichever test first needs the session's shared base makes it, into its own
    store)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    if pretraining:
        return runs
    kind = contract.TAG_RUN_KIND
    return [r for r in runs if r.data.tags.get(kind) != contract.RUN_KIND_PRETRAINING]


def sweep_runs(client: MlflowClient, experiment: str = "lorabench-demo") -> tuple:
    """The store's single sweep parent run and the runs nested under it."""
    runs = runs_of(client, experiment)
    (parent,) = [r for r in runs if r.data.tags.get(contract.TAG_SWEEP) == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children
