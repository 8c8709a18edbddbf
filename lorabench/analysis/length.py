"""Length diagnostics: judges favour long answers. Per category, the slope of item score on
ln(1 + answer length in characters), with a fixed effect per run (statsmodels OLS: the slope
is how score moves with length within a run, not which run writes longer); and per run a
length-adjusted average: each category's mean moved along that slope to the category's median
answer length, averaged over the 9 categories, beside the plain average (in the spirit of
AlpacaEval's length-controlled win rate).

The same items recur in every run, and an item's difficulty and its answers' length go
together across runs, so the runs' rows are not independent: the slope's standard error is
clustered by item (statsmodels' cluster-robust sandwich with its small-sample factor
G/(G−1)·(N−1)/(N−K)), and its interval and p-value use Student's t with G−1 degrees of
freedom (G items), since a category holds few items (5 in the demo eval set).

The median is taken over every answer the section's runs gave in that category, so each run
is adjusted to the same length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES


@dataclass
class LengthDiagnostics:
    """Slopes per category, averages per run, and the categories that could not be fitted."""

    slopes: pd.DataFrame = field(default_factory=pd.DataFrame)
    averages: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


def _slope_row(cat: pd.DataFrame, runs: int, level: float) -> dict:
    """The length slope of one category's rows (`score`, `log_length`, `run_id`, `item`): a
    level per run, the standard error clustered by item (see the module doc)."""
    formula = "score ~ log_length" + (" + C(run_id)" if runs > 1 else "")
    fit = smf.ols(formula, data=cat).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(cat["item"])[0]}, use_t=True
    )
    low, high = fit.conf_int(alpha=1 - level).loc["log_length"]
    return {
        "items": len(cat),
        "slope": float(fit.params["log_length"]),
        "se": float(fit.bse["log_length"]),
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(fit.pvalues["log_length"]),
        "median_length": float(cat["answer_length"].median()),
    }


def length_diagnostics(items: pd.DataFrame, judge: str, stats: StatsConfig) -> LengthDiagnostics:
    """The diagnostics of `judge`'s first judgements of the runs in `items`."""
    part = items[(items["judge"] == judge) & (items["repeat"] == 0)].dropna(subset=["score"])
    part = part.assign(log_length=np.log1p(part["answer_length"]))
    out = LengthDiagnostics()
    slopes, adjusted, plain = [], {}, {}
    for category in CATEGORIES:
        cat = part[part["category"] == category]
        runs = cat["run_id"].nunique()
        by_run = cat.groupby("run_id")
        if cat["score"].nunique() == 1 and len(cat):
            # One score for every answer: it cannot depend on length, so the adjusted mean
            # is the plain one (a fit would only return a degenerate zero slope).
            out.skipped.append(f"{category}: every score is {cat['score'].iloc[0]:g}, no slope")
            plain[category] = adjusted[category] = by_run["score"].mean()
            continue
        if cat["log_length"].nunique() < 2:
            out.skipped.append(f"{category}: every answer has one length, no slope to fit")
            continue
        if len(cat) <= runs + 1:
            out.skipped.append(
                f"{category}: {len(cat)} scored items over {runs} run(s), too few to fit a "
                "slope beside a level per run"
            )
            continue
        if cat["item"].nunique() < 2:
            out.skipped.append(f"{category}: one item, no standard error clustered by item")
            continue
        row = _slope_row(cat, runs, stats.level)
        slopes.append({"category": category, **row})
        slope = row["slope"]
        target = np.log1p(row["median_length"])
        plain[category] = by_run["score"].mean()
        adjusted[category] = plain[category] + slope * (target - by_run["log_length"].mean())
    out.slopes = pd.DataFrame(slopes)
    if len(adjusted) == len(CATEGORIES):
        out.averages = (
            pd.DataFrame(
                {
                    "average_score": pd.DataFrame(plain).mean(axis=1),
                    "length_adjusted": pd.DataFrame(adjusted).mean(axis=1),
                    "mean_length": part.groupby("run_id")["answer_length"].mean(),
                }
            )
            .rename_axis("run_id")
            .reset_index()
        )
    elif adjusted:
        out.skipped.append("no length-adjusted average: not every category has a slope")
    return out
