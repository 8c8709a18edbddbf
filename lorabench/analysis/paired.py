"""Paired comparisons: two runs (or replicate groups) scored on the same items by the same
judge, compared item by item.

The difference is of macro averages (A − B), with a paired-bootstrap interval and p-value
(`bootstrap`: shared item draws, replicates resampled independently), overall and per category.
A table's p-values are Holm-corrected (`holm`), the overall ones as one family and the
per-category ones as another. Only items scored in every run of both sides are compared (an
item one run could not score is dropped for both, and counted). Pairs that cannot be compared
(other items, another judge) are listed with the reason, never given a number.

    from lorabench.analysis.paired import compare_named, comparison_table
    items = load_item_scores(tracking_uri, runs["run_id"])     # `items`: every judge's scores
    result = compare_named(runs, items, "tiny+lora(2m)", "tiny+ft(2m)")   # e.g. in a notebook
    table = comparison_table(items, replicate_groups(runs), StatsConfig(pairs=["A vs B"]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from lorabench.analysis.bootstrap import (
    category_draws,
    category_means,
    item_draws,
    percentile_interval,
    replicate_draws,
    shifted_p_value,
)
from lorabench.analysis.items import Mismatch, score_matrices, scored_by_all
from lorabench.analysis.replicates import Group
from lorabench.config.schema import StatsConfig
from lorabench.contract import METHOD_FT, METHOD_LORA
from lorabench.evaluation.eval_set import CATEGORIES

COMPARED_METHODS = (METHOD_LORA, METHOD_FT)
"""The method labels the paper compares, LoRA's first (variants such as `lora-r64` are other
methods)."""

LORA_VS_FT = "LoRA vs FT"
"""The comparison kind of single-stage LoRA and FT on one base model and data size."""
INCREMENTAL_LORA_VS_FT = "incremental LoRA vs incremental FT"
"""The comparison kind of LoRA and FT chained on one instruction-tuned base run (§4.5)."""


@dataclass(frozen=True)
class PairResult:
    """A − B, overall (macro average) and per category, over the items scored in every run of
    both sides (an item one side could not score is dropped for both)."""

    diff: float
    ci_low: float
    ci_high: float
    p: float
    category_diff: np.ndarray
    category_p: np.ndarray
    category_items: np.ndarray
    """Items compared, per category."""
    category_dropped: np.ndarray
    """Items left out per category: unscored (NaN) in some run of either side."""
    means_a: np.ndarray
    """A's observed mean per category, over the compared items (B's in `means_b`)."""
    means_b: np.ndarray
    draws: np.ndarray = field(repr=False)
    """(samples × categories) paired-bootstrap draws of the per-category differences."""

    @property
    def items(self) -> int:
        """Items compared."""
        return int(self.category_items.sum())

    @property
    def dropped(self) -> int:
        """Items left out because some run of either side did not score them."""
        return int(self.category_dropped.sum())


@dataclass(frozen=True)
class Difference:
    """A − B on one score (the macro average or one category), tested against `null`."""

    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    """Two-sided paired-bootstrap p-value of "A − B = null"."""
    null: float
    items: int
    dropped: int


def difference(
    result: PairResult, level: float, category: str | None = None, null: float = 0.0
) -> Difference:
    """A − B on the macro average (`category` None) or on one category: its `level` percentile
    interval and the p-value of "A − B = `null`" (the draws shifted to centre on `null`, as
    `shifted_p_value` does for 0; a `null` of −margin tests non-inferiority both ways)."""
    if category is None:
        draws, a, b = result.draws.mean(axis=1), result.means_a.mean(), result.means_b.mean()
        items, dropped = result.items, result.dropped
    else:
        i = CATEGORIES.index(category)
        draws, a, b = result.draws[:, i], result.means_a[i], result.means_b[i]
        items, dropped = int(result.category_items[i]), int(result.category_dropped[i])
    diff = float(a - b)
    low, high = percentile_interval(draws, level)
    return Difference(
        a=float(a),
        b=float(b),
        diff=diff,
        ci_low=float(low),
        ci_high=float(high),
        p=float(shifted_p_value(draws - null, diff - null)),
        null=null,
        items=items,
        dropped=dropped,
    )


def paired_draws(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Observed per-category differences and their (samples × categories) paired draws."""
    items = item_draws(a, samples, rng)
    draws_a = category_draws(a, items, replicate_draws(len(a[CATEGORIES[0]]), samples, rng))
    draws_b = category_draws(b, items, replicate_draws(len(b[CATEGORIES[0]]), samples, rng))
    return category_means(a) - category_means(b), draws_a - draws_b


def paired_test(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], stats: StatsConfig, rng: np.random.Generator
) -> PairResult:
    """The paired comparison of two score sets (`items.score_matrices` of the same items, with
    the items either side left unscored already dropped: `items.scored_by_all`)."""
    observed, draws = paired_draws(a, b, stats.bootstrap_samples, rng)
    diff, macro = observed.mean(), draws.mean(axis=1)
    low, high = percentile_interval(macro, stats.level)
    counts = np.array([m.shape[1] for m in a.values()])
    return PairResult(
        diff=float(diff),
        ci_low=float(low),
        ci_high=float(high),
        p=float(shifted_p_value(macro, diff)),
        category_diff=observed,
        category_p=shifted_p_value(draws, observed),
        category_items=counts,
        category_dropped=np.zeros_like(counts),
        means_a=category_means(a),
        means_b=category_means(b),
        draws=draws,
    )


def compare(
    items: pd.DataFrame,
    a: Group,
    b: Group,
    stats: StatsConfig,
    rng: np.random.Generator | None = None,
) -> PairResult:
    """Compare two groups item by item under their judge, on the items scored in every run of
    both; Mismatch when they were scored by different judges or on different items."""
    if a.judge != b.judge or a.eval_set != b.eval_set:
        raise Mismatch(
            f"scored differently ({a.judge} on {a.eval_set} vs {b.judge} on {b.eval_set})"
        )
    full = score_matrices(items, (*a.run_ids, *b.run_ids), a.judge)
    # An item one side could not score leaves both: each mean is then over the same items.
    matrices, dropped = scored_by_all(full)
    split = a.replicates
    rng = rng or np.random.default_rng(stats.seed)
    result = paired_test(
        {c: m[:split] for c, m in matrices.items()},
        {c: m[split:] for c, m in matrices.items()},
        stats,
        rng,
    )
    return replace(result, category_dropped=dropped)


def compare_named(
    runs: pd.DataFrame, items: pd.DataFrame, a: str, b: str, stats: StatsConfig | None = None
) -> PairResult:
    """Compare two runs or replicate groups of `runs` (the tidy table) by name; Mismatch says
    why when they cannot be compared."""
    from lorabench.analysis.replicates import replicate_groups

    groups = replicate_groups(runs)
    found = {name: find_group(groups, name) for name in (a, b)}
    missing = [name for name, group in found.items() if group is None]
    if missing:
        raise Mismatch(f"no evaluated run or replicate group named {', '.join(missing)}")
    return compare(items, found[a], found[b], stats or StatsConfig())


def paper_pairs(groups: Sequence[Group]) -> list[tuple[str, Group, Group]]:
    """The paper's comparisons among `groups`: LoRA vs FT per base model and data size, the
    larger base model vs the smaller one per recipe, each chained (e.g. math) run vs its base,
    and chained LoRA vs chained FT on the same base run and data (the paper's §4.5)."""
    pairs: list[tuple[str, Group, Group]] = []
    by_name = {(g.name, g.judge, g.eval_set): g for g in groups}
    single = [g for g in groups if g.base_run is None]
    for a in single:
        for b in single:
            same_data = (a.data, a.judge, a.eval_set) == (b.data, b.judge, b.eval_set)
            if (
                same_data
                and a.base_model == b.base_model
                and (a.method, b.method) == COMPARED_METHODS
            ):
                pairs.append((LORA_VS_FT, a, b))
            if (
                same_data
                and a.method == b.method
                and a.base_model != b.base_model
                and _size(a) > _size(b)
            ):
                pairs.append(("larger vs smaller base", a, b))
    for g in groups:
        base = by_name.get((g.base_run, g.judge, g.eval_set)) if g.base_run else None
        if base is not None:
            pairs.append(("increment vs its base", g, base))
    return pairs + incremental_pairs(groups)


def incremental_pairs(groups: Sequence[Group]) -> list[tuple[str, Group, Group]]:
    """Chained LoRA against chained FT on the same base run, data, judge and eval set."""
    chained = [g for g in groups if g.base_run is not None]
    return [
        (INCREMENTAL_LORA_VS_FT, a, b)
        for a in chained
        for b in chained
        if (a.method, b.method) == COMPARED_METHODS
        and (a.base_run, a.data, a.judge, a.eval_set) == (b.base_run, b.data, b.judge, b.eval_set)
    ]


def _size(group: Group) -> float:
    """The group's base model size: as its runs logged it, else as its name says."""
    from lorabench.analysis.runs import model_size

    return group.base_params or model_size(group.base_model) or 0.0


@dataclass
class ComparisonTable:
    """The comparisons made and those that could not be made (with why)."""

    table: pd.DataFrame
    skipped: list[str] = field(default_factory=list)


def named_pairs(groups: Sequence[Group], pairs: Sequence[str]) -> tuple[list, list[str]]:
    """`stats.pairs` (`A vs B`, run or group names) as groups; unknown names are reported."""
    found, skipped = [], []
    for pair in pairs:
        left, right = (s.strip() for s in pair.split(" vs "))
        a, b = find_group(groups, left), find_group(groups, right)
        if a is None or b is None:
            missing = [n for n, g in ((left, a), (right, b)) if g is None]
            skipped.append(f"{pair}: no evaluated run or group named {', '.join(missing)}")
        else:
            found.append(("named", a, b))
    return found, skipped


def find_group(groups: Sequence[Group], name: str) -> Group | None:
    """The group named `name`, else the one replicate run so named (as a group of its own)."""
    for g in groups:
        if g.name == name:
            return g
    for g in groups:  # one replicate of a group, compared on its own
        if name in g.run_names:
            i = g.run_names.index(name)
            return replace(g, name=name, run_ids=(g.run_ids[i],), run_names=(name,))
    return None


def holm(p_values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values, in their order: the same numbers
    as statsmodels' `multipletests(method="holm")`, whose forced garbage collection costs
    seconds in a process that holds a model (a sweep, closing its parent run)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    adjusted[adjusted > 1] = 1
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return result


def comparison_table(
    items: pd.DataFrame, groups: Sequence[Group], stats: StatsConfig
) -> ComparisonTable:
    """The paper's comparisons plus `stats.pairs`, Holm-corrected (see the module doc)."""
    named, skipped = named_pairs(groups, stats.pairs)
    rng = np.random.default_rng(stats.seed)
    rows, per_category = [], []
    for kind, a, b in [*paper_pairs(groups), *named]:
        try:
            result = compare(items, a, b, stats, rng)
        except Mismatch as err:
            skipped.append(f"{a.name} vs {b.name}: {err}")
            continue
        rows.append(_row(kind, a, b, result))
        per_category.append(result.category_p)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    if rows:
        table["p_holm"] = holm(table["p"])
        table["significant"] = table["p_holm"] < stats.alpha
        flat = np.concatenate(per_category)
        adjusted = holm(flat)
        for i, category in enumerate(CATEGORIES):
            table[f"p_holm_{category}"] = adjusted[i :: len(CATEGORIES)]
    return ComparisonTable(table, skipped)


def _row(kind: str, a: Group, b: Group, r: PairResult) -> dict:
    return {
        "comparison": kind,
        "a": a.name,
        "b": b.name,
        "judge": a.judge,
        "eval_set": a.eval_set,
        "replicates_a": a.replicates,
        "replicates_b": b.replicates,
        "items": r.items,
        "dropped": r.dropped,
        "diff": r.diff,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "p": r.p,
        **{f"diff_{c}": float(d) for c, d in zip(CATEGORIES, r.category_diff, strict=True)},
        **{f"p_{c}": float(p) for c, p in zip(CATEGORIES, r.category_p, strict=True)},
    }


COMPARISON_COLUMNS = (
    "comparison",
    "a",
    "b",
    "judge",
    "eval_set",
    "replicates_a",
    "replicates_b",
    "items",
    "dropped",
    "diff",
    "ci_low",
    "ci_high",
    "p",
    *(f"diff_{c}" for c in CATEGORIES),
    *(f"p_{c}" for c in CATEGORIES),
)
"""`diff` = macro average of A − B over `items` (scored in every run of both sides); `dropped`
the items left out because some run did not score them; `p` the paired-bootstrap p-value of no
difference; the table adds `p_holm` / `significant` and per category `p_holm_<category>`."""
