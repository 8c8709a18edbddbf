"""The paper's findings, checked on runs with planted item scores (lorabench.analysis.findings):
paired verdicts find what independent intervals miss, hold their false-positive rate under
Holm, and say "cannot tell", with the reason, for runs that cannot be compared item by item."""

from __future__ import annotations

import gc
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from lorabench.analysis.bootstrap import (
    category_draws,
    item_draws,
    percentile_interval,
    replicate_draws,
)
from lorabench.analysis.findings import (
    AGREES,
    CANNOT_TELL,
    DISAGREES,
    MATH,
    Check,
    Finding,
    check_findings,
    findings_markdown,
    write_findings,
)
from lorabench.analysis.items import score_matrices
from lorabench.analysis.runs import frame_from_records
from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.stats import item_table, scored_items

CLOSE_MARGIN = StatsConfig().close_margin
SIZES = {"tiny": 920_000, "tiny-13b": 1_580_000}
SAMPLES = {"0.6m": 600, "2m": 2000, "4m": 4000, "math_0.25m": 250}
FAST = StatsConfig(bootstrap_samples=500)
"""Enough draws for Holm over the 14 comparisons of PAPER_LIKE (no p can fall below 1/501)."""
EVAL_ITEMS = item_table(per_category=20)


def run(
    model: str,
    method: str,
    data: str | None,
    average: float,
    *,
    base_run: str | None = None,
    others: float | None = None,
    judge: str = "reference:f1",
    eval_set: str = "demo",
) -> dict:
    """A tidy-table row: every category at `average` (`others` apart)."""
    if method == "base":
        name = f"{model} (base)"
    else:
        name = f"{base_run or model}+{method}({data})"
    row = {
        "run_name": name,
        "run_id": f"{name}@{judge}@{eval_set}",
        "base_model": model,
        "method": method,
        "data": data,
        "num_samples": SAMPLES.get(data),
        "base_run": base_run,
        "average_score": average,
        "base_params": SIZES[model],
        "judge": judge,
        "eval_set": eval_set,
        "evaluated": True,
        "status": "FINISHED",
        "source": "ours",
    }
    for category in CATEGORIES:
        row[category] = others if category == MATH and others is not None else average
    return row


def planted_items(
    rows: list[dict], *, noise: float = 0.02, spread: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """The item scores of `rows`: per item the run's category score plus an item effect every
    run shares (uniform ±`spread`, centred per category) plus the run's own noise (normal, sd
    `noise`)."""
    rng = np.random.default_rng(seed)
    cats = EVAL_ITEMS["category"]
    effect = pd.Series(rng.uniform(-spread, spread, len(EVAL_ITEMS)))
    effect = (effect - effect.groupby(cats).transform("mean")).to_numpy()
    frames = []
    for row in rows:
        level = cats.map(row).to_numpy(dtype=float)
        scores = level + effect + rng.normal(0, noise, len(EVAL_ITEMS))
        frames.append(scored_items(row["run_id"], scores, EVAL_ITEMS, judge=row["judge"]))
    return pd.concat(frames, ignore_index=True)


def planted(rows: list[dict], **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table of `rows` and their item scores (`planted_items`)."""
    return frame_from_records(rows), planted_items(rows, **kwargs)


def findings(rows: list[dict], stats: StatsConfig = FAST, **kwargs) -> list[Finding]:
    return check_findings(*planted(rows, **kwargs), stats)


def verdicts(rows: list[dict], **kwargs) -> list[str]:
    return [f.verdict for f in findings(rows, **kwargs)]


PAPER_LIKE = [
    run("tiny", "base", None, 0.15),
    run("tiny-13b", "base", None, 0.16),
    run("tiny", "lora", "0.6m", 0.30),
    run("tiny", "lora", "2m", 0.36),
    run("tiny", "lora", "4m", 0.40),
    run("tiny", "ft", "0.6m", 0.45),
    run("tiny", "ft", "2m", 0.52),
    run("tiny-13b", "lora", "2m", 0.44),
    run("tiny", "lora", "math_0.25m", 0.53, base_run="tiny+ft(2m)", others=0.60),
    run("tiny", "ft", "math_0.25m", 0.54, base_run="tiny+ft(2m)", others=0.62),
]


def test_a_run_set_like_the_papers_agrees_with_every_finding() -> None:
    result = findings(PAPER_LIKE)
    assert [f.verdict for f in result] == [AGREES] * 5
    checks = [c for f in result for c in f.checks]
    assert len(checks) == 14
    # Holm over the section: never below the plain p, and what decides.
    assert all(c.p_holm >= c.difference.p and c.p_holm < FAST.alpha for c in checks)


def test_a_reversed_run_set_disagrees() -> None:
    rows = [
        run("tiny", "base", None, 0.50),  # above every tuned run: tuning did not work
        run("tiny", "lora", "0.6m", 0.45),
        run("tiny", "lora", "4m", 0.30),  # more data, clearly worse
        run("tiny", "ft", "0.6m", 0.35),  # FT clearly below LoRA
        run("tiny-13b", "lora", "0.6m", 0.20),  # the larger base clearly worse
        run("tiny", "lora", "math_0.25m", 0.30, base_run="tiny+ft(0.6m)", others=0.20),
        run("tiny", "ft", "math_0.25m", 0.40, base_run="tiny+ft(0.6m)", others=0.45),
    ]
    assert verdicts(rows) == [DISAGREES] * 5


def test_runs_of_one_level_cannot_tell() -> None:
    rows = [
        run("tiny", "base", None, 0.40),
        run("tiny", "lora", "0.6m", 0.40),
        run("tiny", "lora", "4m", 0.40),
        run("tiny", "ft", "0.6m", 0.40),
        run("tiny-13b", "lora", "0.6m", 0.40),
        # Exactly at the margin: neither close nor clearly below it.
        run("tiny", "lora", "math_0.25m", 0.4, base_run="tiny+ft(0.6m)", others=0.45),
        run("tiny", "ft", "math_0.25m", 0.4, base_run="tiny+ft(0.6m)", others=0.50),
    ]
    assert verdicts(rows, noise=0.2) == [CANNOT_TELL] * 5


def test_missing_runs_cannot_tell_and_say_what_is_missing() -> None:
    result = findings([run("tiny", "lora", "2m", 0.3)])
    assert [f.verdict for f in result] == [CANNOT_TELL] * 5
    assert all(f.missing and not f.checks for f in result)
    assert "base row" in result[0].missing


def test_one_disagreeing_pair_outweighs_agreeing_ones() -> None:
    rows = [
        run("tiny", "lora", "0.6m", 0.30),
        run("tiny", "ft", "0.6m", 0.45),  # agrees
        run("tiny", "lora", "2m", 0.50),
        run("tiny", "ft", "2m", 0.35),  # disagrees
    ]
    (finding,) = [f for f in findings(rows) if "Full fine" in f.claim]
    assert [c.verdict for c in finding.checks] == [AGREES, DISAGREES]
    assert finding.verdict == DISAGREES


def _close(lora: float, ft: float, **kwargs) -> Finding:
    rows = [
        run("tiny", "lora", "math_0.25m", 0.5, base_run="b", others=lora),
        run("tiny", "ft", "math_0.25m", 0.5, base_run="b", others=ft),
    ]
    return findings(rows, **kwargs)[4]


def test_close_is_non_inferiority_within_the_margin() -> None:
    assert _close(0.58, 0.60).verdict == AGREES  # 0.02 below, tight pairing
    assert _close(0.62, 0.60).verdict == AGREES  # above it is close too
    assert _close(0.40, 0.60).verdict == DISAGREES  # 0.2 below
    assert _close(0.55, 0.60, noise=0.1).verdict == CANNOT_TELL  # at the margin, noisy


def _independent_interval(items: pd.DataFrame, run_id: str, column: str, seed: int):
    """The run's own 95% bootstrap interval (items alone), as the overlap rule used them."""
    matrices = score_matrices(items, (run_id,), "reference:f1")
    rng = np.random.default_rng(seed)
    draws = category_draws(matrices, item_draws(matrices, 2000, rng), replicate_draws(1, 2000, rng))
    values = draws.mean(axis=1) if column == "average" else draws[:, CATEGORIES.index(column)]
    return percentile_interval(values, 0.95)


def test_the_paired_test_finds_what_overlapping_intervals_miss() -> None:
    # Items vary a lot (shared by both runs); FT is 0.02 above LoRA on every item.
    rows = [run("tiny", "lora", "0.6m", 0.50), run("tiny", "ft", "0.6m", 0.52)]
    runs, items = planted(rows, spread=0.3, noise=0.01)
    lora_low, lora_high = _independent_interval(items, rows[0]["run_id"], "average", 1)
    ft_low, ft_high = _independent_interval(items, rows[1]["run_id"], "average", 2)
    assert ft_low < lora_high  # the old rule: the intervals overlap, "cannot tell"
    finding = check_findings(runs, items, FAST)[1]
    assert finding.verdict == AGREES
    (check,) = finding.checks
    assert check.difference.ci_low > 0 and abs(check.difference.diff - 0.02) < 0.005


def test_close_holds_for_a_small_tightly_paired_shortfall() -> None:
    rows = [
        run("tiny", "lora", "math_0.25m", 0.5, base_run="b", others=0.59),
        run("tiny", "ft", "math_0.25m", 0.5, base_run="b", others=0.60),
    ]
    runs, items = planted(rows, spread=0.3, noise=0.01)
    finding = check_findings(runs, items, FAST)[4]
    assert finding.verdict == AGREES
    (check,) = finding.checks
    assert abs(check.difference.diff + 0.01) < 0.005 and check.difference.ci_low > -CLOSE_MARGIN
    assert check.difference.items == 20  # the `others` items alone
    # The old rule, half-widths combined as independent errors, reached below the margin.
    lora = _independent_interval(items, rows[0]["run_id"], MATH, 1)
    ft = _independent_interval(items, rows[1]["run_id"], MATH, 2)
    half = np.hypot((lora[1] - lora[0]) / 2, (ft[1] - ft[0]) / 2)
    assert check.difference.diff - half < -CLOSE_MARGIN


@pytest.fixture
def quick_holm(monkeypatch: pytest.MonkeyPatch) -> None:
    """statsmodels' Holm runs a full gc.collect() on every call, a third of a second in a test
    process: the null tests below call it hundreds of times."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def _null_checks(draws: int, rows: list[dict], stats: StatsConfig) -> list[list[Check]]:
    """Per null data set (every run at one level, exchangeable), every comparison."""
    runs, out = frame_from_records(rows), []
    for seed in range(draws):
        items = planted_items(rows, noise=0.1, spread=0.2, seed=seed)
        out.append([c for f in check_findings(runs, items, stats) for c in f.checks])
    return out


@pytest.mark.usefixtures("quick_holm")
def test_one_null_comparison_claims_a_direction_at_half_alpha() -> None:
    # One comparison (Holm changes nothing); a two-sided p below alpha claims the direction of
    # the difference: "agrees" at alpha / 2, either verdict at alpha.
    stats = StatsConfig(bootstrap_samples=200)
    draws = 200
    rows = [run("tiny", "lora", "0.6m", 0.5), run("tiny", "ft", "0.6m", 0.5)]
    verdicts_ = [check.verdict for (check,) in _null_checks(draws, rows, stats)]
    agrees, claimed = verdicts_.count(AGREES), draws - verdicts_.count(CANNOT_TELL)
    low, high = binom.ppf([0.0005, 0.9995], draws, stats.alpha / 2)  # 99.9% of calibrated rates
    assert low <= agrees <= high, agrees
    low, high = binom.ppf([0.0005, 0.9995], draws, stats.alpha)
    assert low <= claimed <= high, claimed


@pytest.mark.usefixtures("quick_holm")
def test_holm_holds_the_family_wise_rate_over_null_comparisons() -> None:
    # 4 null comparisons a data set: FT vs LoRA at 2 sizes, 2m vs 0.6m per method.
    stats = StatsConfig(bootstrap_samples=200)
    draws = 100
    rows = [run("tiny", m, d, 0.5) for m in ("lora", "ft") for d in ("0.6m", "2m")]
    sets = _null_checks(draws, rows, stats)
    high = binom.ppf(0.9995, draws, stats.alpha)
    claimed = sum(any(c.verdict != CANNOT_TELL for c in checks) for checks in sets)
    assert claimed <= high, claimed
    # The same data sets judged on the plain p-values claim something far more often.
    unadjusted = sum(any(c.difference.p < stats.alpha for c in checks) for checks in sets)
    assert unadjusted > high, unadjusted


def test_runs_on_other_eval_sets_or_judges_cannot_tell_with_the_reason() -> None:
    rows = [
        run("tiny", "lora", "0.6m", 0.30),
        run("tiny", "ft", "0.6m", 0.45, eval_set="belle"),
        run("tiny", "lora", "2m", 0.30),
        run("tiny", "ft", "2m", 0.45, judge="openai:gpt-4o"),
    ]
    (finding,) = [f for f in findings(rows) if "Full fine" in f.claim]
    assert finding.verdict == CANNOT_TELL
    texts = [c.text for c in finding.checks]
    assert "scored differently (reference:f1 on belle vs reference:f1 on demo)" in texts[0]
    assert "scored differently (openai:gpt-4o on demo vs reference:f1 on demo)" in texts[1]
    assert all(c.difference is None for c in finding.checks)


def test_runs_scored_on_other_items_cannot_tell_with_the_reason() -> None:
    rows = [run("tiny", "lora", "0.6m", 0.30), run("tiny", "ft", "0.6m", 0.45)]
    runs, items = planted(rows)
    items = items[~((items["run_id"] == rows[1]["run_id"]) & (items["item"] == "i0"))]
    (check,) = check_findings(runs, items, FAST)[1].checks
    assert check.verdict == CANNOT_TELL and "scored on other items" in check.text


def test_runs_without_item_scores_cannot_tell_and_never_fall_back() -> None:
    rows = [run("tiny", "lora", "0.6m", 0.30), run("tiny", "ft", "0.6m", 0.45)]
    runs, items = planted(rows)
    (check,) = check_findings(runs, None, FAST)[1].checks
    assert check.verdict == CANNOT_TELL and "item scores not loaded" in check.text
    without_ft = items[items["run_id"] != rows[1]["run_id"]]
    (check,) = check_findings(runs, without_ft, FAST)[1].checks
    assert check.verdict == CANNOT_TELL
    assert "no item scores by reference:f1 for `tiny+ft(0.6m)`" in check.text
    runs.loc[runs["method"] == "ft", "source"] = "paper"
    (check,) = check_findings(runs, items, FAST)[1].checks
    assert check.verdict == CANNOT_TELL and "the paper's reported row: no item scores" in check.text


def test_items_either_run_could_not_score_are_dropped_for_both_and_counted() -> None:
    rows = [run("tiny", "lora", "0.6m", 0.30), run("tiny", "ft", "0.6m", 0.45)]
    runs, items = planted(rows)
    unscored = (items["run_id"] == rows[0]["run_id"]) & items["item"].isin(["i0", "i1", "i25"])
    items.loc[unscored, "score"] = np.nan
    (check,) = check_findings(runs, items, FAST)[1].checks
    assert (check.difference.items, check.difference.dropped) == (177, 3)
    assert "177 items (3 unscored dropped)" in check.text


def test_each_judge_is_checked_on_its_own() -> None:
    rows = [
        run("tiny", "lora", "0.6m", 0.30),
        run("tiny", "ft", "0.6m", 0.45),
        run("tiny", "lora", "0.6m", 0.60, judge="openai:gpt-4o"),
        run("tiny", "ft", "0.6m", 0.40, judge="openai:gpt-4o"),
    ]
    text = findings_markdown(*planted(rows), FAST)
    assert text.count("### Judge") == 2
    first, second = text.split("### Judge")[1:]
    assert (
        "scores above LoRA at equal training data, on a base without instruction tuning: "
        "**agrees**" in first
    )
    assert "**disagrees**" in second


def test_the_report_section_names_verdicts_runs_and_the_paired_numbers(tmp_path) -> None:
    runs, items = planted(PAPER_LIKE)
    text = write_findings(runs, items, tmp_path, FAST)
    assert (tmp_path / "findings.md").read_text(encoding="utf-8") == text
    assert text.startswith("## The paper's findings")
    assert "The Holm-adjusted p decides" in text
    shown = (
        r"   - agrees: 0\.6m: `tiny\+ft\(0\.6m\)` 0\.4\d\d against `tiny\+lora\(0\.6m\)` "
        r"0\.[23]\d\d, difference \+0\.1\d\d \(95% paired interval \+0\.1\d\d to \+0\.1\d\d\), "
        r"180 items, p 0\.002, Holm 0\.028"  # 14 comparisons, each p at its floor 1/501
    )
    assert re.search(f"^{shown}$", text, re.MULTILINE)
    assert "; close: above -0.050), 20 items, p against -0.050 0.002, Holm 0.028" in text
    assert sum(line.endswith(": **agrees**") for line in text.splitlines()) == 5


def test_too_few_draws_for_holm_are_said() -> None:
    text = findings_markdown(*planted(PAPER_LIKE), StatsConfig(bootstrap_samples=100))
    assert "too coarse for Holm over 14 comparisons" in text and "at least 280" in text


def test_no_evaluated_run_checks_nothing() -> None:
    frame = frame_from_records([{**run("tiny", "lora", "2m", 0.3), "evaluated": False}])
    assert "nothing to check" in findings_markdown(frame, None)
