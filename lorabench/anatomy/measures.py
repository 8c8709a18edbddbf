"""The measures of one weight matrix's update ΔW = W_tuned - W_base, as pure torch functions.

* Effective rank (Biderman et al. 2024, "LoRA Learns Less and Forgets Less"): the number of
  ΔW's singular directions needed to explain 90% of its variance, i.e. the smallest k whose k
  largest squared singular values hold at least that share of their total.
* Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of
  Equivalence", arXiv 2410.21228): among the tuned weight's top-k left singular vectors, those
  whose largest |cosine| with every left singular vector of the base weight stays under a
  threshold: new directions, unlike anything the base had.
* Relative change: ‖ΔW‖_F / ‖W_base‖_F.

Every computation runs in float32 (inputs of any float dtype are converted) on the inputs'
device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ROUND_OFF = 1e-6
"""Slack on the energy share: a share that equals the target in exact arithmetic (ten equal
singular values hold exactly 0.9 in nine of them) can come out a hair below it in floating point,
which would add a direction that is not needed."""

Svd = tuple[Tensor, Tensor, Tensor]
"""(U, S, Vh), as `torch.linalg.svd` returns them."""


@dataclass(frozen=True)
class MatrixAnatomy:
    """One matrix's update, measured: see the module docstring for the definitions."""

    effective_rank: int
    relative_change: float
    intruders: int
    delta_norm: float
    """‖ΔW‖_F."""
    base_norm: float
    """‖W_base‖_F."""
    spectrum: tuple[float, ...]
    """ΔW's singular values, all of them, descending."""


def delta_singular_values(base: Tensor, tuned: Tensor) -> Tensor:
    """The singular values of ΔW = `tuned` - `base`, descending, in float32."""
    base, tuned = _pair(base, tuned)
    return torch.linalg.svdvals(tuned - base)


def effective_rank(singular_values: Tensor, energy: float = 0.9) -> int:
    """The smallest k such that the k largest squared `singular_values` hold at least `energy`
    of their total (0 < energy <= 1); 0 for an all-zero spectrum. Any order is accepted."""
    _check_energy(energy)
    squares = torch.sort(singular_values.detach().flatten().double(), descending=True)[0] ** 2
    total = squares.sum()
    if total == 0:
        return 0
    # float64 for the running sum of at most min(m, n) values (free): long spectra add no
    # round-off of their own, on any device.
    shares = torch.cumsum(squares, 0) / total
    short = int((shares < energy - ROUND_OFF).sum())  # prefixes still below the target
    return min(short + 1, squares.numel())


def relative_change(base: Tensor, tuned: Tensor) -> float:
    """‖`tuned` - `base`‖_F / ‖`base`‖_F. Raises ValueError if the base is all zeros."""
    delta_norm, base_norm = _norms(*_pair(base, tuned))
    return delta_norm / base_norm


def intruder_cosines(base: Tensor, tuned: Tensor, top_k: int = 10) -> Tensor:
    """For each of the tuned weight's `top_k` left singular vectors (by singular value; fewer
    if its numerical rank is lower), its largest |cosine| with any left singular vector of the
    base weight (all of them: `svd(base, full_matrices=False)`). Float32, in that order."""
    base, tuned = _pair(base, tuned)
    svd = torch.linalg.svd
    return _max_cosines(svd(tuned, full_matrices=False), svd(base, full_matrices=False), top_k)


def intruder_dimensions(
    base: Tensor, tuned: Tensor, top_k: int = 10, threshold: float = 0.5
) -> int:
    """How many of the tuned weight's `top_k` left singular vectors are intruders: their
    largest |cosine| with the base weight's left singular vectors is below `threshold`."""
    return int((intruder_cosines(base, tuned, top_k) < threshold).sum())


def anatomy_of(
    base: Tensor,
    tuned: Tensor,
    *,
    energy: float = 0.9,
    top_k: int = 10,
    threshold: float = 0.5,
) -> MatrixAnatomy:
    """Every measure of one matrix's update, from one decomposition each of ΔW, the tuned and
    the base weight. Raises ValueError if the shapes differ (naming both), if the base is all
    zeros, or if `energy` or `top_k` is out of range."""
    base, tuned = _pair(base, tuned)
    _check_energy(energy)
    _check_top_k(top_k)
    delta_norm, base_norm = _norms(base, tuned)
    spectrum = torch.linalg.svdvals(tuned - base)
    svd = torch.linalg.svd
    cosines = _max_cosines(svd(tuned, full_matrices=False), svd(base, full_matrices=False), top_k)
    return MatrixAnatomy(
        effective_rank=effective_rank(spectrum, energy),
        relative_change=delta_norm / base_norm,
        intruders=int((cosines < threshold).sum()),
        delta_norm=delta_norm,
        base_norm=base_norm,
        spectrum=tuple(spectrum.tolist()),
    )


def _pair(base: Tensor, tuned: Tensor) -> tuple[Tensor, Tensor]:
    """Both matrices in float32, checked to be 2-D and of one shape."""
    if base.shape != tuned.shape:
        raise ValueError(
            f"base and tuned weights differ in shape: base {tuple(base.shape)}, "
            f"tuned {tuple(tuned.shape)}"
        )
    if base.ndim != 2:
        raise ValueError(f"expected 2-D weight matrices, got shape {tuple(base.shape)}")
    return base.detach().float(), tuned.detach().float()


def _norms(base: Tensor, tuned: Tensor) -> tuple[float, float]:
    """(‖ΔW‖_F, ‖W_base‖_F); a zero base has no relative change."""
    base_norm = float(torch.linalg.matrix_norm(base))
    if base_norm == 0:
        raise ValueError("the base weight is all zeros: its update has no relative size")
    return float(torch.linalg.matrix_norm(tuned - base)), base_norm


def _max_cosines(tuned: Svd, base: Svd, top_k: int) -> Tensor:
    """The largest |cosine| of each of the first `top_k` tuned left singular vectors with the
    base's; vectors of (numerically) zero singular values are arbitrary, so they are left out.
    `tuned` and `base` are their `torch.linalg.svd(..., full_matrices=False)`."""
    _check_top_k(top_k)
    (tuned_left, tuned_values, tuned_right), base_left = tuned, base[0]
    # torch.linalg.matrix_rank's default tolerance: σ_max · max(m, n) · eps.
    size = max(tuned_left.shape[0], tuned_right.shape[1])
    tolerance = tuned_values[:1].sum() * size * torch.finfo(tuned_values.dtype).eps
    rank = int((tuned_values > tolerance).sum())
    chosen = tuned_left[:, : min(top_k, rank)]
    # Unit columns on both sides: their dot products are the cosines.
    return (base_left.T @ chosen).abs().amax(dim=0)


def _check_energy(energy: float) -> None:
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
