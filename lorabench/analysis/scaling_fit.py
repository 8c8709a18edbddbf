"""Fitted scaling curves: average score against log(training samples), per base model and
method, with bootstrap bands; and the data size at which LoRA would match FT.

The fit is least squares, score = a + b·ln(samples) (statsmodels OLS on the points' means);
its band refits every bootstrap draw of the points (each point drawn hierarchically over its
replicates and items, `replicates.macro_draws`), so it shows how far the points' noise
moves the curve, not how well a log-linear curve suits them (compare the points with it). A
curve needs at least as many data sizes as
it has parameters (2). The data size at which LoRA matches FT at some size inverts LoRA's
fit at FT's score there (per draw, for the interval); outside the sizes LoRA was fitted on it
is "not within the fitted range", since a log-linear curve says nothing beyond its data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from matplotlib.figure import Figure

from lorabench.analysis.bootstrap import percentile_interval
from lorabench.analysis.items import Mismatch
from lorabench.analysis.paired import FT, LORA
from lorabench.analysis.replicates import Group, macro_draws
from lorabench.analysis.tables import format_count
from lorabench.config.schema import StatsConfig

PARAMETERS = 2
"""Intercept and slope of the log-linear curve."""
BAND_POINTS = 50
"""Points along a fitted curve where its band is evaluated (smooth at figure size)."""


@dataclass
class Curve:
    """One fitted curve and the draws behind its band."""

    base_model: str
    method: str
    judge: str
    log_samples: np.ndarray
    means: np.ndarray
    point_draws: np.ndarray
    """(draws × points) bootstrap macro averages of each point."""
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


def fit_curve(log_samples: np.ndarray, means: np.ndarray, draws: np.ndarray, level: float):
    """(intercept, slope, slope interval, coefficient draws) of score on ln(samples)."""
    design = sm.add_constant(log_samples)
    ols = sm.OLS(means, design).fit()
    coefs = np.linalg.lstsq(design, draws.T, rcond=None)[0].T  # every draw at once
    low, high = percentile_interval(coefs[:, 1], level)
    return float(ols.params[0]), float(ols.params[1]), (float(low), float(high)), coefs


def scaling_fits(items: pd.DataFrame, groups: Sequence[Group], stats: StatsConfig) -> ScalingFits:
    """A curve per base model, method and judge over the single-stage groups with a data size."""
    out = ScalingFits()
    rng = np.random.default_rng(stats.seed)
    single = [g for g in groups if g.base_run is None and g.num_samples]
    keys = dict.fromkeys((g.base_model, g.method, g.judge) for g in single)
    points: dict[tuple, list[tuple[Group, float, np.ndarray]]] = {}
    for key in keys:
        members = sorted(
            (g for g in single if (g.base_model, g.method, g.judge) == key),
            key=lambda g: g.num_samples,
        )
        label = f"{key[0]} {key[1]} ({key[2]})"
        try:
            points[key] = [(g, *macro_draws(items, g, stats, rng)) for g in members]
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
        xs = np.log([g.num_samples for g, _, _ in points[key]])
        means = np.array([m for _, m, _ in points[key]])
        draws = np.stack([d for _, _, d in points[key]], axis=1)
        a, b, ci, coefs = fit_curve(xs, means, draws, stats.level)
        out.curves.append(Curve(key[0], key[1], key[2], xs, means, draws, a, b, ci, coefs))
    out.crossovers = crossovers(out.curves, points, stats.level)
    return out


def crossovers(curves: Sequence[Curve], points: dict, level: float) -> pd.DataFrame:
    """Per FT point, the data size at which the LoRA curve of its base model reaches it."""
    rows = []
    for curve in curves:
        if curve.method != LORA:
            continue
        for group, mean, draws in points.get((curve.base_model, FT, curve.judge), []):
            rows.append(_crossover(curve, group, mean, draws, level))
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)


def _crossover(curve: Curve, ft: Group, mean: float, draws: np.ndarray, level: float) -> dict:
    low_x, high_x = curve.log_samples.min(), curve.log_samples.max()
    row = {"base_model": curve.base_model, "judge": curve.judge, "ft": ft.name}
    row |= {"ft_samples": ft.num_samples, "ft_score": mean}
    if curve.slope <= 0:
        return row | {"note": "LoRA's curve does not rise with data: it never catches up"}
    x = (mean - curve.intercept) / curve.slope
    with np.errstate(divide="ignore", invalid="ignore"):
        per_draw = np.where(
            curve.coef_draws[:, 1] > 0,
            (draws - curve.coef_draws[:, 0]) / curve.coef_draws[:, 1],
            np.inf,
        )
    lo, hi = percentile_interval(per_draw[np.isfinite(per_draw)], level)
    row |= {"lora_samples": float(np.exp(x)), "ci_low": float(np.exp(lo))}
    row["ci_high"] = float(np.exp(hi))
    if not low_x <= x <= high_x:
        fitted = f"{_count(low_x)}–{_count(high_x)}"
        row["note"] = f"not within the fitted range (LoRA fitted on {fitted} samples)"
    elif not (low_x <= lo and hi <= high_x):
        row["note"] = "interval reaches beyond the fitted range"
    return row


def _count(log_samples: float) -> str:
    return format_count(float(np.round(np.exp(log_samples))))  # exp(ln 1000) is 999.99...


CROSSOVER_COLUMNS = (
    "base_model",
    "judge",
    "ft",
    "ft_samples",
    "ft_score",
    "lora_samples",
    "ci_low",
    "ci_high",
    "note",
)
"""`lora_samples`: where LoRA's curve reaches FT's score `ft_score` at `ft_samples`, with the
bootstrap interval `ci_*`; `note` says when that is outside what was fitted."""


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
