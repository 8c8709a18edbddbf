"""Fitted scaling curves: average score against log(training samples), per base model and
method, with bootstrap bands; and the data size at which LoRA would match FT.

The fit is least squares, score = a + b·ln(samples) (statsmodels OLS on the points' means);
its band refits every bootstrap draw of the points, so it shows how far the points' noise
moves the curve, not how well a log-linear curve suits them (compare the points with it). A
curve needs at least as many data sizes as it has parameters (2).

Every point answered the same items, so the items are drawn once per judge and eval set and
that one draw is shared by every point there (each data size, method and base model); only a
point's replicates (seeds) are resampled on their own, as in the hierarchical bootstrap
(`bootstrap`). An item's difficulty then moves every point of a draw alike and leaves the
slope alone, as it does in the data; items drawn apart for each point would add it to each
point's noise and widen the slope's interval for nothing.

The data size at which LoRA matches FT at some size inverts LoRA's fit at FT's score there;
its interval does so in every draw, FT's point drawn on the same items as LoRA's curve. A
log-linear curve says nothing beyond the sizes it was fitted on, so a crossing outside them is
no number: where LoRA's curve stays below FT's score up to the largest fitted size (a flat or
falling curve included: it never catches up) it is beyond the fitted range, +inf samples;
where the curve is at that score already at the smallest size, it is below the range, 0. A
draw is counted the same way and stays in the percentiles, so an interval end that falls
among such draws is open (inf or 0), not a bound made up by extrapolating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from lorabench.analysis.bootstrap import (
    item_draws,
    macro_average_draws,
    order_interval,
    percentile_interval,
    replicate_draws,
)
from lorabench.analysis.items import Mismatch, score_matrices
from lorabench.analysis.replicates import Group
from lorabench.analysis.tables import format_count
from lorabench.config.schema import StatsConfig
from lorabench.contract import METHOD_FT, METHOD_LORA

PARAMETERS = 2
"""Intercept and slope of the log-linear curve."""
BAND_POINTS = 50
"""Points along a fitted curve where its band is evaluated (smooth at figure size)."""

Point = tuple[Group, float, np.ndarray]
"""A data point: its group, observed macro average and (draws,) bootstrap macro averages."""


@dataclass
class Curve:
    """One fitted curve and the draws behind its band."""

    base_model: str
    method: str
    judge: str
    eval_set: str
    log_samples: np.ndarray
    means: np.ndarray
    point_draws: np.ndarray
    """(draws × points) bootstrap macro averages of each point, on shared item draws."""
    intercept: float
    slope: float
    slope_ci: tuple[float, float]
    coef_draws: np.ndarray
    """(draws × 2) intercept and slope per draw."""

    def predict(self, log_samples: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * log_samples


@dataclass
class ScalingFits:
    """The curves fitted, crossovers found, and what could not be fitted (with why)."""

    curves: list[Curve] = field(default_factory=list)
    crossovers: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)


class SharedItems:
    """Bootstrap draws of points that share one item draw per judge and eval set (the first
    point drawn there sets the items; the others must have been scored on the same)."""

    def __init__(self, items: pd.DataFrame, stats: StatsConfig, rng: np.random.Generator):
        self.items, self.samples, self.rng = items, stats.bootstrap_samples, rng
        self.drawn: dict[tuple[str, str], tuple[str, dict[str, np.ndarray]]] = {}

    def point(self, group: Group) -> Point:
        """The group's observed macro average and its draws on the shared items (replicates
        resampled for it alone); Mismatch when it was scored on other items."""
        key = (group.judge, group.eval_set)
        if key not in self.drawn:
            first = score_matrices(self.items, group.run_ids, group.judge)
            self.drawn[key] = (group.run_ids[0], item_draws(first, self.samples, self.rng))
        reference, indices = self.drawn[key]
        # Read beside the reference run: score_matrices refuses runs on other items.
        runs = list(dict.fromkeys((reference, *group.run_ids)))
        rows = [runs.index(r) for r in group.run_ids]
        matrices = score_matrices(self.items, runs, group.judge)
        replicates = replicate_draws(group.replicates, self.samples, self.rng)
        own = {c: m[rows] for c, m in matrices.items()}
        return (group, *macro_average_draws(own, indices, replicates))


def fit_curve(log_samples: np.ndarray, means: np.ndarray, draws: np.ndarray, level: float):
    """(intercept, slope, slope interval, coefficient draws) of score on ln(samples)."""
    design = sm.add_constant(log_samples)
    ols = sm.OLS(means, design).fit()
    coefs = np.linalg.lstsq(design, draws.T, rcond=None)[0].T  # every draw at once
    low, high = percentile_interval(coefs[:, 1], level)
    return float(ols.params[0]), float(ols.params[1]), (float(low), float(high)), coefs


def scaling_fits(items: pd.DataFrame, groups: Sequence[Group], stats: StatsConfig) -> ScalingFits:
    """A curve per base model, method, judge and eval set over the single-stage groups with a
    data size, every point drawn on the items shared there (see the module doc)."""
    out = ScalingFits()
    shared = SharedItems(items, stats, np.random.default_rng(stats.seed))
    points: dict[tuple, list[Point]] = {}
    for key, members in _curve_members(groups).items():
        label = f"{key[0]} {key[1]} ({key[2]} on {key[3]})"
        try:
            points[key] = [shared.point(g) for g in members]
        except Mismatch as err:
            out.skipped.append(f"{label}: {err}")
            continue
        sizes = {g.num_samples for g in members}
        if len(sizes) < PARAMETERS:
            out.skipped.append(
                f"{label}: {len(sizes)} data size(s), fewer than the curve's {PARAMETERS} "
                "parameters: no fit"
            )
            continue
        out.curves.append(_curve(key, points[key], stats.level))
    out.crossovers = crossovers(out.curves, points, stats.level)
    return out


def _curve_members(groups: Sequence[Group]) -> dict[tuple, list[Group]]:
    """The single-stage groups with a data size, by curve (in order of appearance), each
    curve's in order of size."""
    members: dict[tuple, list[Group]] = {}
    for g in groups:
        if g.base_run is None and g.num_samples:
            members.setdefault((g.base_model, g.method, g.judge, g.eval_set), []).append(g)
    return {key: sorted(gs, key=lambda g: g.num_samples) for key, gs in members.items()}


def _curve(key: tuple, points: list[Point], level: float) -> Curve:
    xs = np.log([g.num_samples for g, _, _ in points])
    means = np.array([m for _, m, _ in points])
    draws = np.stack([d for _, _, d in points], axis=1)
    return Curve(*key, xs, means, draws, *fit_curve(xs, means, draws, level))


def crossovers(curves: Sequence[Curve], points: dict, level: float) -> pd.DataFrame:
    """Per FT point, the data size at which the LoRA curve of its base model, judge and eval
    set reaches it (CROSSOVER_COLUMNS); `points` by (base model, method, judge, eval set)."""
    rows = []
    for curve in curves:
        if curve.method == METHOD_LORA:
            ft = points.get((curve.base_model, METHOD_FT, curve.judge, curve.eval_set), [])
            rows += [_crossover(curve, *point, level) for point in ft]
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)


def reach(
    intercept: ArrayLike, slope: ArrayLike, score: ArrayLike, low: float, high: float
) -> np.ndarray:
    """Where a + b·x first reaches `score` within [low, high] (elementwise): -inf when it is
    there already at `low`, +inf when it stays below it up to `high` (so always for a flat or
    falling line that starts below it)."""
    intercept, slope, score = np.broadcast_arrays(intercept, slope, score)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (score - intercept) / slope  # slope > 0 wherever it is used
    return np.select(
        [intercept + slope * low >= score, intercept + slope * high < score],
        [-np.inf, np.inf],
        inside,
    )


def _crossover(curve: Curve, ft: Group, mean: float, draws: np.ndarray, level: float) -> dict:
    fitted = (curve.log_samples.min(), curve.log_samples.max())
    x = reach(curve.intercept, curve.slope, mean, *fitted)
    per_draw = reach(curve.coef_draws[:, 0], curve.coef_draws[:, 1], draws, *fitted)
    low, high = np.exp(order_interval(per_draw, level))
    return {
        "base_model": curve.base_model,
        "judge": curve.judge,
        "eval_set": curve.eval_set,
        "ft": ft.name,
        "ft_samples": ft.num_samples,
        "ft_score": mean,
        "lora_samples": float(np.exp(x)),
        "ci_low": float(low),
        "ci_high": float(high),
        "note": _note(float(x), (float(low), float(high)), curve.slope, fitted),
    }


def _note(x: float, interval: tuple[float, float], slope: float, fitted: tuple) -> str:
    """Words for what is not a number: an estimate or interval end outside the fitted range."""
    where = f"LoRA fitted on {_count(fitted[0])}–{_count(fitted[1])} samples"
    if x == np.inf:
        why = "does not rise with data, it never catches up" if slope <= 0 else "stays below it"
        return f"not within the fitted range: LoRA's curve {why} ({where})"
    if x == -np.inf:
        return f"not within the fitted range: LoRA's curve is above it already ({where})"
    ends = []
    if interval[0] == 0:
        ends.append("lower end open: below the fitted range")
    if interval[1] == np.inf:
        ends.append("upper end open: beyond the fitted range, LoRA may never reach it")
    return "; ".join([*ends, where]) if ends else ""


def _count(log_samples: float) -> str:
    return format_count(float(np.round(np.exp(log_samples))))  # exp(ln 1000) is 999.99...


CROSSOVER_COLUMNS = (
    "base_model",
    "judge",
    "eval_set",
    "ft",
    "ft_samples",
    "ft_score",
    "lora_samples",
    "ci_low",
    "ci_high",
    "note",
)
"""`lora_samples`: where LoRA's curve reaches FT's score `ft_score` at `ft_samples`, with the
bootstrap interval `ci_*` (LoRA's curve and FT's point drawn on the same items). Outside the
sizes LoRA was fitted on there is no number: inf is beyond the largest (never within this
data, a flat or falling curve included), 0 below the smallest (LoRA's curve is there already);
an interval end at inf or 0 is open. `note` says so in words."""


def plot_scaling_fits(fits: ScalingFits, level: float, title: str) -> Figure:
    """One panel per base model: each method's points (mean over replicates, hierarchical
    interval), its fitted curve and bootstrap band over the fitted data sizes."""
    from lorabench.analysis.figures import _count_ticks, _method_color, _method_label

    models = list(dict.fromkeys(c.base_model for c in fits.curves))
    fig = Figure(figsize=(4.6 * len(models) + 0.6, 4.6), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        for curve in (c for c in fits.curves if c.base_model == model):
            color = _method_color(curve.method)
            grid = np.linspace(curve.log_samples.min(), curve.log_samples.max(), BAND_POINTS)
            band = curve.coef_draws[:, :1] + curve.coef_draws[:, 1:] * grid
            low, high = percentile_interval(band, level)
            ax.fill_between(np.exp(grid), low, high, color=color, alpha=0.2, linewidth=0)
            label = f"{_method_label(curve.method)}: {curve.slope:+.3f} per ln(samples)"
            ax.plot(np.exp(grid), curve.predict(grid), color=color, label=label)
            p_low, p_high = percentile_interval(curve.point_draws, level)
            ax.errorbar(
                np.exp(curve.log_samples),
                curve.means,
                yerr=[curve.means - p_low, p_high - curve.means],
                fmt="o",
                color=color,
                capsize=3,
            )
        ax.set_xscale("log")
        _count_ticks(ax, [np.exp(c.log_samples) for c in fits.curves if c.base_model == model])
        ax.set_title(str(model), fontsize=11)
        ax.set_xlabel("Training samples (log scale)")
        ax.set_ylabel("Average score (mean over replicates)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{title}\nfitted score = a + b·ln(samples), {level:.0%} bootstrap bands", fontsize=11
    )
    return fig
