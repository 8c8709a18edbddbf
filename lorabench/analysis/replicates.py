"""Replicates: runs that differ only in their seeds, grouped, with a mean and an interval that
covers both seed and item variance (a hierarchical bootstrap: seeds, then items).

A replicate varies the training seed (`training.seed=1,2,3` in a sweep: run names carry
`[seed=2]`) and, optionally, the draw of the training data (`data.seed=1,2,3`, `[data_seed=2]`;
it changes which rows are drawn when `data.num_samples` is below what the sources hold).
Runs whose names agree once those axes are removed are replicates of one configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lorabench import contract
from lorabench.analysis.bootstrap import (
    category_means,
    item_draws,
    macro_average_draws,
    percentile_interval,
    replicate_draws,
)
from lorabench.analysis.items import Mismatch, score_matrices
from lorabench.config.schema import StatsConfig
from lorabench.identity import AXIS_ALIASES

REPLICATE_AXES = (AXIS_ALIASES["training.seed"], AXIS_ALIASES["data.seed"])
"""The run-name axes that make a replicate (seeds), not another configuration."""


def replicate_name(run_name: str) -> str:
    """The run name without its seed axes: `tiny+lora(2m)[seed=2,steps=6]` → `tiny+lora(2m)
    [steps=6]` (its replicates' common name)."""
    parts = contract.parse_run_name(run_name)
    if parts is None or not parts.get("axes"):
        return run_name
    kept = [a for a in parts["axes"].split(",") if a.split("=", 1)[0] not in REPLICATE_AXES]
    head = run_name[: run_name.rindex("[")]
    return head + (f"[{','.join(kept)}]" if kept else "")


@dataclass(frozen=True)
class Group:
    """The replicates of one configuration, scored by one judge on one eval set."""

    name: str
    judge: str
    eval_set: str
    run_ids: tuple[str, ...]
    run_names: tuple[str, ...]
    base_model: str | None
    method: str | None
    data: str | None
    base_run: str | None
    num_samples: float | None
    base_params: float | None = None
    """The base model's parameter count (`runs.load_runs`' `base_params`), when known."""

    @property
    def replicates(self) -> int:
        return len(self.run_ids)


def replicate_groups(runs: pd.DataFrame) -> list[Group]:
    """The evaluated runs of `runs` (the tidy table) as replicate groups, per headline judge and
    eval set, in order of appearance."""
    scored = runs[runs["evaluated"] & (runs["source"] != "paper")]
    keys = [
        (replicate_name(n), j, e)
        for n, j, e in zip(scored["run_name"], scored["judge"], scored["eval_set"], strict=True)
    ]
    groups = []
    for key in dict.fromkeys(keys):
        part = scored[[k == key for k in keys]]
        first = part.iloc[0]
        base_run = first["base_run"]
        groups.append(
            Group(
                name=key[0],
                judge=key[1],
                eval_set=key[2],
                run_ids=tuple(part["run_id"]),
                run_names=tuple(part["run_name"]),
                base_model=first["base_model"],
                method=first["method"],
                data=first["data"],
                base_run=replicate_name(base_run) if isinstance(base_run, str) else None,
                num_samples=None if pd.isna(first["num_samples"]) else first["num_samples"],
                base_params=_known_number(first.get("base_params")),
            )
        )
    return groups


def _known_number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def macro_draws(
    items: pd.DataFrame, group: Group, stats: StatsConfig, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """The group's observed macro average and its hierarchical bootstrap draws, on items
    drawn for it alone (`scaling_fit` shares one item draw between its points instead)."""
    matrices = score_matrices(items, group.run_ids, group.judge)
    samples = stats.bootstrap_samples
    return macro_average_draws(
        matrices,
        item_draws(matrices, samples, rng),
        replicate_draws(group.replicates, samples, rng),
    )


@dataclass
class ReplicateTable:
    """Replicated configurations with their intervals, and why the others have none."""

    table: pd.DataFrame
    skipped: list[str] = field(default_factory=list)


def replicate_table(items: pd.DataFrame, groups: list[Group], stats: StatsConfig) -> ReplicateTable:
    """Per group of at least 2 replicates: mean macro average, hierarchical interval, the
    spread of the replicates' own averages."""
    rng = np.random.default_rng(stats.seed)
    rows, skipped = [], []
    for group in groups:
        if group.replicates < 2:
            skipped.append(f"{group.name}: 1 replicate (a seed interval needs at least 2)")
            continue
        try:
            mean, draws = macro_draws(items, group, stats, rng)
            per_run = [
                float(np.mean(category_means(score_matrices(items, (r,), group.judge))))
                for r in group.run_ids
            ]
        except Mismatch as err:
            skipped.append(f"{group.name}: {err}")
            continue
        low, high = percentile_interval(draws, stats.level)
        rows.append(
            {
                "group": group.name,
                "judge": group.judge,
                "eval_set": group.eval_set,
                "replicates": group.replicates,
                "mean": mean,
                "ci_low": float(low),
                "ci_high": float(high),
                "replicate_sd": float(np.std(per_run, ddof=1)),
                "replicate_min": min(per_run),
                "replicate_max": max(per_run),
                "runs": ", ".join(group.run_names),
            }
        )
    return ReplicateTable(pd.DataFrame(rows, columns=REPLICATE_COLUMNS), skipped)


REPLICATE_COLUMNS = (
    "group",
    "judge",
    "eval_set",
    "replicates",
    "mean",
    "ci_low",
    "ci_high",
    "replicate_sd",
    "replicate_min",
    "replicate_max",
    "runs",
)
"""`mean` is the macro average over every replicate's items; `ci_*` the hierarchical bootstrap
interval (seeds, then items); `replicate_sd` the standard deviation of the replicates' own
macro averages."""
