"""Learning rates across methods, from a tidy run table (`runs.load_runs`, `runs.run_frame`):
which learning rate a search picks on the development split, and which comparisons put two
methods at one learning rate that is unusual for one of them.

A fair comparison gives each method its own learning rate (FT's is tens of times LoRA's), so
`experiment=lr_search` trains each method at a few learning rates on a small data size, holding
out a development split of the training data (`data.dev_fraction`), and `best_learning_rates`
picks per method the one of the lowest `dev/loss`: never a score on the eval set.
"""

from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from lorabench import contract
from lorabench.analysis.runs import AnalysisError, parse_run_name
from lorabench.identity import AXIS_ALIASES

COMPARED_WITHIN = ("base_model", "data", "base_run")
"""Runs are compared with each other within one base model, data scale and base run."""
LEARNING_RATE_AXIS = AXIS_ALIASES["method.learning_rate"]
"""The learning rate's name in a run name's `[...]` axes."""


def candidates_name(run_name: str) -> str:
    """The run name without its learning rate: equal for the runs a search compares
    (`tiny+lora(0.6m)[dev=0.05,lr=0.001]` → `tiny+lora(0.6m)[dev=0.05]`)."""
    parts = parse_run_name(run_name)
    if not parts:
        return run_name
    axes = dict(a.split("=", 1) for a in parts.get("axes", "").split(",") if "=" in a)
    axes.pop(LEARNING_RATE_AXIS, None)
    chain = parts.get("chain")
    base_run = f"{parts['model']}+{chain}" if chain else None
    return contract.format_run_name(parts["model"], parts["method"], parts["data"], base_run, axes)


def best_learning_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Per group of runs that differ only in their learning rate (`candidates_name`), the run
    of the lowest development loss: columns `candidates`, `method`, `learning_rate`,
    `dev_loss`, `run_name`, `tried` (how many learning rates were compared), sorted by
    `candidates`.

    Raises AnalysisError when no run has both a learning rate and a development loss.
    """
    scored = runs[runs["dev_loss"].notna() & runs["learning_rate"].notna()]
    if scored.empty:
        raise AnalysisError(
            f"no run has a {contract.DEV_LOSS} metric: train with data.dev_fraction > 0 "
            "(experiment=lr_search holds out a development split)"
        )
    groups = scored.assign(candidates=scored["run_name"].map(candidates_name))
    rows = []
    for name, group in groups.groupby("candidates", sort=False):
        best = group.loc[group["dev_loss"].idxmin()]
        rows.append(
            {
                "candidates": name,
                "method": best["method"],
                "learning_rate": best["learning_rate"],
                "dev_loss": best["dev_loss"],
                "run_name": best["run_name"],
                "tried": group["learning_rate"].nunique(),
            }
        )
    return pd.DataFrame(rows).sort_values("candidates", ignore_index=True)


def _outside(run) -> bool:
    low, high = run.usual_lr_low, run.usual_lr_high
    if pd.isna(low) or pd.isna(high):
        return False  # a run that records no usual range (the paper's own) is not judged
    return not low <= run.learning_rate <= high


def shared_learning_rate_warnings(runs: pd.DataFrame) -> list[str]:
    """One warning per pair of compared runs (same base model, data, base run) of different
    methods trained at the same learning rate when it lies outside the usual range of at
    least one of them: such a comparison measures the learning rate more than the method."""
    known = runs[runs["learning_rate"].notna()]
    warnings = []
    for _, group in known.groupby(list(COMPARED_WITHIN), dropna=False, sort=False):
        for a, b in combinations(group.itertuples(index=False), 2):
            if a.method == b.method or not math.isclose(a.learning_rate, b.learning_rate):
                continue
            unusual = [r for r in (a, b) if _outside(r)]
            if not unusual:
                continue
            ranges = ", ".join(
                f"{r.method}'s usual {r.usual_lr_low:g}-{r.usual_lr_high:g}" for r in unusual
            )
            warnings.append(
                f"{a.run_name} and {b.run_name} compare {a.method} with {b.method} at one "
                f"learning rate, {a.learning_rate:g}, outside {ranges}: give each method its "
                "own (its preset's, or experiment=lr_search's pick)"
            )
    return warnings
