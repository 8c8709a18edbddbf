"""The paper's conclusions, checked against a run set: for each, whether these runs agree,
disagree or cannot tell, from their scores and 95% intervals.

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

Rules. A claim "A scores above B" is checked on their scores' 95% intervals: it **agrees** when
A's interval lies above B's, **disagrees** when B's lies above A's, and **cannot tell** when they
overlap. A claim "A comes close to B" is checked on the interval of A − B (from the two
intervals' half-widths, combined as independent errors): it agrees when that interval lies
above −`close_margin`, disagrees when it lies below, and cannot tell otherwise. A claim checked
on several pairs (each data size, each method) agrees when every pair agrees, disagrees when
any pair disagrees, and cannot tell otherwise. Runs the claim needs that are missing, or that
lack an interval, give "cannot tell", naming what is missing. Scores of different judges or
eval sets are never compared: each such section of runs is checked on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lorabench.analysis.runs import (
    BASE_METHOD,
    CATEGORY_CI_HIGH,
    CATEGORY_CI_LOW,
    Section,
    sections,
)

AGREES = "agrees"
DISAGREES = "disagrees"
CANNOT_TELL = "cannot tell"

CLOSE_MARGIN = 0.05
"""How far below incremental FT the LoRA row may score and still "come close", on the 0-1
score scale: the paper's two rows are 0.026 apart on math and code, 0.009 on average."""

MATH = "others"
"""The category that holds the eval set's math items (with code), as the paper reports it."""

AVERAGE = "average_score"


@dataclass(frozen=True)
class Score:
    """One run's score on one column, with its 95% interval when known."""

    run: str
    value: float
    low: float | None
    high: float | None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self) -> str:
        if not self.has_interval:
            return f"`{self.run}` {self.value:.3f}"
        return f"`{self.run}` {self.value:.3f} ({self.low:.3f}–{self.high:.3f})"


@dataclass(frozen=True)
class Check:
    """One comparison of two runs, and what it says about the claim."""

    verdict: str
    text: str


@dataclass(frozen=True)
class Finding:
    """A conclusion of the paper and what these runs say about it."""

    claim: str
    verdict: str
    checks: list[Check] = field(default_factory=list)
    missing: str | None = None
    """Why no pair of runs could be compared (the verdict is then "cannot tell")."""


def _value(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return None if value is None or pd.isna(value) else float(value)


def score(row: pd.Series, column: str = AVERAGE) -> Score | None:
    """The run's score on `column` (the average, or a category) with its interval."""
    value = _value(row, column)
    if value is None:
        return None
    if column == AVERAGE:
        low, high = _value(row, "ci_low"), _value(row, "ci_high")
    else:
        low, high = (
            _value(row, f"{column}{CATEGORY_CI_LOW}"),
            _value(row, f"{column}{CATEGORY_CI_HIGH}"),
        )
    return Score(str(row["run_name"]), value, low, high)


def above(a: Score, b: Score, label: str = "") -> Check:
    """The claim that `a` scores above `b` (`label` says which pair this is)."""
    shown = f"{label}: " * bool(label) + f"{a.text()} against {b.text()}"
    if not (a.has_interval and b.has_interval):
        return Check(CANNOT_TELL, f"{shown} (no interval to compare)")
    if a.low > b.high:
        return Check(AGREES, shown)
    if b.low > a.high:
        return Check(DISAGREES, shown)
    return Check(CANNOT_TELL, f"{shown} (the intervals overlap)")


def close(a: Score, b: Score, label: str, margin: float = CLOSE_MARGIN) -> Check:
    """The claim that `a` comes close to `b`: at most `margin` below it."""
    if not (a.has_interval and b.has_interval):
        return Check(CANNOT_TELL, f"{label}: {a.text()} against {b.text()} (no interval)")
    half = math.hypot((a.high - a.low) / 2, (b.high - b.low) / 2)
    diff = a.value - b.value
    shown = (
        f"{label}: {a.text()} against {b.text()}, difference {diff:+.3f} "
        f"({diff - half:+.3f} to {diff + half:+.3f}; close: above {-margin:+.3f})"
    )
    if diff - half >= -margin:
        return Check(AGREES, shown)
    if diff + half < -margin:
        return Check(DISAGREES, shown)
    return Check(CANNOT_TELL, shown)


def overall(checks: Sequence[Check]) -> str:
    """Every pair agrees: agrees; any disagrees: disagrees; else cannot tell."""
    verdicts = {c.verdict for c in checks}
    if not checks:
        return CANNOT_TELL
    if DISAGREES in verdicts:
        return DISAGREES
    return AGREES if verdicts == {AGREES} else CANNOT_TELL


def _finding(claim: str, checks: list[Check], missing: str) -> Finding:
    return Finding(claim, overall(checks), checks, None if checks else missing)


def _single_stage(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    return runs[(runs["method"] == method) & runs["base_run"].isna()]


def _scores(pairs: Iterable[tuple[pd.Series, pd.Series]], column: str = AVERAGE):
    for a, b in pairs:
        sa, sb = score(a, column), score(b, column)
        if sa is not None and sb is not None:
            yield a, b, sa, sb


def tuned_above_base(runs: pd.DataFrame) -> Finding:
    """The precondition: every tuned run above the base row of its base model."""
    bases = runs[runs["method"] == BASE_METHOD]
    tuned = runs[runs["method"] != BASE_METHOD]
    root = tuned["base_model"]
    pairs = [
        (run, bases[bases["base_model"] == model].iloc[0])
        for (_, run), model in zip(tuned.iterrows(), root, strict=True)
        if (bases["base_model"] == model).any()
    ]
    checks = [above(sa, sb) for _, _, sa, sb in _scores(pairs)]
    return _finding(
        "Precondition (not a conclusion of the paper): every tuned run scores above its "
        "untuned base, so instruction tuning works in this run set",
        checks,
        "no base row (`<model> (base)`) with a tuned run of its model: evaluate the base "
        "(python evaluate.py with no run=)",
    )


def ft_above_lora(runs: pd.DataFrame) -> Finding:
    """Conclusion 1, per base model and data size."""
    lora, ft = _single_stage(runs, "lora"), _single_stage(runs, "ft")
    pairs = [
        (f, l_)
        for _, f in ft.iterrows()
        for _, l_ in lora.iterrows()
        if (f["base_model"], f["data"]) == (l_["base_model"], l_["data"])
    ]
    checks = [above(sf, sl, f"{f['data']}") for f, _, sf, sl in _scores(pairs)]
    return _finding(
        "Full fine-tuning scores above LoRA at equal training data, on a base without "
        "instruction tuning",
        checks,
        "no LoRA and FT runs of one base model on the same data",
    )


def _largest_above_smallest(group: pd.DataFrame, by: str, prefix: str, named: str) -> list[Check]:
    """The run of the largest `by` against the run of the smallest, labelled
    `<prefix>, <large's named> against <small's named>`."""
    group = group.sort_values(by)
    small, large = group.iloc[0], group.iloc[-1]
    label = f"{prefix}, {large[named]} against {small[named]}"
    return [above(sl, ss, label) for _, _, sl, ss in _scores([(large, small)])]


def more_data_helps(runs: pd.DataFrame) -> Finding:
    """Conclusion 2: per base model and method, the largest data size against the smallest."""
    checks = []
    for method in ("lora", "ft"):
        single = _single_stage(runs, method).dropna(subset=["num_samples"])
        for model, group in single.groupby("base_model", sort=False):
            if group["num_samples"].nunique() < 2:
                continue
            checks += _largest_above_smallest(group, "num_samples", f"{model} {method}", "data")
    return _finding(
        "More training data improves both LoRA and full fine-tuning",
        checks,
        "no method with runs on two data sizes of one base model",
    )


def larger_base_helps_lora(runs: pd.DataFrame) -> Finding:
    """Conclusion 3: per data size, LoRA on the largest base against LoRA on the smallest."""
    lora = _single_stage(runs, "lora").dropna(subset=["base_params"])
    checks = []
    for data, group in lora.groupby("data", sort=False):
        if group["base_model"].nunique() < 2:
            continue
        checks += _largest_above_smallest(group, "base_params", str(data), "base_model")
    return _finding(
        "A larger base model improves LoRA at equal training data",
        checks,
        "no LoRA runs of two base model sizes on the same data",
    )


def lora_close_to_incremental_ft(runs: pd.DataFrame, margin: float = CLOSE_MARGIN) -> Finding:
    """Conclusion 4, on math (`others`), per instruction-tuned base run."""
    chained = runs[runs["base_run"].notna()]
    lora, ft = chained[chained["method"] == "lora"], chained[chained["method"] == "ft"]
    pairs = [
        (l_, f)
        for _, l_ in lora.iterrows()
        for _, f in ft.iterrows()
        if (l_["base_run"], l_["data"]) == (f["base_run"], f["data"])
    ]
    checks = [
        close(sl, sf, f"math and code (`{MATH}`) on `{l_['base_run']}`", margin)
        for l_, _, sl, sf in _scores(pairs, MATH)
    ]
    return _finding(
        f"On an instruction-tuned base, LoRA comes close to incremental full fine-tuning on "
        f"math (at most {margin:g} below it)",
        checks,
        "no LoRA and FT runs chained on the same base run and data",
    )


def check_findings(runs: pd.DataFrame, close_margin: float = CLOSE_MARGIN) -> list[Finding]:
    """The precondition and the paper's four conclusions, checked on one section of runs
    (one judge and eval set: runs.sections)."""
    return [
        tuned_above_base(runs),
        ft_above_lora(runs),
        more_data_helps(runs),
        larger_base_helps_lora(runs),
        lora_close_to_incremental_ft(runs, close_margin),
    ]


def findings_markdown(runs: pd.DataFrame, close_margin: float = CLOSE_MARGIN) -> str:
    """The findings section: per judge and eval set, each claim, its verdict and its pairs."""
    lines = [
        "## The paper's findings, checked against these runs",
        "",
        "> Each comparison uses the runs' scores and their 95% intervals: **agrees** when the "
        "intervals do not overlap in the paper's direction, **disagrees** when they do not "
        "overlap the other way, **cannot tell** when they overlap or the runs it needs are "
        f'missing; "close" means at most {close_margin:g} below, with 95% confidence. A claim '
        "checked on several pairs agrees only when every pair does.",
        "",
    ]
    evaluated = [s for s in sections(runs) if s.evaluated]
    if not evaluated:
        return "\n".join([*lines, "No run has evaluation metrics: nothing to check.", ""])
    for section in evaluated:
        if len(evaluated) > 1:
            lines += [f"### {_title(section)}", ""]
        for number, finding in enumerate(check_findings(section.runs, close_margin)):
            label = "0." if number == 0 else f"{number}."
            lines.append(f"{label} {finding.claim}: **{finding.verdict}**")
            if finding.missing:
                lines.append(f"   - {finding.missing}")
            lines += [f"   - {check.verdict}: {check.text}" for check in finding.checks]
        lines.append("")
    return "\n".join(lines)


def _title(section: Section) -> str:
    return f"Judge `{section.judge}`, eval set `{section.eval_set}`"


def write_findings(runs: pd.DataFrame, out_dir: str | Path) -> str:
    """Write `findings.md` into `out_dir`; returns its text (the report's section)."""
    text = findings_markdown(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.md").write_text(text, encoding="utf-8")
    return text
