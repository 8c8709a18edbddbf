"""lm-eval's results as the contract's names: `bench/<task>/<metric>` metrics with their
standard errors, a summary row per task (its primary metric) and per-item values.

lm-eval keys a metric `<metric>,<filter>`; the contract's metric name drops the default filter
(`acc,none` → `acc`) and joins any other with `_` (`exact_match,strict-match` →
`exact_match_strict-match`). A task's primary metric is the first its results list: the first
of its `metric_list` (a group's `aggregate_metric_list`) under its first filter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lorabench import contract

DEFAULT_FILTER = "none"
STDERR = "_stderr"
NOT_A_METRIC = ("alias", "name", "sample_len", "samples")


@dataclass(frozen=True)
class TaskScore:
    """One task's (or group's) scores as lm-eval reported them."""

    task: str
    metrics: dict[str, float]
    """Contract metric name (`acc`, `exact_match_strict-match`) → value."""
    stderrs: dict[str, float]
    """The same names → standard error, where lm-eval computed one (never a stand-in)."""
    primary: str
    primary_key: tuple[str, str]
    """lm-eval's (metric, filter) of the primary metric."""


def metric_name(metric: str, filter_name: str) -> str:
    """The contract's name of lm-eval's `<metric>,<filter>`."""
    return metric if filter_name == DEFAULT_FILTER else f"{metric}_{filter_name}"


def _number(value: Any) -> float | None:
    # lm-eval writes "N/A" where it has no standard error.
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def task_score(task: str, reported: Mapping[str, Any]) -> TaskScore:
    """A task's `results[task]` as contract names; raises ValueError when it holds no metric."""
    metrics, stderrs, keys = {}, {}, []
    for key, value in reported.items():
        metric, _, filter_name = key.partition(",")
        if not filter_name or metric in NOT_A_METRIC or metric.endswith(STDERR):
            continue
        if (number := _number(value)) is None:
            continue
        name = metric_name(metric, filter_name)
        metrics[name] = number
        keys.append((metric, filter_name))
        stderr = _number(reported.get(f"{metric}{STDERR},{filter_name}"))
        if stderr is not None:
            stderrs[name] = stderr
    if not keys:
        raise ValueError(f"lm-eval reported no metric for {task}: {dict(reported)}")
    return TaskScore(task, metrics, stderrs, metric_name(*keys[0]), keys[0])


def run_metrics(scores: Iterable[TaskScore]) -> dict[str, float]:
    """Every score and standard error as `bench/<task>/<metric>[_stderr]`."""
    logged = {}
    for score in scores:
        for name, value in score.metrics.items():
            logged[contract.bench_metric(score.task, name)] = value
            if name in score.stderrs:
                logged[contract.bench_stderr(score.task, name)] = score.stderrs[name]
    return logged


def item_key(doc: Mapping[str, Any], doc_hash: str | None) -> str:
    """A doc's stable key: its `id` field, else lm-eval's hash of the doc (or our own)."""
    if "id" in doc:
        return str(doc["id"])
    if doc_hash:
        return doc_hash
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def item_values(
    score: TaskScore, samples: Mapping[str, list[dict]], leaves: list[str]
) -> list[dict[str, Any]]:
    """`{"item", "value"}` of the primary metric per doc of the task's leaf tasks (a group's
    items prefixed with their task: `ceval-valid_law/12`)."""
    metric, filter_name = score.primary_key
    rows = []
    for leaf in leaves:
        prefix = "" if leaf == score.task else f"{leaf}/"
        for sample in samples.get(leaf, []):
            if sample.get("filter", DEFAULT_FILTER) != filter_name or metric not in sample:
                continue
            key = item_key(sample["doc"], sample.get("doc_hash"))
            rows.append({"item": prefix + key, "value": float(sample[metric])})
    return rows


def summary_row(score: TaskScore, role: str, items: int) -> dict[str, Any]:
    """The task's row of `benchmarks/summary.csv` (`contract.BENCH_SUMMARY_COLUMNS`)."""
    return {
        "task": score.task,
        "role": role,
        "metric": score.primary,
        "value": score.metrics[score.primary],
        "stderr": score.stderrs.get(score.primary, ""),
        "items": items,
    }
