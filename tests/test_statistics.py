"""The statistics on synthetic runs of known structure: the paired test finds a planted
difference and holds its false-positive rate, the fits recover planted slopes, replicates are
grouped with seed-and-item intervals, agreement is 1 for identical judges and about 0 for
independent ones, the length slope is recovered with standard errors clustered by item, and bad
input gives a labelled skip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from scipy.stats import t as t_dist

from lorabench.analysis.agreement import agreement, judge_pairs
from lorabench.analysis.items import score_matrices
from lorabench.analysis.length import length_diagnostics
from lorabench.analysis.paired import compare_named, comparison_table, holm, paired_test
from lorabench.analysis.replicates import replicate_groups, replicate_name, replicate_table
from lorabench.analysis.scaling_fit import scaling_fits
from lorabench.analysis.statistics import statistics_sections
from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.stats import JUDGE, item_table, runs_table, scored_items

FAST = StatsConfig(bootstrap_samples=500)
PER_CATEGORY = 20
ITEMS = item_table(per_category=PER_CATEGORY)


def _matrices(scores: np.ndarray) -> dict[str, np.ndarray]:
    cats = ITEMS["category"].to_numpy()
    return {c: scores[:, cats == c] for c in CATEGORIES}


def test_paired_test_finds_a_planted_difference() -> None:
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0.2, 0.8, len(ITEMS))
    a = difficulty + 0.08 + rng.normal(0, 0.1, len(ITEMS))
    b = difficulty + rng.normal(0, 0.1, len(ITEMS))
    result = paired_test(_matrices(a[None]), _matrices(b[None]), FAST, rng)
    assert result.p < 0.01 and result.ci_low > 0
    assert result.diff == pytest.approx(0.08, abs=4 * 0.1 * np.sqrt(2 / len(ITEMS)))


def test_paired_test_false_positive_rate_is_the_stated_one() -> None:
    rng = np.random.default_rng(2)
    draws, alpha = 300, 0.05
    rejected = 0
    for _ in range(draws):
        difficulty = rng.uniform(0.2, 0.8, len(ITEMS))
        a = difficulty + rng.normal(0, 0.15, len(ITEMS))
        b = difficulty + rng.normal(0, 0.15, len(ITEMS))
        rejected += paired_test(_matrices(a[None]), _matrices(b[None]), FAST, rng).p < alpha
    low, high = binom.ppf([0.0005, 0.9995], draws, alpha)  # 99.9% of a calibrated test's rates
    assert low <= rejected <= high, rejected


def _sweep(slopes: dict[str, float], seeds: int, sizes=(1e3, 1e4, 1e5), seed_sd=0.02):
    """Runs of each method at each size and seed: score = 0.3 + slope·ln(n/1000) + noise."""
    rng = np.random.default_rng(3)
    difficulty = rng.uniform(-0.1, 0.1, len(ITEMS))
    specs, frames = [], []
    for method, slope in slopes.items():
        for n in sizes:
            for s in range(1, seeds + 1):
                run_id = f"{method}-{n:g}-{s}"
                name = f"tiny+{method}({n:g})[seed={s},steps=6]"
                specs.append({"run_name": name, "method": method, "data": f"{n:g}",
                              "num_samples": n, "run_id": run_id})  # fmt: skip
                level = 0.3 + slope * np.log(n / 1e3) + rng.normal(0, seed_sd)
                scores = level + difficulty + rng.normal(0, 0.05, len(ITEMS))
                frames.append(scored_items(run_id, scores, ITEMS))
    return runs_table(specs), pd.concat(frames, ignore_index=True)


def test_replicates_are_grouped_without_their_seed() -> None:
    assert replicate_name("tiny+lora(2m)[seed=2,steps=6]") == "tiny+lora(2m)[steps=6]"
    assert replicate_name("tiny+lora(2m)[data_seed=3,seed=2]") == "tiny+lora(2m)"
    runs, items = _sweep({"lora": 0.02}, seeds=3)
    groups = replicate_groups(runs)
    assert [g.replicates for g in groups] == [3, 3, 3]
    table = replicate_table(items, groups, FAST).table
    assert (table["ci_low"] < table["mean"]).all() and (table["mean"] < table["ci_high"]).all()


def test_fit_recovers_planted_slopes_and_the_crossover() -> None:
    runs, items = _sweep({"lora": 0.02, "ft": 0.04}, seeds=2)
    fits = scaling_fits(items, replicate_groups(runs), FAST)
    slopes = {c.method: c for c in fits.curves}
    for method, planted in (("lora", 0.02), ("ft", 0.04)):
        curve = slopes[method]
        assert curve.slope_ci[0] < planted < curve.slope_ci[1], method
        assert curve.slope == pytest.approx(planted, abs=0.006)
    crossing = fits.crossovers.set_index("ft_samples")
    # FT at 1000 samples scores 0.3, LoRA's own level at 1000: found inside the range.
    assert crossing.loc[1e3, "lora_samples"] == pytest.approx(1e3, rel=1.0)
    # FT at 1e5 is above anything LoRA reached: beyond the fitted range, said so.
    assert crossing.loc[1e5, "note"].startswith("not within the fitted range")


def test_a_curve_with_fewer_sizes_than_parameters_is_skipped() -> None:
    runs, items = _sweep({"lora": 0.02}, seeds=1, sizes=(1e3,))
    fits = scaling_fits(items, replicate_groups(runs), FAST)
    assert not fits.curves and "fewer than the curve's 2 parameters" in fits.skipped[0]


def test_agreement_is_one_for_identical_judges_and_near_zero_for_independent_ones() -> None:
    rng = np.random.default_rng(4)
    frames = []
    for run in ("r1", "r2", "r3"):
        scores = rng.uniform(0, 1, len(ITEMS))
        frames += [
            scored_items(run, scores, ITEMS, judge="a"),
            scored_items(run, scores, ITEMS, judge="a-copy"),
            scored_items(run, rng.uniform(0, 1, len(ITEMS)), ITEMS, judge="random"),
        ]
    pairs = judge_pairs(pd.concat(frames, ignore_index=True)).set_index(["first", "second"])
    overall = pairs[pairs["category"] == "all"]
    assert overall.loc[("a", "a-copy"), "alpha"] == pytest.approx(1.0)
    assert overall.loc[("a", "a-copy"), "spearman"] == pytest.approx(1.0)
    assert abs(overall.loc[("a", "random"), "alpha"]) < 0.15
    assert abs(overall.loc[("a", "random"), "spearman"]) < 0.15


def test_length_slope_is_recovered() -> None:
    rng = np.random.default_rng(5)
    frames = []
    for run, offset in (("r1", 0.0), ("r2", 0.1)):
        lengths = rng.integers(10, 2000, len(ITEMS))
        scores = 0.1 + offset + 0.05 * np.log1p(lengths) + rng.normal(0, 0.02, len(ITEMS))
        frames.append(scored_items(run, scores, ITEMS, lengths=lengths))
    diag = length_diagnostics(pd.concat(frames), JUDGE, FAST)
    assert np.allclose(diag.slopes["slope"], 0.05, atol=0.02)
    assert len(diag.averages) == 2 and not diag.skipped


def _cluster_sandwich(x: np.ndarray, y: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """(clustered, naive) standard errors of column 1's coefficient, by hand: the sandwich
    (X'X)⁻¹ Σ_g X_g'e_g e_g'X_g (X'X)⁻¹ times G/(G−1)·(N−1)/(N−K) (statsmodels' default)."""
    n, k = x.shape
    residuals = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    bread = np.linalg.inv(x.T @ x)
    _, codes = np.unique(clusters, return_inverse=True)
    sums = np.zeros((codes.max() + 1, k))
    np.add.at(sums, codes, x * residuals[:, None])
    g = len(sums)
    clustered = g / (g - 1) * (n - 1) / (n - k) * bread @ (sums.T @ sums) @ bread
    naive = residuals @ residuals / (n - k) * bread
    return float(np.sqrt(clustered[1, 1])), float(np.sqrt(naive[1, 1]))


def test_the_length_slopes_standard_error_is_clustered_by_item() -> None:
    # Each item has its own difficulty and its own typical answer length in every run, so
    # runs' rows of one item go together: the naive standard error is too small.
    rng = np.random.default_rng(8)
    difficulty = rng.normal(0, 0.15, len(ITEMS))
    typical = np.exp(rng.uniform(3, 7, len(ITEMS)))
    runs = [f"r{k}" for k in range(4)]
    frames = []
    for k, run in enumerate(runs):
        lengths = np.round(typical * np.exp(rng.normal(0, 0.2, len(ITEMS)))).astype(int)
        scores = 0.1 + 0.02 * k + 0.05 * np.log1p(lengths) + difficulty
        frames.append(scored_items(run, scores + rng.normal(0, 0.03, len(ITEMS)), ITEMS,
                                   lengths=lengths))  # fmt: skip
    data = pd.concat(frames, ignore_index=True)
    slopes = length_diagnostics(data, JUDGE, FAST).slopes.set_index("category")
    assert len(slopes) == len(CATEGORIES)
    for category, row in slopes.iterrows():
        cat = data[data["category"] == category]
        dummies = pd.get_dummies(cat["run_id"], drop_first=True, dtype=float).to_numpy()
        x = np.column_stack([np.ones(len(cat)), np.log1p(cat["answer_length"]), dummies])
        se, naive = _cluster_sandwich(x, cat["score"].to_numpy(), cat["item"].to_numpy())
        assert row["se"] == pytest.approx(se, rel=1e-9), category
        assert se > 1.5 * naive, category
        half = t_dist.ppf(0.975, PER_CATEGORY - 1) * se  # t with items − 1 degrees of freedom
        assert [row["ci_low"], row["ci_high"]] == pytest.approx(
            [row["slope"] - half, row["slope"] + half], rel=1e-9
        )
        p = 2 * t_dist.sf(abs(row["slope"]) / se, PER_CATEGORY - 1)
        assert row["p"] == pytest.approx(p, rel=1e-6)


def test_a_category_scored_alike_everywhere_is_adjusted_to_itself() -> None:
    rng = np.random.default_rng(6)
    frames = []
    for run in ("r1", "r2"):
        lengths = rng.integers(10, 2000, len(ITEMS))
        scores = np.where(ITEMS["category"] == "rewrite", 0.0, rng.uniform(0, 1, len(ITEMS)))
        frames.append(scored_items(run, scores, ITEMS, lengths=lengths))
    diag = length_diagnostics(pd.concat(frames), JUDGE, FAST)
    assert diag.skipped == ["rewrite: every score is 0, no slope"]
    assert "rewrite" not in set(diag.slopes["category"]) and len(diag.averages) == 2


def test_mismatched_items_and_single_replicates_are_labelled_skips() -> None:
    runs, items = _sweep({"lora": 0.02, "ft": 0.02}, seeds=1, sizes=(1e3,))
    items = items[~((items["run_id"] == "ft-1000-1") & (items["item"] == "i0"))]
    table = comparison_table(items, replicate_groups(runs), FAST)
    assert table.table.empty and "other items" in table.skipped[0]
    with pytest.raises(ValueError, match="other items"):
        score_matrices(items, ["lora-1000-1", "ft-1000-1"], JUDGE)
    lines, _, _ = statistics_sections(runs, items, FAST)
    text = "\n".join(lines)
    assert "1 replicate" in text and "skipped" in text
    for heading in ("Replicates", "Paired comparisons", "Fitted scaling", "Judge agreement",
                    "Judge repeats", "Length diagnostics"):  # fmt: skip
        assert f"# {heading}" in text


def test_comparison_table_holds_the_papers_pairs_with_holm() -> None:
    runs, items = _sweep({"lora": 0.02, "ft": 0.04}, seeds=2)
    result = comparison_table(items, replicate_groups(runs), FAST)
    table = result.table
    assert set(table["comparison"]) == {"LoRA vs FT"} and len(table) == 3
    assert (table["p_holm"] >= table["p"]).all()
    far = table[table["a"] == "tiny+lora(100000)[steps=6]"].iloc[0]
    assert far["diff"] < 0 and far["significant"]
    one = compare_named(runs, items, "tiny+lora(100000)[steps=6]", "tiny+ft(100000)[steps=6]")
    assert one.diff == pytest.approx(far["diff"])
    with pytest.raises(ValueError, match="no evaluated run or replicate group named nope"):
        compare_named(runs, items, "nope", "tiny+ft(100000)[steps=6]")
    signs = agreement(items, table, replicate_groups(runs), FAST)
    assert signs.skipped and "two judges" in signs.skipped[0]


@pytest.mark.parametrize("size", [1, 2, 5, 40])
def test_holm_gives_statsmodels_numbers(size: int) -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(size)
    for p in (rng.random(size), np.round(rng.random(size), 1), rng.random(size) * 0.01):
        p[0] = np.nan if size > 2 else p[0]  # NaN (a degenerate comparison) sorts last
        expected = multipletests(p, method="holm")[1]
        assert np.array_equal(holm(p), expected, equal_nan=True), p
