"""Aggregation: the paper's appendix rows give Table 4's averages; failures never count as 0."""

from __future__ import annotations

import pytest

from lorabench.analysis.reference import appendix_scores, table4
from lorabench.evaluation.eval_set import CATEGORIES
from lorabench.evaluation.scoring import aggregate, aggregate_metrics, macro_average


@pytest.mark.parametrize("row", table4(), ids=lambda r: r["run"])
def test_appendix_rows_reproduce_table_4_averages(row: dict[str, str]) -> None:
    scores = appendix_scores()[row["run"]]
    assert macro_average(scores) == pytest.approx(float(row["average_score"]), abs=0.001)


def test_unjudged_items_are_excluded_not_zero() -> None:
    scored = [(c, 1.0) for c in CATEGORIES] + [("others", None), ("rewrite", 0.5)]
    agg = aggregate(scored, bootstrap_samples=50)
    assert agg.category_means["others"] == 1.0 and agg.category_means["rewrite"] == 0.75
    assert (agg.judged, agg.unjudged) == (10, 1)
    assert agg.average == pytest.approx((8 + 0.75) / 9)


def test_a_category_without_judged_items_leaves_the_average_undefined() -> None:
    scored = [(c, 0.5) for c in CATEGORIES if c != "closed_qa"] + [("closed_qa", None)]
    agg = aggregate(scored)
    assert agg.average is None and agg.missing_categories == ("closed_qa",)
    metrics = aggregate_metrics(agg)
    assert "eval/average_score" not in metrics and "eval/score/closed_qa" not in metrics
    assert metrics["eval/unjudged_items"] == 1


def test_bootstrap_interval_brackets_the_average_and_is_seeded() -> None:
    scored = [(c, s) for c in CATEGORIES for s in (0.2, 0.5, 0.9, 1.0)]
    agg = aggregate(scored, seed=3)
    assert agg.ci_low < agg.average < agg.ci_high
    assert aggregate(scored, seed=3).ci_low == agg.ci_low
    metrics = aggregate_metrics(agg)
    assert set(metrics) >= {f"eval/score/{c}" for c in CATEGORIES} | {
        "eval/average_score",
        "eval/average_score_ci_low",
        "eval/average_score_ci_high",
    }
