"""Paired comparisons (lorabench.analysis.paired): an item either side could not score is dropped
for both and counted, the paper's §4.5 pair (chained LoRA vs chained FT) is one of the paper's
comparisons, and a difference is tested against a margin as well as against 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lorabench.analysis.paired import (
    INCREMENTAL_LORA_VS_FT,
    compare,
    comparison_table,
    difference,
)
from lorabench.analysis.replicates import replicate_groups
from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.stats import item_table, runs_table, scored_items

FAST = StatsConfig(bootstrap_samples=300)
ITEMS = item_table(per_category=10)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    specs = [
        {"run_name": "tiny+lora(2m)", "method": "lora", "data": "2m", "run_id": "a"},
        {"run_name": "tiny+ft(2m)", "method": "ft", "data": "2m", "run_id": "b"},
    ]
    items = pd.concat([scored_items("a", a, ITEMS), scored_items("b", b, ITEMS)])
    return runs_table(specs), items


def test_items_one_side_could_not_score_are_dropped_for_both_and_counted() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.2, 0.6, len(ITEMS))
    b = rng.uniform(0.2, 0.6, len(ITEMS))
    unscored = np.isin(ITEMS["item"], ["i0", "i1", "i10"])  # 2 of `others`, 1 of `rewrite`
    a[unscored], b[unscored] = np.nan, 1.0  # B's best items: they would raise B alone
    runs, items = _pair(a, b)
    result = compare(items, *replicate_groups(runs), FAST)
    assert (result.items, result.dropped) == (len(ITEMS) - 3, 3)
    assert result.category_dropped.tolist() == [2, 1] + [0] * 7
    kept = ~unscored
    cats = ITEMS["category"].to_numpy()
    expected = np.mean([a[kept & (cats == c)].mean() - b[kept & (cats == c)].mean()
                        for c in CATEGORIES])  # fmt: skip
    assert result.diff == pytest.approx(expected)
    row = comparison_table(items, replicate_groups(runs), FAST).table.iloc[0]
    assert (row["items"], row["dropped"]) == (len(ITEMS) - 3, 3)


def test_a_category_no_item_of_which_both_scored_is_a_mismatch() -> None:
    a = np.full(len(ITEMS), 0.5)
    a[ITEMS["category"].to_numpy() == "others"] = np.nan
    runs, items = _pair(a, np.full(len(ITEMS), 0.5))
    table = comparison_table(items, replicate_groups(runs), FAST)
    assert table.table.empty and "no item of categories others is scored" in table.skipped[0]


def _chained(base: str, data: str, method: str, run_id: str) -> dict:
    return {"run_name": f"{base}+{method}({data})", "method": method, "data": data,
            "base_run": base, "run_id": run_id}  # fmt: skip


def test_the_papers_incremental_pair_is_one_of_its_comparisons() -> None:
    specs = [
        {"run_name": "tiny+ft(2m)", "method": "ft", "data": "2m", "run_id": "base"},
        _chained("tiny+ft(2m)", "math_0.25m", "lora", "lora"),
        _chained("tiny+ft(2m)", "math_0.25m", "ft", "ft"),
        _chained("tiny+ft(2m)", "0.6m", "ft", "other-data"),  # no LoRA on this data
        _chained("tiny+lora(2m)", "math_0.25m", "ft", "other-base"),  # another base run
    ]
    rng = np.random.default_rng(2)
    items = pd.concat(
        [scored_items(s["run_id"], rng.uniform(0, 1, len(ITEMS)), ITEMS) for s in specs]
    )
    table = comparison_table(items, replicate_groups(runs_table(specs)), FAST).table
    incremental = table[table["comparison"] == INCREMENTAL_LORA_VS_FT]
    assert incremental[["a", "b"]].values.tolist() == [
        ["tiny+ft(2m)+lora(math_0.25m)", "tiny+ft(2m)+ft(math_0.25m)"]
    ]
    # Each chained run against its base run stays a comparison of its own.
    assert (table["comparison"] == "increment vs its base").sum() == 3


def test_a_difference_is_tested_against_a_margin_on_one_category() -> None:
    rng = np.random.default_rng(3)
    level = rng.uniform(0.2, 0.8, len(ITEMS))
    runs, items = _pair(level - 0.01 + rng.normal(0, 0.005, len(ITEMS)), level)
    result = compare(items, *replicate_groups(runs), FAST)
    against_zero = difference(result, 0.95, "others")
    against_margin = difference(result, 0.95, "others", null=-0.05)
    assert against_zero.diff == pytest.approx(-0.01, abs=0.005)
    assert against_zero.items == 10 and against_zero.ci_high < 0 and against_zero.p < 0.01
    assert against_margin.p < 0.01 and against_margin.ci_low > -0.05
    macro = difference(result, 0.95)
    assert macro.p == pytest.approx(result.p) and macro.items == len(ITEMS)
