"""Synthetic benchmark results that follow the contract (`contract.ARTIFACT_BENCH_DIR`): runs,
base rows and chained runs in a real MLflow store with `bench/*` metrics, `summary.csv` and
per-item `items.jsonl`, for the learned/forgotten tests; and the same results in memory."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.benchmarks import RunBenchmarks
from tests.helpers.analysis import demo_run, log_run

RETENTION_TASK = "lorabench_retention"
TARGET_TASK = "lorabench_target"
NO_PANEL = ("eval.benchmarks=[]", "eval.world_perplexity=false")
"""Overrides that leave the demo's benchmark panel out (the `isolated` fixture's default)."""
PANEL = (f"eval.benchmarks=[{RETENTION_TASK},{TARGET_TASK}]", "eval.world_perplexity=true")
"""Overrides, after `isolated`'s, that put it back: the tests of the panel itself."""
BASE_WEIGHTS = "/pretrained/tiny-abc"
"""The `base_model` tag the synthetic runs and base row share (the weights they loaded)."""

N_RETENTION, N_TARGET = 300, 200
BASE_RIGHT = 210
"""Of the retention items, the base answers the first 210 right."""
BASE_TARGET_RIGHT = 20
"""Of the target items, the base answers the first 20 right."""

Tasks = Mapping[str, tuple[str, Sequence[float]]]
"""Task → (role, per-item values; item k is keyed `<task>-k`)."""


def items_of(task: str, values: Sequence[float]) -> pd.Series:
    return pd.Series(
        np.asarray(values, dtype=float), index=[f"{task}-{k}" for k in range(len(values))]
    )


def in_memory(name: str, tasks: Tasks, world: np.ndarray | None = None) -> RunBenchmarks:
    """A run's results as `benchmarks.read_run_benchmarks` returns them (`world`: rows of
    (nll, tokens) per document)."""
    frame = None
    if world is not None:
        keys = [f"doc-{k}" for k in range(len(world))]
        frame = pd.DataFrame(world, index=pd.Index(keys, name="item"), columns=["nll", "tokens"])
    return RunBenchmarks(
        run_id=name,
        run_name=name,
        roles={t: role for t, (role, _) in tasks.items()},
        metrics={t: "acc" for t in tasks},
        items={t: items_of(t, values) for t, (_, values) in tasks.items()},
        world=frame,
    )


def log_benchmarks(
    client: MlflowClient, run_id: str, tasks: Tasks, world: np.ndarray | None = None
) -> None:
    """Log what the benchmark stage logs for these results: per task `bench/<task>/acc` and its
    stderr, the summary row and the items; `world` as the perplexity's items and metric."""
    rows, metrics = [], {}
    for task, (role, values) in tasks.items():
        series = items_of(task, values)
        value, stderr = float(series.mean()), float(series.std(ddof=1) / np.sqrt(len(series)))
        rows.append({"task": task, "role": role, "metric": "acc", "value": value,
                     "stderr": stderr, "items": len(series)})  # fmt: skip
        metrics[contract.bench_metric(task, "acc")] = value
        metrics[contract.bench_stderr(task, "acc")] = stderr
        lines = [json.dumps({"item": k, "value": float(v)}) for k, v in series.items()]
        client.log_text(run_id, "\n".join(lines) + "\n", contract.bench_items_artifact(task))
    summary = pd.DataFrame(rows, columns=list(contract.BENCH_SUMMARY_COLUMNS))
    buffer = io.StringIO()
    summary.to_csv(buffer, index=False)
    client.log_text(run_id, buffer.getvalue(), contract.ARTIFACT_BENCH_SUMMARY)
    if world is not None:
        lines = [
            json.dumps({"item": f"doc-{k}", "nll": float(nll), "tokens": int(tokens)})
            for k, (nll, tokens) in enumerate(world)
        ]
        task = contract.BENCH_WORLD_PERPLEXITY_TASK
        client.log_text(run_id, "\n".join(lines) + "\n", contract.bench_items_artifact(task))
        metrics[contract.BENCH_WORLD_PERPLEXITY] = float(
            np.exp(world[:, 0].sum() / world[:, 1].sum())
        )
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


def base_row(client: MlflowClient, experiment_id: str, model: str = "tiny",
             weights: str = BASE_WEIGHTS) -> str:  # fmt: skip
    """A finished base row (`<model> (base)`, tag `run_kind=base`) of the weights `weights`."""
    tags = {contract.TAG_RUN_KIND: contract.RUN_KIND_BASE, contract.TAG_BASE_MODEL: weights}
    return log_run(
        client, experiment_id, f"{model} (base)", params={"model.name": model}, tags=tags
    )


def tuned_run(client: MlflowClient, experiment_id: str, method: str, data: str, *,
              weights: str = BASE_WEIGHTS, parent: str | None = None) -> str:  # fmt: skip
    """A first-stage demo run that loaded `weights` (its `base_model` tag)."""
    return demo_run(client, experiment_id, method, data, parent=parent,
                    more_tags={contract.TAG_BASE_MODEL: weights})  # fmt: skip


def chained_run(client: MlflowClient, experiment_id: str, base_run_id: str, method: str,
                data: str = "math_0.25m", parent: str | None = None) -> str:  # fmt: skip
    """A §4.5 row: `method` on `data`, started from the run `base_run_id`."""
    base_name = client.get_run(base_run_id).info.run_name
    tags = {contract.TAG_BASE_RUN_ID: base_run_id, contract.TAG_BASE_MODEL: f"model of {base_name}"}
    if parent is not None:
        tags[contract.TAG_PARENT_RUN_ID] = parent
    params = {"model.name": "tiny", "method.name": method, "data.name": data, "base_run": base_name}
    name = contract.format_run_name("tiny", method, data, base_run=base_name)
    return log_run(client, experiment_id, name, params=params, tags=tags)


def base_values() -> tuple[np.ndarray, np.ndarray]:
    """The base's retention and target item values (1 right, 0 wrong)."""
    retention = (np.arange(N_RETENTION) < BASE_RIGHT).astype(float)
    target = (np.arange(N_TARGET) < BASE_TARGET_RIGHT).astype(float)
    return retention, target


def planted_results(lost: int, gained: int, seed: int) -> dict:
    """The base's results with `lost` of its right retention items wrong and `gained` of its
    wrong target items right, which ones drawn with `seed` (two runs differ item by item)."""
    retention, target = base_values()
    rng = np.random.default_rng(seed)
    retention[rng.choice(BASE_RIGHT, lost, replace=False)] = 0
    wrong = N_TARGET - BASE_TARGET_RIGHT
    target[BASE_TARGET_RIGHT + rng.choice(wrong, gained, replace=False)] = 1
    role = contract.BENCH_ROLE_RETENTION, contract.BENCH_ROLE_TARGET
    return {RETENTION_TASK: (role[0], retention), TARGET_TASK: (role[1], target)}
