"""Sizes: the demo corpus's, the seeded draw of exactly `num_samples` valid rows, and the
development split held out of them."""

from __future__ import annotations

import datasets
import numpy as np

from lorabench.config.schema import DataConfig
from lorabench.errors import DataError


def demo_size(data: DataConfig) -> int:
    """Samples in the demo corpus for this scale (a fixed fraction of the paper's)."""
    assert data.demo_fraction is not None
    nominal = data.num_samples if data.num_samples is not None else data.nominal_samples
    assert nominal is not None  # the schema requires one of them in demo mode
    return max(1, round(nominal * data.demo_fraction))


def sample_size(data: DataConfig) -> int | None:
    """Samples to draw: `num_samples`, or the demo corpus's size (all of it); None: all rows."""
    return demo_size(data) if data.demo_fraction is not None else data.num_samples


def draw_order(valid: np.ndarray, num_samples: int | None, seed: int) -> np.ndarray:
    """The valid rows (indices into the sources' concatenation) in the order they are drawn.

    With `num_samples`, a permutation seeded by `seed`: its first `num_samples` rows are the
    sample, and a row that yields no trainable token is replaced by the next one, so the size is
    exact and the same config always draws the same rows. With `num_samples` None, every valid
    row in source order. Asking for more rows than are valid is an error, not a smaller run.
    """
    if num_samples is None:
        return valid
    if num_samples > len(valid):
        raise DataError(
            f"data.num_samples={num_samples} but the sources hold only {len(valid)} valid rows; "
            "lower it, add sources, or set data.num_samples=null to use every valid row"
        )
    return np.random.default_rng(seed).permutation(valid)


def split_dev(
    dataset: datasets.Dataset, dev_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The training rows and the development split (`dev_fraction` of the rows, at least one;
    None when the fraction is 0), drawn with `seed` so every method holds out the same rows."""
    if dev_fraction == 0:
        return dataset, None
    n_dev = max(1, round(len(dataset) * dev_fraction))
    if n_dev >= len(dataset):
        raise DataError(
            f"data.dev_fraction={dev_fraction} holds out all {len(dataset)} prepared rows; "
            "lower it or train on more samples"
        )
    order = np.random.default_rng(seed).permutation(len(dataset))
    dev = np.sort(order[:n_dev])
    train = np.sort(order[n_dev:])
    return dataset.select(train), dataset.select(dev)
