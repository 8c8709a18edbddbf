"""Judge agreement, for runs scored by several judges (every judge's scores are kept:
`eval/judges/<judge>/`): per category and judge pair, the rank correlation of item scores
(Spearman, scipy), Krippendorff's alpha on the scores (interval level, the `krippendorff`
package) and the mean offset; whether each paired comparison keeps its sign under every judge;
and, from `judge.repeats`, each judge's agreement with itself.

No number mixes judges: each is computed on the items both judges scored.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from lorabench.analysis.items import Mismatch
from lorabench.analysis.paired import compare
from lorabench.analysis.replicates import Group
from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES

ALL = "all"
"""The row over every category."""
MIN_UNITS = 3
"""Fewest items two judges must share for a correlation or an alpha to mean anything."""
ALPHA_RESOLUTION = 0.01
"""Scores are rounded to this step for Krippendorff's alpha: its cost grows with the square of
the distinct values, an LLM judge's scores lie on a 0.1 grid anyway, and F1 differences below
0.01 say nothing about agreement."""


def alpha(values: np.ndarray) -> float:
    """Krippendorff's alpha (interval) of a (raters × units) array, NaN where undefined (fewer
    than 2 distinct values: no variation to agree on)."""
    values = np.round(values / ALPHA_RESOLUTION) * ALPHA_RESOLUTION
    domain = np.unique(values[~np.isnan(values)])
    if len(domain) < 2:
        return float("nan")
    return float(
        krippendorff.alpha(
            reliability_data=values, value_domain=domain, level_of_measurement="interval"
        )
    )


def _pair_stats(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    both = ~np.isnan(first) & ~np.isnan(second)
    x, y = first[both], second[both]
    varied = len(np.unique(x)) > 1 and len(np.unique(y)) > 1
    return {
        "items": int(both.sum()),
        "spearman": float(spearmanr(x, y).statistic) if varied else float("nan"),
        "alpha": alpha(np.stack([x, y])),
        "mean_offset": float(np.mean(y - x)),
    }


@dataclass
class Agreement:
    """Judge-pair agreement, sign stability, self-agreement (repeats), and what was skipped."""

    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    signs: pd.DataFrame = field(default_factory=pd.DataFrame)
    repeats: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


def judge_pairs(items: pd.DataFrame) -> pd.DataFrame:
    """Per judge pair and category (and `all`): items both scored (over every run both judged),
    Spearman correlation, Krippendorff's alpha, mean offset (second − first)."""
    first = items[items["repeat"] == 0]
    wide = first.pivot_table(
        index=["run_id", "item", "category"], columns="judge", values="score", dropna=False
    )
    rows = []
    for j1, j2 in itertools.combinations(sorted(wide.columns), 2):
        shared = wide[[j1, j2]].dropna(how="any")
        if len(shared) < MIN_UNITS:
            continue
        cats = shared.index.get_level_values("category")
        for category in (*CATEGORIES, ALL):
            part = shared if category == ALL else shared[cats == category]
            if len(part) >= MIN_UNITS:
                stats = _pair_stats(part[j1].to_numpy(), part[j2].to_numpy())
                rows.append({"first": j1, "second": j2, "category": category, **stats})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


PAIR_COLUMNS = ("first", "second", "category", "items", "spearman", "alpha", "mean_offset")


def sign_stability(
    items: pd.DataFrame, comparisons: pd.DataFrame, groups: Sequence[Group], stats: StatsConfig
) -> pd.DataFrame:
    """Each comparison's difference under every judge that scored all its runs, and whether
    its sign is the same under all of them."""
    by_name = {(g.name, g.judge): g for g in groups}
    judges = sorted(items["judge"].unique())
    rng = np.random.default_rng(stats.seed)
    rows = []
    for row in comparisons.itertuples(index=False):
        a, b = by_name.get((row.a, row.judge)), by_name.get((row.b, row.judge))
        if a is None or b is None:
            continue
        diffs = {}
        for judge in judges:
            try:
                result = compare(
                    items, replace(a, judge=judge), replace(b, judge=judge), stats, rng
                )
            except Mismatch:
                continue  # this judge did not score all of the pair's runs
            diffs[judge] = result.diff
        if len(diffs) >= 2:
            signs = {np.sign(d) for d in diffs.values()}
            rows.append(
                {
                    "a": row.a,
                    "b": row.b,
                    **{f"diff [{j}]": d for j, d in diffs.items()},
                    "stable": len(signs) == 1 and 0 not in signs,
                }
            )
    return pd.DataFrame(rows)


def repeat_agreement(items: pd.DataFrame) -> pd.DataFrame:
    """Per judge with repeats: Krippendorff's alpha over its repeats, the share of items whose
    score changed between repeats, the mean absolute change, and its temperature."""
    rows = []
    for judge, part in items.groupby("judge"):
        if part["repeat"].max() < 1:
            continue
        wide = part.pivot_table(index=["run_id", "item"], columns="repeat", values="score")
        values = wide.to_numpy().T  # repeats × items
        change = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
        temperatures = part["temperature"].dropna().unique()
        rows.append(
            {
                "judge": judge,
                "repeats": values.shape[0],
                "items": values.shape[1],
                "alpha": alpha(values),
                "changed_share": float(np.mean(change > 0)),
                "mean_abs_change": float(np.nanmean(np.abs(values[1:] - values[0]))),
                "temperature": float(temperatures[0]) if len(temperatures) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def agreement(
    items: pd.DataFrame, comparisons: pd.DataFrame, groups: Sequence[Group], stats: StatsConfig
) -> Agreement:
    """Everything above; a skipped note when no run was scored by two judges."""
    out = Agreement(repeats=repeat_agreement(items))
    judged = items[items["repeat"] == 0].groupby("run_id")["judge"].nunique()
    if not (judged >= 2).any():
        out.skipped.append(
            "no run was scored by two judges: judge runs again with another judge "
            "(python evaluate.py run=<run> judge=...) to compare judges"
        )
        return out
    out.pairs = judge_pairs(items)
    if len(comparisons):
        out.signs = sign_stability(items, comparisons, groups, stats)
    return out
