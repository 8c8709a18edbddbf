"""Aggregating judge scores as the paper does: per-category means, their macro average over the
9 categories, and bootstrap intervals for that average and for each category's mean.

Items that could not be judged (score None) are excluded from the means and counted, never
scored 0.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lorabench import contract
from lorabench.evaluation.eval_set import CATEGORIES

if TYPE_CHECKING:
    from lorabench.judging import Judgement


@dataclass(frozen=True)
class Aggregate:
    """Scores of one evaluation."""

    category_means: dict[str, float]
    """Mean score per category, over the items that were judged."""
    average: float | None
    """Macro average of the 9 category means; None when a category has no judged item."""
    ci_low: float | None
    ci_high: float | None
    judged: int
    unjudged: int
    missing_categories: tuple[str, ...]
    """Categories with no judged item, which make the macro average undefined."""
    category_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """95% bootstrap interval of each judged category's mean."""


def macro_average(category_means: Mapping[str, float]) -> float:
    """The unweighted mean over the 9 categories (Table 4's "Average Score")."""
    missing = [c for c in CATEGORIES if c not in category_means]
    if missing:
        raise ValueError(f"no score for categories {missing}")
    return sum(category_means[c] for c in CATEGORIES) / len(CATEGORIES)


def _by_category(scored: Iterable[tuple[str, float | None]]) -> tuple[dict[str, list[float]], int]:
    groups: dict[str, list[float]] = defaultdict(list)
    unjudged = 0
    for category, score in scored:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        if score is None:
            unjudged += 1
        else:
            groups[category].append(score)
    return groups, unjudged


def bootstrap_interval(
    groups: Mapping[str, list[float]], *, samples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the macro average, resampling items within each category."""
    rng = random.Random(seed)
    averages = sorted(
        sum(sum(rng.choices(groups[c], k=len(groups[c]))) / len(groups[c]) for c in CATEGORIES)
        / len(CATEGORIES)
        for _ in range(samples)
    )
    tail = (1 - level) / 2
    return averages[int(tail * (samples - 1))], averages[int((1 - tail) * (samples - 1))]


def category_interval(
    scores: list[float], *, samples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of one category's mean, resampling its items."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(scores, k=len(scores))) / len(scores) for _ in range(samples))
    tail = (1 - level) / 2
    return means[int(tail * (samples - 1))], means[int((1 - tail) * (samples - 1))]


def aggregate(
    scored: Iterable[tuple[str, float | None]], *, bootstrap_samples: int = 1000, seed: int = 0
) -> Aggregate:
    """Aggregate (category, score-or-None) pairs into category means and the macro average."""
    groups, unjudged = _by_category(scored)
    means = {c: sum(v) / len(v) for c, v in groups.items()}
    missing = tuple(c for c in CATEGORIES if c not in groups)
    average = ci_low = ci_high = None
    if not missing:
        average = macro_average(means)
        ci_low, ci_high = bootstrap_interval(groups, samples=bootstrap_samples, seed=seed)
    return Aggregate(
        category_means={c: means[c] for c in CATEGORIES if c in means},
        average=average,
        ci_low=ci_low,
        ci_high=ci_high,
        judged=sum(len(v) for v in groups.values()),
        unjudged=unjudged,
        missing_categories=missing,
        category_intervals={
            c: category_interval(groups[c], samples=bootstrap_samples, seed=seed)
            for c in CATEGORIES
            if c in groups
        },
    )


def aggregate_metrics(agg: Aggregate) -> dict[str, float]:
    """The MLflow metrics of an aggregate (`eval/score/<category>` and its interval,
    `eval/average_score`, …).

    An undefined average is left out rather than logged as a number.
    """
    metrics = {contract.eval_score(c): v for c, v in agg.category_means.items()}
    for c, (low, high) in agg.category_intervals.items():
        metrics[contract.eval_score_ci_low(c)] = low
        metrics[contract.eval_score_ci_high(c)] = high
    metrics[contract.EVAL_JUDGED_ITEMS] = agg.judged
    metrics[contract.EVAL_UNJUDGED_ITEMS] = agg.unjudged
    if agg.average is not None:
        metrics[contract.EVAL_AVERAGE_SCORE] = agg.average
        metrics[contract.EVAL_AVERAGE_SCORE_CI_LOW] = agg.ci_low
        metrics[contract.EVAL_AVERAGE_SCORE_CI_HIGH] = agg.ci_high
    return metrics


def evaluation_metrics(
    agg: Aggregate, judgements: Iterable[Judgement], truncated_categories: Iterable[str]
) -> dict[str, float]:
    """The aggregate's metrics plus, per category, the replies no score could be read from and
    the answers cut at `max_new_tokens` (every category is logged, zeros included, so a 0 is a
    count and never a missing value)."""
    failures = Counter(j.category for j in judgements if j.status == "parse_failure")
    truncated = Counter(truncated_categories)
    metrics = aggregate_metrics(agg)
    metrics[contract.EVAL_TRUNCATED_ANSWERS] = sum(truncated.values())
    for category in CATEGORIES:
        metrics[contract.eval_parse_failures(category)] = failures[category]
        metrics[contract.eval_truncated(category)] = truncated[category]
    return metrics
