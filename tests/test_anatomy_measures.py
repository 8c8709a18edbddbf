"""The weight-update measures on planted updates whose anatomy is known by construction, checked
against independent float64 computations (numpy / scipy) where one is natural."""

from __future__ import annotations

import math

import numpy as np
import peft
import pytest
import scipy.linalg
import torch

from lorabench.anatomy.measures import (
    MatrixAnatomy,
    anatomy_of,
    delta_singular_values,
    effective_rank,
    intruder_cosines,
    intruder_dimensions,
    relative_change,
)

ROWS, COLS = 64, 48
DECAY = 10 * 0.85 ** torch.arange(COLS, dtype=torch.float32)
"""The planted base's singular values: distinct, decaying (10 down to about 0.0005)."""


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    """`cols` orthonormal columns of length `rows`."""
    return torch.linalg.qr(gaussian(rows, cols, seed=seed))[0]


def numpy_effective_rank(delta: np.ndarray, energy: float) -> int:
    """Biderman et al.'s definition, computed independently in float64."""
    s = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    shares = np.cumsum(s**2) / np.sum(s**2)
    return int(np.searchsorted(shares, energy - 1e-9) + 1)


@pytest.fixture
def planted() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, V, base) with base = U diag(DECAY) Vᵀ: its left singular vectors are U's columns."""
    left, right = orthonormal(ROWS, COLS, seed=1), orthonormal(COLS, COLS, seed=2)
    return left, right, left @ torch.diag(DECAY) @ right.T


# --- effective rank ----------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_a_rank_r_update_has_effective_rank_at_most_r_as_numpy_computes_it(rank: int) -> None:
    base = gaussian(ROWS, COLS, seed=0)
    delta = gaussian(ROWS, rank, seed=rank) @ gaussian(rank, COLS, seed=100 + rank)

    spectrum = delta_singular_values(base, base + delta)

    found = effective_rank(spectrum)
    assert found == numpy_effective_rank(delta.numpy(), 0.9)
    assert 1 <= found <= rank
    assert effective_rank(spectrum, energy=1.0) == rank  # every direction, none beyond
    assert spectrum[rank:].max() < 1e-4 * spectrum[0]


@pytest.mark.parametrize(("rank", "expected"), [(1, 1), (4, 4), (8, 8), (9, 9), (10, 9)])
def test_equal_singular_values_need_every_direction_up_to_ninety_percent(
    rank: int, expected: int
) -> None:
    """r equal values put (r-1)/r < 0.9 in r-1 of them for r <= 9; at r = 10 nine hold exactly
    0.9, which floating point must not miss."""
    base = gaussian(ROWS, COLS, seed=0)
    delta = 0.3 * orthonormal(ROWS, rank, seed=3) @ orthonormal(COLS, rank, seed=4).T

    spectrum = delta_singular_values(base, base + delta)

    assert effective_rank(spectrum) == expected


@pytest.mark.parametrize(("energy", "expected"), [(0.5, 1), (9 / 14, 1), (0.9, 2), (0.95, 3)])
def test_hand_derived_effective_rank(energy: float, expected: int) -> None:
    # Squares 9, 4, 1 of 14: the top one holds 9/14 ≈ 0.643, the top two 13/14 ≈ 0.929.
    assert effective_rank(torch.tensor([3.0, 2.0, 1.0]), energy) == expected
    assert effective_rank(torch.tensor([1.0, 3.0, 2.0]), energy) == expected  # any order


def test_no_update_has_effective_rank_zero() -> None:
    base = gaussian(ROWS, COLS, seed=0)
    assert effective_rank(delta_singular_values(base, base.clone())) == 0
    assert effective_rank(torch.zeros(5)) == 0


@pytest.mark.parametrize("energy", [0.0, -0.1, 1.01])
def test_energy_outside_zero_to_one_is_refused(energy: float) -> None:
    base = gaussian(ROWS, COLS, seed=0)
    with pytest.raises(ValueError, match="energy"):
        effective_rank(torch.tensor([3.0, 2.0, 1.0]), energy)
    with pytest.raises(ValueError, match="energy"):
        anatomy_of(base, base + 1, energy=energy)


# --- spectrum and relative change --------------------------------------------------------------


def test_delta_singular_values_are_scipys_of_the_difference() -> None:
    base, tuned = gaussian(ROWS, COLS, seed=5), gaussian(ROWS, COLS, seed=6)
    expected = scipy.linalg.svdvals(tuned.double().numpy() - base.double().numpy())

    found = delta_singular_values(base.bfloat16(), tuned.bfloat16())

    assert found.dtype == torch.float32
    # bfloat16 inputs: scipy sees the same rounded values.
    expected_bf16 = scipy.linalg.svdvals(
        tuned.bfloat16().double().numpy() - base.bfloat16().double().numpy()
    )
    np.testing.assert_allclose(found.numpy(), expected_bf16, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        delta_singular_values(base, tuned).numpy(), expected, rtol=1e-4, atol=1e-4
    )


def test_relative_change_is_the_frobenius_ratio() -> None:
    base, delta = gaussian(ROWS, COLS, seed=7), 0.05 * gaussian(ROWS, COLS, seed=8)
    expected = np.linalg.norm(delta.double().numpy()) / np.linalg.norm(base.double().numpy())

    assert relative_change(base, base + delta) == pytest.approx(expected, rel=1e-5)
    assert relative_change(base, base) == 0.0


def test_a_zero_base_has_no_relative_change() -> None:
    with pytest.raises(ValueError, match="all zeros"):
        relative_change(torch.zeros(4, 3), torch.ones(4, 3))


@pytest.mark.parametrize(
    "measure",
    [delta_singular_values, relative_change, intruder_cosines, intruder_dimensions, anatomy_of],
)
def test_shapes_that_differ_are_refused_naming_both(measure) -> None:
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
        measure(torch.ones(4, 3), torch.ones(3, 4))


# --- intruder dimensions -----------------------------------------------------------------------


def test_a_rotation_within_the_top_space_brings_no_intruder(planted) -> None:
    """Rotating the top two left singular vectors by θ: (UR) diag(s) Vᵀ is the tuned weight's
    exact SVD, so its top two vectors have |cos| = cos θ with u1 and u2, the rest 1."""
    left, right, base = planted
    angle = 0.3
    rotation = torch.eye(COLS)
    rotation[:2, :2] = torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    tuned = left @ rotation @ torch.diag(DECAY) @ right.T

    cosines = intruder_cosines(base, tuned, top_k=10)

    expected = torch.tensor([math.cos(angle)] * 2 + [1.0] * 8)
    torch.testing.assert_close(cosines, expected, atol=1e-4, rtol=0)
    assert intruder_dimensions(base, tuned) == 0


def test_rescaled_singular_values_bring_no_intruder(planted) -> None:
    """The third direction grown past the first, the fifth shrunk: a new order of the base's
    own directions, nothing new."""
    left, right, base = planted
    scaled = DECAY.clone()
    scaled[2], scaled[4] = 30.0, 0.01
    tuned = left @ torch.diag(scaled) @ right.T

    assert intruder_cosines(base, tuned)[0] == pytest.approx(1.0, abs=1e-4)
    assert intruder_dimensions(base, tuned) == 0


def planted_direction(left: torch.Tensor, aligned: bool) -> torch.Tensor:
    """A unit vector orthogonal to the base's top ten left singular vectors: either one of the
    base's others (u21) or spread evenly over 32 of them (|cos| = 1/√32 ≈ 0.18 with each)."""
    if aligned:
        return left[:, 20]
    return left[:, 10:42].sum(dim=1) / math.sqrt(32)


def test_a_strong_spread_direction_is_exactly_one_intruder(planted) -> None:
    """base + σ u v30ᵀ with u ⟂ u1..u10 and v30 ⟂ v1..v10: the base's top ten directions stay
    singular vectors of the tuned weight, and σ = 3 σ_max puts the new one first."""
    left, right, base = planted
    tuned = base + 3 * DECAY[0] * torch.outer(planted_direction(left, False), right[:, 30])

    cosines = intruder_cosines(base, tuned, top_k=10)

    assert cosines[0] < 0.3
    torch.testing.assert_close(cosines[1:], torch.ones(9), atol=1e-4, rtol=0)
    assert intruder_dimensions(base, tuned, top_k=10, threshold=0.5) == 1
    assert intruder_dimensions(base, tuned, top_k=10, threshold=0.1) == 0  # ≈ 0.18 > 0.1
    # The same cosines computed independently, in float64.
    base_left = np.linalg.svd(base.double().numpy(), full_matrices=False)[0]
    tuned_left = np.linalg.svd(tuned.double().numpy(), full_matrices=False)[0][:, :10]
    np.testing.assert_allclose(
        cosines.numpy(), np.abs(base_left.T @ tuned_left).max(axis=0), atol=1e-4
    )


def test_the_same_direction_aligned_with_a_base_vector_is_no_intruder(planted) -> None:
    left, right, base = planted
    tuned = base + 3 * DECAY[0] * torch.outer(planted_direction(left, True), right[:, 30])

    assert intruder_cosines(base, tuned)[0] > 0.9
    assert intruder_dimensions(base, tuned) == 0


def test_a_weak_spread_direction_outside_the_top_k_is_no_intruder(planted) -> None:
    """σ = 0.2 leaves the new direction's singular value (at most σ11 + 0.2 ≈ 2.17) under the
    base's tenth (≈ 2.32): the tuned top ten are the base's own."""
    left, right, base = planted
    tuned = base + 0.2 * torch.outer(planted_direction(left, False), right[:, 30])

    assert intruder_dimensions(base, tuned, top_k=10) == 0


def test_a_low_rank_tuned_weight_counts_only_its_rank(planted) -> None:
    """Singular vectors of zero singular values are arbitrary: they are not counted."""
    left, right, base = planted
    tuned = 5.0 * torch.outer(left[:, 0], right[:, 0])  # rank 1: one real direction

    assert intruder_cosines(base, tuned, top_k=10).shape == (1,)
    assert intruder_dimensions(base, torch.zeros_like(base)) == 0


# --- a real merged LoRA, and the whole anatomy ---------------------------------------------------


class OneProjection(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def test_a_merged_rank_8_lora_has_effective_rank_at_most_8() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = OneProjection()
        base = model.proj.weight.detach().clone()
        config = peft.LoraConfig(
            r=8, lora_alpha=16, target_modules=["proj"], init_lora_weights=False
        )
        wrapped = peft.get_peft_model(model, config)
    layer = wrapped.base_model.model.proj
    planted = 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight  # α / r = 2
    tuned = wrapped.merge_and_unload().proj.weight.detach()
    torch.testing.assert_close(tuned - base, planted.detach(), atol=1e-5, rtol=0)

    anatomy = anatomy_of(base, tuned)

    assert 1 <= anatomy.effective_rank <= 8
    assert anatomy.spectrum[8] < 1e-4 * anatomy.spectrum[0]
    assert anatomy.spectrum[7] > 1e-2 * anatomy.spectrum[0]  # a real rank-8 update


def test_anatomy_of_agrees_with_the_single_measures(planted) -> None:
    left, right, base = planted
    spread = planted_direction(left, False)
    tuned = (base + 3 * DECAY[0] * torch.outer(spread, right[:, 30])).bfloat16()

    anatomy = anatomy_of(base.bfloat16(), tuned, energy=0.8, top_k=5, threshold=0.4)

    assert isinstance(anatomy, MatrixAnatomy)
    spectrum = delta_singular_values(base.bfloat16(), tuned)
    np.testing.assert_allclose(anatomy.spectrum, spectrum.numpy(), rtol=1e-5, atol=1e-6)
    assert len(anatomy.spectrum) == COLS
    assert list(anatomy.spectrum) == sorted(anatomy.spectrum, reverse=True)
    assert anatomy.effective_rank == effective_rank(spectrum, 0.8)
    assert anatomy.intruders == intruder_dimensions(base.bfloat16(), tuned, 5, 0.4) == 1
    assert anatomy.relative_change == pytest.approx(relative_change(base.bfloat16(), tuned))
    assert anatomy.delta_norm == pytest.approx(math.sqrt(sum(s * s for s in anatomy.spectrum)))
    assert anatomy.base_norm == pytest.approx(float(DECAY.norm()), rel=1e-2)  # bf16 rounding
    assert anatomy.relative_change == pytest.approx(anatomy.delta_norm / anatomy.base_norm)
