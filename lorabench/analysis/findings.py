"""The paper's conclusions, checked against a run set: for each, whether these runs agree,
disagree or cannot tell, from paired comparisons of their item scores.

The conclusions (BELLE's comparative study, §4):

1. full fine-tuning scores above LoRA at equal training data, on a base without instruction
   tuning (LLaMA-7B: FT(0.6M) 0.686 against LoRA(0.6M) 0.589; FT(2M) 0.710 against 0.609);
2. more training data helps both methods (LoRA 0.589 → 0.624 from 0.6M to 4M; FT 0.686 → 0.710
   from 0.6M to 2M);
3. a larger base helps LoRA (LLaMA-13B + LoRA(2M) 0.648 against LLaMA-7B + LoRA(2M) 0.609);
4. on an instruction-tuned base, LoRA comes close to incremental full fine-tuning, as on math
   (LLaMA-7B + FT(2M) + LoRA(math_0.25M): 0.560 on math and code, the `others` category, against
   0.586 for + FT(math_0.25M)).

Before them, a precondition of any such reading (not a conclusion of the paper): every tuned run
scores above its untuned base (the base row, `<model> (base)`), or instruction tuning did not
work in this run set and its comparisons say nothing.

Rules. Both runs of a comparison answered the same items, so each comparison is paired
(`paired.compare`): the difference A − B of their scores over the items both scored (an item
either run could not score is dropped for both, and counted), with a paired-bootstrap interval
(shared item draws; a replicated configuration's seeds resampled) and a two-sided p-value of the
null value. The p-values of every comparison of a section (one judge and eval set) are
Holm-corrected together, and the adjusted p decides at `StatsConfig.alpha`:

- "A scores above B" tests A − B = 0: **agrees** when the adjusted p is below alpha and A − B > 0,
  **disagrees** when it is below alpha and A − B < 0, **cannot tell** otherwise;
- "A comes close to B" tests A − B = −`stats.close_margin` (non-inferiority and inferiority
  at once): agrees when the adjusted p is below alpha and A − B > −margin, disagrees when it
  is below alpha and A − B < −margin, cannot tell otherwise.

A two-sided p below alpha claims one direction at alpha / 2, as a (1 − alpha) interval that
excludes the null value does. A claim checked on several pairs (each data size, each method)
agrees when every pair agrees, disagrees when any pair disagrees, and cannot tell otherwise.
Runs the claim needs that are missing give "cannot tell", naming what is missing; a pair that
cannot be compared item by item (no item scores, another judge or eval set, other items) gives
"cannot tell" with the reason, never a number.

Where a sweep judged a comparison's two runs head to head (`pairwise_section`, any pairwise
judge, either order, runs matched by name without their seeds), a line under the comparison
gives A's win rate against B (a tie half) with its bootstrap interval: it agrees when the
interval lies above 0.5, disagrees when it lies below (for "close", A losing head to head does
not say by how much: cannot tell), cannot tell otherwise. It adds to the paired score
comparison and does not change its verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorabench.analysis.items import Mismatch
from lorabench.analysis.paired import Difference, compare, difference, holm
from lorabench.analysis.pairwise import win_rates
from lorabench.analysis.pairwise_section import win_rate_cells
from lorabench.analysis.replicates import Group, replicate_groups, replicate_name
from lorabench.analysis.runs import BASE_METHOD, ROW_COLUMNS, Section, sections
from lorabench.config.schema import StatsConfig
from lorabench.contract import METHOD_FT, METHOD_LORA

AGREES = "agrees"
DISAGREES = "disagrees"
CANNOT_TELL = "cannot tell"

MATH = "others"
"""The category that holds the eval set's math items (with code), as the paper reports it."""

AVERAGE = "average_score"

Row = Mapping[str, Any]
"""A run of the tidy table (`runs.COLUMNS`), one per configuration."""

NOT_LOADED = "item scores not loaded: the report reads them unless statistics=false"


@dataclass(frozen=True)
class Check:
    """One comparison of two runs, and what it says about the claim."""

    verdict: str
    text: str
    difference: Difference | None = None
    """The paired difference A − B, when the runs could be compared."""
    p_holm: float | None = None
    """Its p-value, Holm-adjusted over the section's comparisons (this decides the verdict)."""
    head_to_head: tuple[str, ...] = ()
    """What pairwise judges said of the same two runs, a line each (`head_to_head_lines`);
    they do not change `verdict`."""


@dataclass(frozen=True)
class Finding:
    """A conclusion of the paper and what these runs say about it."""

    claim: str
    verdict: str
    checks: list[Check] = field(default_factory=list)
    missing: str | None = None
    """Why no pair of runs could be compared (the verdict is then "cannot tell")."""


@dataclass(frozen=True)
class Comparison:
    """A pair a claim asks about: A above B on `column`, or (with `margin`) A at most `margin`
    below B."""

    label: str
    a: Row
    b: Row
    column: str = AVERAGE
    margin: float | None = None

    @property
    def null(self) -> float:
        """The value of A − B the comparison tests against."""
        return 0.0 if self.margin is None else -self.margin


@dataclass(frozen=True)
class Claim:
    """A claim and the comparisons it asks for, before any is made."""

    text: str
    comparisons: list[Comparison]
    missing: str
    """What the claim needs when no comparison could be chosen."""


def overall(checks: Sequence[Check]) -> str:
    """Every pair agrees: agrees; any disagrees: disagrees; else cannot tell."""
    verdicts = {c.verdict for c in checks}
    if not checks:
        return CANNOT_TELL
    if DISAGREES in verdicts:
        return DISAGREES
    return AGREES if verdicts == {AGREES} else CANNOT_TELL


_UNIT_COLUMNS = (
    *ROW_COLUMNS,
    "base_params",
    "judge",
    "eval_set",
    "source",
)
"""The columns the claims choose their pairs by (the tidy table has many more)."""


def _units(runs: pd.DataFrame) -> list[Row]:
    """The evaluated runs, one per configuration (replicates differ only in their seeds), named
    by the configuration (`replicates.replicate_name`)."""
    units: dict[tuple, Row] = {}
    for row in runs.loc[runs["evaluated"], list(_UNIT_COLUMNS)].to_dict("records"):
        base_run = row["base_run"]
        row["run_name"] = replicate_name(row["run_name"])
        row["base_run"] = replicate_name(base_run) if _known(base_run) else None
        units.setdefault((row["run_name"], row["judge"], row["eval_set"]), row)
    return list(units.values())


def _known(value: Any) -> bool:
    """Not empty: a name, or a number that is not NaN."""
    return isinstance(value, str) or (value is not None and not pd.isna(value))


def _grouped(units: Sequence[Row], by: str) -> dict[Any, list[Row]]:
    """`units` by their `by` value, in order of appearance (units without one left out)."""
    groups: dict[Any, list[Row]] = {}
    for unit in units:
        if _known(unit[by]):
            groups.setdefault(unit[by], []).append(unit)
    return groups


def _single_stage(units: Sequence[Row], method: str) -> list[Row]:
    return [u for u in units if u["method"] == method and not _known(u["base_run"])]


def tuned_above_base(units: Sequence[Row]) -> Claim:
    """The precondition: every tuned run above the base row of its base model."""
    rows = [u for u in units if u["method"] == BASE_METHOD]
    bases = {model: group[0] for model, group in _grouped(rows, "base_model").items()}
    comparisons = [
        Comparison("", unit, bases[unit["base_model"]])
        for unit in units
        if unit["method"] != BASE_METHOD and unit["base_model"] in bases
    ]
    return Claim(
        "Precondition (not a conclusion of the paper): every tuned run scores above its "
        "untuned base, so instruction tuning works in this run set",
        comparisons,
        "no base row (`<model> (base)`) with a tuned run of its model: evaluate the base "
        "(python evaluate.py with no run=)",
    )


def ft_above_lora(units: Sequence[Row]) -> Claim:
    """Conclusion 1, per base model and data size."""
    comparisons = [
        Comparison(f"{f['data']}", f, l_)
        for f in _single_stage(units, METHOD_FT)
        for l_ in _single_stage(units, METHOD_LORA)
        if (f["base_model"], f["data"]) == (l_["base_model"], l_["data"])
    ]
    return Claim(
        "Full fine-tuning scores above LoRA at equal training data, on a base without "
        "instruction tuning",
        comparisons,
        "no LoRA and FT runs of one base model on the same data",
    )


def _largest_above_smallest(group: Sequence[Row], by: str, prefix: str, named: str) -> Comparison:
    """The run of the largest `by` against the run of the smallest, labelled
    `<prefix>, <large's named> against <small's named>`."""
    ordered = sorted(group, key=lambda unit: unit[by])
    small, large = ordered[0], ordered[-1]
    return Comparison(f"{prefix}, {large[named]} against {small[named]}", large, small)


def more_data_helps(units: Sequence[Row]) -> Claim:
    """Conclusion 2: per base model and method, the largest data size against the smallest."""
    comparisons = []
    for method in (METHOD_LORA, METHOD_FT):
        sized = [u for u in _single_stage(units, method) if _known(u["num_samples"])]
        for model, group in _grouped(sized, "base_model").items():
            if len({u["num_samples"] for u in group}) >= 2:
                prefix = f"{model} {method}"
                comparisons.append(_largest_above_smallest(group, "num_samples", prefix, "data"))
    return Claim(
        "More training data improves both LoRA and full fine-tuning",
        comparisons,
        "no method with runs on two data sizes of one base model",
    )


def larger_base_helps_lora(units: Sequence[Row]) -> Claim:
    """Conclusion 3: per data size, LoRA on the largest base against LoRA on the smallest."""
    sized = [u for u in _single_stage(units, METHOD_LORA) if _known(u["base_params"])]
    comparisons = [
        _largest_above_smallest(group, "base_params", str(data), "base_model")
        for data, group in _grouped(sized, "data").items()
        if len({u["base_model"] for u in group}) >= 2
    ]
    return Claim(
        "A larger base model improves LoRA at equal training data",
        comparisons,
        "no LoRA runs of two base model sizes on the same data",
    )


def lora_close_to_incremental_ft(units: Sequence[Row], margin: float) -> Claim:
    """Conclusion 4 (the paper's §4.5), on math (`others`), per instruction-tuned base run:
    non-inferiority of chained LoRA to chained FT within `margin`."""
    chained = [u for u in units if _known(u["base_run"])]
    comparisons = [
        Comparison(f"math and code (`{MATH}`) on `{l_['base_run']}`", l_, f, MATH, margin)
        for l_ in chained
        for f in chained
        if (l_["method"], f["method"]) == (METHOD_LORA, METHOD_FT)
        and (l_["base_run"], l_["data"]) == (f["base_run"], f["data"])
    ]
    return Claim(
        f"On an instruction-tuned base, LoRA comes close to incremental full fine-tuning on "
        f"math (at most {margin:g} below it)",
        comparisons,
        "no LoRA and FT runs chained on the same base run and data",
    )


def claims(runs: pd.DataFrame, close_margin: float) -> list[Claim]:
    """The precondition and the paper's four conclusions, with the comparisons each asks of
    `runs` (the tidy table)."""
    units = _units(runs)
    return [
        tuned_above_base(units),
        ft_above_lora(units),
        more_data_helps(units),
        larger_base_helps_lora(units),
        lora_close_to_incremental_ft(units, close_margin),
    ]


class _Paired:
    """Makes a section's comparisons item by item, one bootstrap stream for all of them."""

    def __init__(self, runs: pd.DataFrame, items: pd.DataFrame | None, stats: StatsConfig):
        self.items, self.stats = items, stats
        self.groups = {(g.name, g.judge, g.eval_set): g for g in replicate_groups(runs)}
        self.scored: set[tuple[str, str]] = set()
        if items is not None:
            first = items.loc[items["repeat"] == 0, ["run_id", "judge"]].drop_duplicates()
            self.scored = set(zip(first["run_id"], first["judge"], strict=True))
        self.rng = np.random.default_rng(stats.seed)

    def group(self, row: Row) -> Group | str:
        """The row's replicate group, or why it has no item scores to compare."""
        if row["source"] == "paper":
            return f"`{row['run_name']}` is the paper's reported row: no item scores"
        if self.items is None:
            return NOT_LOADED
        group = self.groups.get((row["run_name"], row["judge"], row["eval_set"]))
        if group is None or not all((r, group.judge) in self.scored for r in group.run_ids):
            return f"no item scores by {row['judge']} for `{row['run_name']}`"
        return group

    def difference(self, comparison: Comparison) -> Difference | str:
        """The comparison's paired difference, or why it cannot be made."""
        a, b = self.group(comparison.a), self.group(comparison.b)
        for side in (a, b):
            if isinstance(side, str):
                return side
        try:
            result = compare(self.items, a, b, self.stats, self.rng)
        except Mismatch as err:
            return f"not comparable item by item: {err}"
        category = None if comparison.column == AVERAGE else comparison.column
        return difference(result, self.stats.level, category, comparison.null)


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _name(row: Row, groups: dict) -> str:
    group = groups.get((row["run_name"], row["judge"], row["eval_set"]))
    seeds = f" ({group.replicates} replicates)" if group and group.replicates > 1 else ""
    return f"`{row['run_name']}`{seeds}"


def _check(
    comparison: Comparison, found: Difference | str, p_holm: float | None, paired: _Paired
) -> Check:
    """The comparison's verdict and its line."""
    a, b = _name(comparison.a, paired.groups), _name(comparison.b, paired.groups)
    label = f"{comparison.label}: " * bool(comparison.label)
    if isinstance(found, str):
        return Check(CANNOT_TELL, f"{label}{a} against {b} ({found})")
    d, stats = found, paired.stats
    close = comparison.margin is not None
    dropped = f" ({d.dropped} unscored dropped)" if d.dropped else ""
    text = (
        f"{label}{a} {d.a:.3f} against {b} {d.b:.3f}, difference {d.diff:+.3f} "
        f"({stats.level:.0%} paired interval {d.ci_low:+.3f} to {d.ci_high:+.3f}"
        f"{f'; close: above {d.null:+.3f}' * close}), {d.items} items{dropped}, "
        f"p{f' against {d.null:+.3f}' * close} {_p(d.p)}, Holm {_p(p_holm)}"
    )
    if p_holm >= stats.alpha:
        return Check(CANNOT_TELL, text, d, p_holm)
    return Check(AGREES if d.diff > d.null else DISAGREES, text, d, p_holm)


def _head_to_head_verdict(low: float, high: float, close: bool) -> str:
    """Whether A's win-rate interval lies on one side of an even split, and which."""
    if low > 0.5:
        return AGREES
    if high < 0.5 and not close:
        return DISAGREES
    return CANNOT_TELL


def head_to_head_lines(comparison: Comparison, rates: pd.DataFrame | None) -> tuple[str, ...]:
    """Per pairwise judge (and pair of runs) that judged the comparison's two runs in either
    order, matched by name without their seeds: A's win rate against B (`rates`:
    `pairwise.win_rates`' table) and whether it agrees with the claim."""
    if rates is None or rates.empty:
        return ()
    cells = win_rate_cells(rates)
    a, b = comparison.a["run_name"], comparison.b["run_name"]
    mine = cells[
        (cells["run"].map(replicate_name) == a) & (cells["opponent"].map(replicate_name) == b)
    ]
    close = comparison.margin is not None
    return tuple(
        f"head to head ({c.judge}): `{c.run}` wins {c.win_rate:.2f} [{c.ci_low:.2f}, "
        f"{c.ci_high:.2f}] of items against `{c.opponent}` (ties half; {c.judged} items): "
        f"{_head_to_head_verdict(c.ci_low, c.ci_high, close)}"
        for c in mine.itertuples(index=False)
    )


def _pairwise_rates(pairwise: pd.DataFrame | None, stats: StatsConfig) -> pd.DataFrame | None:
    if pairwise is None or pairwise.empty:
        return None
    return win_rates(pairwise, samples=stats.bootstrap_samples, level=stats.level, seed=stats.seed)


def check_findings(
    runs: pd.DataFrame,
    items: pd.DataFrame | None,
    stats: StatsConfig | None = None,
    pairwise: pd.DataFrame | None = None,
) -> list[Finding]:
    """The precondition and the paper's four conclusions, checked on `runs` (the tidy table;
    one judge and eval set: runs.sections) with their item scores (`items.load_item_scores`;
    None: not loaded, so every comparison cannot tell). Holm corrects over all comparisons.
    With `pairwise` (item verdicts, `pairwise_section.load_pairwise_verdicts`), each check of
    two runs judged head to head also holds that judge's win rate (`head_to_head_lines`)."""
    paired = _Paired(runs, items, stats or StatsConfig())
    rates = _pairwise_rates(pairwise, paired.stats)
    asked = claims(runs, paired.stats.close_margin)
    found = [[paired.difference(c) for c in claim.comparisons] for claim in asked]
    p_values = [d.p for row in found for d in row if isinstance(d, Difference)]
    adjusted = iter(holm(p_values) if p_values else [])
    findings = []
    for claim, differences in zip(asked, found, strict=True):
        checks = [
            replace(
                _check(c, d, None if isinstance(d, str) else float(next(adjusted)), paired),
                head_to_head=head_to_head_lines(c, rates),
            )
            for c, d in zip(claim.comparisons, differences, strict=True)
        ]
        findings.append(
            Finding(claim.text, overall(checks), checks, None if checks else claim.missing)
        )
    return findings


def _preamble(stats: StatsConfig) -> list[str]:
    level, close_margin = f"{stats.level:.0%}", stats.close_margin
    return [
        "## The paper's findings, checked against these runs",
        "",
        "> Each comparison is paired: both runs answered the same items, so A − B is taken "
        "over the items both scored (an item either could not score is dropped for both), with "
        f"a {level} paired-bootstrap interval ({stats.bootstrap_samples} draws; a replicated "
        "configuration's seeds resampled) and a two-sided p-value. **The Holm-adjusted p "
        "decides**, over every comparison of the section: **agrees** when it is below "
        f"{stats.alpha:g} with the difference in the paper's direction, **disagrees** when it "
        "is below with the difference the other way, **cannot tell** otherwise or when the "
        f'runs cannot be compared (the reason is given). "Close" (at most {close_margin:g} '
        f"below) tests A − B against −{close_margin:g} instead of 0: agrees above it, "
        "disagrees below it. The interval shown is not adjusted. A claim checked on several "
        "pairs agrees only when every pair does.",
        "",
    ]


def _resolution_note(findings: Sequence[Finding], stats: StatsConfig) -> list[str]:
    """Why nothing can agree when the bootstrap is too coarse for Holm over this many tests."""
    tested = sum(c.p_holm is not None for f in findings for c in f.checks)
    # Holm's first step needs the smallest p, 1/(draws + 1), below alpha / tested.
    needed = int(tested / stats.alpha + 1e-9)
    if not tested or stats.bootstrap_samples >= needed:
        return []
    return [
        f"Note: {stats.bootstrap_samples} bootstrap draws give no p below "
        f"1/{stats.bootstrap_samples + 1}, too coarse for Holm over {tested} comparisons: "
        f"raise stats.bootstrap_samples to at least {needed}.",
        "",
    ]


_HEAD_TO_HEAD_NOTE = (
    "Where a pairwise judge compared a pair's two runs head to head, a line under it gives A's "
    "win rate against B (a tie half) with its interval: agrees when the interval lies above "
    '0.5, disagrees when below (for "close": cannot tell, a loss does not say by how much), '
    "cannot tell otherwise. It does not change the pair's verdict."
)


def findings_markdown(
    runs: pd.DataFrame,
    items: pd.DataFrame | None,
    stats: StatsConfig | None = None,
    pairwise: pd.DataFrame | None = None,
    beyond: Sequence[Finding] = (),
) -> str:
    """The findings section: per judge and eval set, each claim, its verdict and its pairs
    (with `pairwise` verdicts, each pair judged head to head with its win rate too); then the
    `beyond` findings, which no judge decides (the benchmarks' learned and forgotten)."""
    stats = stats or StatsConfig()
    lines = _preamble(stats)
    if pairwise is not None and len(pairwise):
        lines += [_HEAD_TO_HEAD_NOTE, ""]
    evaluated = [s for s in sections(runs) if s.evaluated]
    if not evaluated:
        lines += ["No run has evaluation metrics: nothing to check.", ""]
    for section in evaluated:
        if len(evaluated) > 1:
            lines += [f"### {_title(section)}", ""]
        findings = check_findings(section.runs, items, stats, pairwise)
        lines += _resolution_note(findings, stats)
        for number, finding in enumerate(findings):
            lines += _finding_lines("0." if number == 0 else f"{number}.", finding)
        lines.append("")
    if beyond:
        lines += ["Beyond the paper (benchmarks, whatever the judge):", ""]
        for finding in beyond:
            lines += _finding_lines("-", finding)
        lines.append("")
    return "\n".join(lines)


def _finding_lines(label: str, finding: Finding) -> list[str]:
    """A claim with its verdict, then what is missing or each pair's check."""
    lines = [f"{label} {finding.claim}: **{finding.verdict}**"]
    if finding.missing:
        lines.append(f"   - {finding.missing}")
    for check in finding.checks:
        lines.append(f"   - {check.verdict}: {check.text}")
        lines += [f"     - {line}" for line in check.head_to_head]
    return lines


def _title(section: Section) -> str:
    return f"Judge `{section.judge}`, eval set `{section.eval_set}`"


def write_findings(
    runs: pd.DataFrame,
    items: pd.DataFrame | None,
    out_dir: str | Path,
    stats: StatsConfig | None = None,
    pairwise: pd.DataFrame | None = None,
    beyond: Sequence[Finding] = (),
) -> str:
    """Write `findings.md` into `out_dir`; returns its text (the report's section). `pairwise`:
    item verdicts of head-to-head judging, shown under the pairs they judged; `beyond`:
    findings no judge decides, after the paper's."""
    text = findings_markdown(runs, items, stats, pairwise, beyond)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.md").write_text(text, encoding="utf-8")
    return text
