"""Vectorised bootstrap draws of macro averages (the mean over the 9 categories of the mean
item score), over items alone or hierarchically over replicates (seeds) and then items.

Scores come as `score_matrices` gives them: per category a (replicates × items) array, NaN
where an item was not scored. One draw resamples the replicates with replacement, then the
items of each category with replacement (the same items for every replicate: an item is
hard or easy whatever the seed), and averages. Two groups compared item by item share the item
draws (a paired bootstrap) and resample their replicates independently.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Matrices = Mapping[str, np.ndarray]
"""Per category, a (replicates × items) array of scores."""


def item_draws(matrices: Matrices, samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per category, (samples × items) indices drawn with replacement."""
    return {c: rng.integers(0, m.shape[1], size=(samples, m.shape[1])) for c, m in matrices.items()}


def replicate_draws(count: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples × count) replicate indices drawn with replacement (all 0 for one replicate)."""
    return rng.integers(0, count, size=(samples, count))


def category_draws(
    matrices: Matrices, items: Mapping[str, np.ndarray], replicates: np.ndarray
) -> np.ndarray:
    """(samples × categories) bootstrap means, categories in the order of `matrices`."""
    columns = []
    for category, matrix in matrices.items():
        picked = matrix[replicates]  # samples × replicates × items
        picked = np.take_along_axis(picked, items[category][:, None, :], axis=2)
        columns.append(_nanmean(picked.reshape(len(picked), -1)))
    return np.stack(columns, axis=1)


def macro_average_draws(
    matrices: Matrices, items: Mapping[str, np.ndarray], replicates: np.ndarray
) -> tuple[float, np.ndarray]:
    """The observed macro average of `matrices` and its (samples,) bootstrap draws under the
    given item and replicate draws (item draws shared with other groups pair them)."""
    draws = category_draws(matrices, items, replicates).mean(axis=1)
    return float(np.mean(category_means(matrices))), draws


def category_means(matrices: Matrices) -> np.ndarray:
    """The observed mean per category (over replicates and items)."""
    return np.array([_nanmean(m.reshape(1, -1))[0] for m in matrices.values()])


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Row means over the scored entries; NaN for a row with none (never a 0)."""
    counts = np.sum(~np.isnan(values), axis=1)
    sums = np.nansum(values, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def percentile_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` percentile interval of draws along axis 0."""
    tail = (1 - level) / 2 * 100
    return np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)


def order_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` interval of 1-D draws that may be ±inf (an outcome no number
    describes): each end is the draw at or just outside its percentile, not an interpolation
    between neighbours, so an end that falls among infinite draws is infinite (where
    `percentile_interval` gives NaN). NaN draws are dropped."""
    tail = (1 - level) / 2 * 100
    low = np.nanpercentile(draws, tail, method="lower")
    return float(low), float(np.nanpercentile(draws, 100 - tail, method="higher"))


def shifted_p_value(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of "no difference": the share of draws, shifted to centre on
    0, at least as far from 0 as the observed difference (plus one, so never exactly 0)."""
    extreme = np.sum(np.abs(draws - observed) >= np.abs(observed) - 1e-12, axis=0)
    return (extreme + 1) / (len(draws) + 1)
