"""Head-to-head judging statistics (lorabench.analysis.pairwise), against hand counts, scipy's
bootstrap, statsmodels' own Logit and planted effects: win rates and their intervals, position
consistency, Bradley–Terry ratings and length-controlled win rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit

from lorabench.analysis.pairwise import (
    ALL,
    ELO_SCALE,
    VERDICT_COLUMNS,
    bradley_terry,
    category_win_rates,
    comparison_groups,
    length_controlled_win_rates,
    position_consistency,
    win_rates,
)
from tests.helpers.stats import pairwise_verdicts, planted_outcomes

FAST = {"samples": 200, "level": 0.95, "seed": 0}
FEW = {**FAST, "samples": 20}  # where the interval is not under test


def _consistent(verdicts, **kwargs) -> pd.DataFrame:
    """Item verdicts both orders agree on (None: unjudged)."""
    return pairwise_verdicts(list(verdicts), list(verdicts), **kwargs)


# Win rates ----------------------------------------------------------------------------------


def test_the_win_rate_is_the_hand_count_with_ties_as_half_and_unjudged_left_out() -> None:
    frame = _consistent(
        ["A", "A", "B", "tie", None, "A"], categories=["x", "x", "x", "y", "y", "y"]
    )
    row = win_rates(frame, **FAST).iloc[0]
    assert (row["judged"], row["wins"], row["losses"], row["ties"], row["unjudged"]) == (
        5, 3, 1, 1, 1,
    )  # fmt: skip
    assert row["win_rate"] == pytest.approx((3 + 0.5) / 5)  # an unjudged item is no tie
    assert row["ci_low"] <= row["win_rate"] <= row["ci_high"]
    per_category = category_win_rates(frame, **FAST).set_index("category")
    assert per_category.loc["x", "win_rate"] == pytest.approx(2 / 3)
    assert per_category.loc["y", ["judged", "unjudged"]].tolist() == [2, 1]
    assert per_category.loc["y", "win_rate"] == pytest.approx(0.75)


def test_items_are_resampled_within_their_category() -> None:
    # All wins in one category, all losses in the other: a draw within categories keeps 10 of
    # each, so every draw is 0.5 (a draw over all items would spread from 0.2 to 0.8).
    frame = _consistent(["A"] * 10 + ["B"] * 10, categories=["x"] * 10 + ["y"] * 10)
    row = win_rates(frame, **FAST).iloc[0]
    assert (row["win_rate"], row["ci_low"], row["ci_high"]) == (0.5, 0.5, 0.5)
    x = category_win_rates(frame, **FAST).set_index("category").loc["x"]
    assert (x["win_rate"], x["ci_low"], x["ci_high"]) == (1.0, 1.0, 1.0)


def test_the_interval_is_scipys_percentile_bootstrap_and_reproducible() -> None:
    rng = np.random.default_rng(4)
    frame = _consistent(planted_outcomes(rng, 300, win=0.45, tie=0.2))
    row = win_rates(frame, samples=4000, level=0.95, seed=1).iloc[0]
    outcomes = frame["verdict"].map({"A": 1.0, "tie": 0.5, "B": 0.0}).to_numpy()
    reference = stats.bootstrap(
        (outcomes,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2)
    ).confidence_interval
    assert row["ci_low"] == pytest.approx(reference.low, abs=0.01)
    assert row["ci_high"] == pytest.approx(reference.high, abs=0.01)
    again = win_rates(frame, samples=4000, level=0.95, seed=1).iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (row["ci_low"], row["ci_high"])


def test_the_interval_covers_a_planted_rate_at_its_level() -> None:
    rng = np.random.default_rng(5)
    planted = 0.45 + 0.2 / 2
    frame = pd.concat(
        [
            _consistent(planted_outcomes(rng, 80, win=0.45, tie=0.2), run_b=f"b{k:03d}")
            for k in range(150)
        ]
    )
    table = win_rates(frame, samples=400, level=0.9, seed=0)
    covered = ((table["ci_low"] <= planted) & (planted <= table["ci_high"])).mean()
    assert 0.82 <= covered <= 0.97  # 0.9 ± 3 standard errors of 150 intervals


# Position consistency ---------------------------------------------------------------------------


def _position_biased(rng: np.random.Generator, n: int, biased: float) -> tuple[pd.DataFrame, dict]:
    """A judge that, on a `biased` share of items, picks whichever answer it sees first, and
    otherwise judges A and B as equals (P(A) = P(B) = 0.4) the same in both orders."""
    truth = planted_outcomes(rng, n, win=0.4, tie=0.2)
    bias = rng.random(n) < biased
    first = np.where(bias, "A", truth)  # A is shown first in the first order
    second = np.where(bias, "B", truth)  # B is shown first in the second
    return pairwise_verdicts(list(first), list(second)), {"truth": truth, "bias": bias}


def test_a_judge_biased_to_the_first_position_is_inconsistent_and_the_swap_neutralises_it() -> None:
    frame, planted = _position_biased(np.random.default_rng(6), 3000, biased=0.3)
    truth, bias = planted["truth"], planted["bias"]
    row = position_consistency(frame).iloc[0]
    assert row["consistency"] == pytest.approx(1 - bias.mean())
    assert row["consistency"] == pytest.approx(0.7, abs=0.03)
    fair_picks = 2 * np.sum(truth[~bias] != "tie")  # one for each position, per order pair
    assert row["first_position"] == pytest.approx(
        (2 * bias.sum() + fair_picks / 2) / (2 * bias.sum() + fair_picks)
    )
    assert row["first_position"] > 0.6
    # Combined, a biased item is a tie: the rate is the fair judge's on the other items.
    score = {"A": 1.0, "tie": 0.5, "B": 0.0}
    fair = np.array([score[v] for v in truth[~bias]])
    combined = win_rates(frame, **FAST).iloc[0]["win_rate"]
    assert combined == pytest.approx((fair.sum() + 0.5 * bias.sum()) / len(frame))
    first_only = frame["first"].map(score).mean()
    second_only = frame["second"].map(score).mean()
    assert first_only > 0.6 and second_only < 0.4  # each order alone is pushed
    assert combined == pytest.approx(0.5, abs=0.03)  # the pair of orders is not


def test_position_consistency_per_pair_and_over_a_judges_pairs() -> None:
    one = pairwise_verdicts(["A", "A", "B", None], ["A", "B", "B", "tie"], run_b="b")
    two = pairwise_verdicts(["tie", "A"], ["tie", "A"], run_b="c")
    table = position_consistency(pd.concat([one, two])).set_index(["run_a", "run_b"])
    # Item 4 was judged in one order only: left out.
    assert table.loc[("a", "b"), ["judged", "consistent"]].tolist() == [3, 2]
    # The first order shows A first, the second B: of the 6 picks, the first order's A, A and the
    # second order's B, B are for the answer shown first.
    assert table.loc[("a", "b"), ["order_verdicts", "first_preferred"]].tolist() == [6, 4]
    assert table.loc[(ALL, ALL), ["judged", "consistent"]].tolist() == [5, 4]
    assert table.loc[(ALL, ALL), "first_position"] == pytest.approx(5 / 8)


# Bradley–Terry ---------------------------------------------------------------------------------


def _bt_frame(rng: np.random.Generator, strengths: dict[str, float], items: int) -> pd.DataFrame:
    """Every pair judged on the same `items` (3 categories), with ties: P(tie) is
    0.6·min(p, 1 − p) taken equally from both sides, so A's expected score (a tie as half) is
    p = σ(s_A − s_B), the Bradley–Terry probability."""
    frames = []
    names = sorted(strengths)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = expit(strengths[a] - strengths[b])
            tie = 0.6 * min(p, 1 - p)
            outcomes = planted_outcomes(rng, items, win=p - tie / 2, tie=tie)
            categories = np.resize(["x", "y", "z"], items)
            frames.append(_consistent(outcomes, run_a=a, run_b=b, categories=categories))
    return pd.concat(frames, ignore_index=True)


def test_bradley_terry_recovers_planted_strengths() -> None:
    strengths = {"r0": 0.0, "r1": 0.5, "r2": 1.0, "r3": 2.0}
    frame = _bt_frame(np.random.default_rng(7), strengths, items=600)
    table = bradley_terry(frame, **FAST).set_index("run")
    # Every run has the same comparisons: the anchor is the first alphabetically.
    assert table.index[table["anchor"]].tolist() == ["r0"]
    assert table.loc["r0", ["rating", "ci_low", "ci_high", "elo"]].tolist() == [0, 0, 0, 1000]
    for run, strength in strengths.items():
        assert table.loc[run, "rating"] == pytest.approx(strength, abs=0.15)
        assert table.loc[run, "ci_low"] <= strength <= table.loc[run, "ci_high"]
    assert table.loc["r3", "elo"] == pytest.approx(1000 + ELO_SCALE * table.loc["r3", "rating"])
    assert (table["comparisons"] == 1800).all() and (table["draws"] == 200).all()


def test_bradley_terry_is_statsmodels_logit_on_arena_hards_duplicated_rows() -> None:
    rows = [("a", "b", "A"), ("a", "b", "tie"), ("a", "b", "B"), ("a", "c", "A"),
            ("a", "c", "A"), ("a", "c", "B"), ("b", "c", "tie"), ("b", "c", "A"),
            ("b", "c", "B"), ("b", "c", "B"), ("a", "b", "A")]  # fmt: skip
    frame = pd.concat(
        [_consistent([v], run_a=a, run_b=b).assign(item=k) for k, (a, b, v) in enumerate(rows)]
    )
    table = bradley_terry(frame, **FEW, anchor="a").set_index("run")
    # Arena-Hard: every verdict twice, a tie as one win for each; the anchor's column dropped.
    x, y = [], []
    for a, b, v in rows:
        design = [(a == r) - (b == r) for r in ("b", "c")]
        x += [design, design]
        y += {"A": [1, 1], "B": [0, 0], "tie": [1, 0]}[v]
    logit = sm.Logit(np.array(y, float), np.array(x, float)).fit(disp=0)
    assert table.loc[["b", "c"], "rating"].tolist() == pytest.approx(logit.params, abs=1e-6)
    assert table.loc["a", "rating"] == 0.0


def test_two_runs_rate_as_the_log_odds_of_the_score_share_around_the_default_anchor() -> None:
    frame = pd.concat(
        [
            _consistent(["A", "A", "A", "B", "tie", "tie"], run_a="x", run_b="y"),
            _consistent(["A", "B"], run_a="y", run_b="z"),
        ]
    )
    table = bradley_terry(frame, **FEW).set_index("run")
    assert table.index[table["anchor"]].tolist() == ["y"]  # in the most comparisons
    assert table.loc["x", "rating"] == pytest.approx(np.log(4 / 2))  # 4 of 6 points
    assert table.loc["z", "rating"] == pytest.approx(0.0, abs=1e-9)


def test_runs_never_compared_across_are_rated_in_groups_each_with_its_own_anchor() -> None:
    # Two sweeps' LoRA-vs-FT pairs at two data sizes: nothing ties one pair's scale to the other's.
    small = _consistent(["A", "B", "B", "tie"], run_a="lora-s", run_b="ft-s")
    large = _consistent(["A", "A", "A", "B"], run_a="lora-l", run_b="ft-l")
    table = bradley_terry(pd.concat([small, large]), **FEW).set_index("run")
    assert comparison_groups(pd.concat([small, large])) == [["ft-l", "lora-l"], ["ft-s", "lora-s"]]
    assert table.loc[["lora-s", "ft-s"], "group"].tolist() == ["ft-s", "ft-s"]  # alphabetical
    assert table.loc[["lora-l", "ft-l"], "group"].tolist() == ["ft-l", "ft-l"]
    # Each group as if alone: A's log-odds of its score share (1.5 of 4; 3 of 4).
    assert table.loc["lora-s", "rating"] == pytest.approx(np.log(1.5 / 2.5))
    assert table.loc["lora-l", "rating"] == pytest.approx(np.log(3 / 1))
    alone = bradley_terry(large, **FEW).set_index("run")
    assert table.loc["lora-l", "rating"] == pytest.approx(alone.loc["lora-l", "rating"])


def test_ratings_without_a_finite_maximum_are_nan_and_an_unknown_anchor_is_an_error() -> None:
    frame = _consistent(["A", "A", "tie", None], run_a="x", run_b="y")
    x_only_wins = pd.concat([frame, _consistent(["A"], run_a="y", run_b="z")])
    table = bradley_terry(x_only_wins, **FAST, anchor="y").set_index("run")
    assert np.isnan(table.loc["z", "rating"]) and np.isnan(table.loc["x", "rating"])
    assert (table["draws"] == 0).all()
    assert table.loc["x", "comparisons"] == 3  # the unjudged item is no comparison
    with pytest.raises(ValueError, match="anchor w"):
        bradley_terry(frame, **FAST, anchor="w")


# Length control ---------------------------------------------------------------------------------


def _length_frame(rng: np.random.Generator, n: int, slope: float, base: float) -> pd.DataFrame:
    """A usually longer than B; P(A wins) = σ(base + slope · tanh(Δ / std Δ)), no ties."""
    delta = np.round(rng.normal(300, 400, n))
    p = expit(base + slope * np.tanh(delta / delta.std(ddof=1)))
    outcomes = np.where(rng.random(n) < p, "A", "B")
    return _consistent(outcomes, length_a=800 + delta, length_b=np.full(n, 800.0))


def test_a_win_that_comes_from_length_alone_is_length_controlled_to_a_half() -> None:
    row = length_controlled_win_rates(_length_frame(np.random.default_rng(8), 3000, 2.5, 0.0))
    row = row.iloc[0]
    assert row["win_rate"] > 0.65
    assert row["lc_win_rate"] == pytest.approx(0.5, abs=0.05)
    assert row["lc_ci_low"] < 0.5 < row["lc_ci_high"]
    assert row["length_coef"] == pytest.approx(2.5, abs=0.4)
    assert row["mean_length_a"] > row["mean_length_b"]


def test_without_a_length_effect_the_length_controlled_rate_is_the_raw_one() -> None:
    row = length_controlled_win_rates(_length_frame(np.random.default_rng(9), 3000, 0.0, 0.6))
    row = row.iloc[0]
    assert row["lc_win_rate"] == pytest.approx(row["win_rate"], abs=0.03)
    assert row["lc_win_rate"] == pytest.approx(expit(0.6), abs=0.03)


def test_pairs_a_length_fit_cannot_describe_say_why() -> None:
    lengths = np.arange(10.0) * 100
    separable = _consistent(["A"] * 5 + ["B"] * 5, length_a=lengths[::-1], length_b=lengths)
    one_outcome = _consistent(["A"] * 4, run_b="c", length_a=[1, 2, 3, 4], length_b=[2] * 4)
    table = length_controlled_win_rates(pd.concat([separable, one_outcome]))
    assert np.isnan(table.iloc[0]["lc_win_rate"]) and "no finite fit" in table.iloc[0]["note"]
    assert table.iloc[1]["lc_win_rate"] == 1.0 and "one outcome" in table.iloc[1]["note"]


# Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statistic",
    [
        lambda f: win_rates(f, **FAST),
        position_consistency,
        lambda f: bradley_terry(f, **FAST),
        length_controlled_win_rates,
    ],
)
def test_bad_input_is_a_value_error_naming_it(statistic) -> None:
    frame = pairwise_verdicts(["A", "B"], ["A", "A"])
    assert list(frame.columns) == list(VERDICT_COLUMNS)
    with pytest.raises(ValueError, match="length_b"):
        statistic(frame.drop(columns="length_b"))
    with pytest.raises(ValueError, match="second holds 'a'"):
        statistic(frame.assign(second=["a", "A"]))
