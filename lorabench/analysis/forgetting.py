"""Learned and forgotten per run, against the model it started from (Biderman et al. 2024, "LoRA
Learns Less and Forgets Less"), and whether LoRA forgets less than full fine-tuning.

Per tuned run (`benchmarks.Subject`: its benchmark results and those of its starting run, the
base row for a first-stage run, the base run for a §4.5 row), on the items both scored (paired
by item key, per task; an item one side lacks is dropped and counted):

- **learned** = the mean over the *target* tasks of the per-task mean of (run − start): the skill
  gained (GSM8K; the demo's held-out math);
- **forgotten** = the mean over the *retention* tasks of the per-task mean of (start − run),
  positive = ability lost. With several retention tasks each counts once, whatever its item
  count: Biderman et al.'s "mean of HellaSwag, ARC-Challenge and WinoGrande";
- **Δ world perplexity** = run − start, the perplexity exp(Σ nll / Σ tokens) over the held-out
  world documents both scored (forgetting in loss terms; positive = worse).

Each comes with a paired percentile bootstrap interval at `stats.level`: items resampled with
replacement within each task (documents for the perplexity), the same draw for both sides
(`bootstrap.item_draws` / `macro_average_draws`, as the paired comparisons of judge scores).
Every estimate draws from a generator seeded with `stats.seed` afresh, so a run's interval is
the same whichever other runs the report holds. A run without results, or without a starting
run that has them, is skipped with the reason, never given a 0; a part without a task of its
role (no target task) is missing with the reason.

**The verdict** (LoRA against FT at the same base model and data, or chained on the same base
run and data: the study's comparisons, `paired.LORA_VS_FT` and `INCREMENTAL_LORA_VS_FT`): the
paired differences LoRA − FT of learned and of forgotten over the items all four results
scored (both runs and both starts), each with its interval. Reading the two intervals (above
0, below 0, or holding 0):

- learned holds 0 and forgotten below 0: "at equal learning, LoRA forgets less than FT" (agrees);
- learned above 0 and forgotten below 0: LoRA learns more and forgets less (agrees: if forgetting
  grows with learning, at equal learning LoRA would forget less still);
- learned holds 0 and forgotten above 0, or learned below and forgotten above: the converse
  (disagrees);
- both below ("LoRA forgets less but also learns less") or both above: cannot tell at equal
  learning; so is a forgotten interval that holds 0.

The finding agrees when every pair agrees (an intersection-union reading, which needs no
multiplicity adjustment); the intervals are not adjusted, so one pair disagreeing among many
may be chance.

Why this paired reading and not a frontier comparison (FT's forgetting interpolated at LoRA's
learned level along FT's data-size curve): the pair is compared on the very same items from the
very same starting model, with no model of a curve; the interpolation needs FT's learned to rise
with data and to bracket LoRA's learned level, which it does not where LoRA learns less than FT
at every size (the paper's case, and the demo's with three sizes), so it would extrapolate or
cannot tell, and it assumes a straight line between sizes. The paired reading keeps "learns
less and forgets less" visible as such instead of calling it a win, which is the question the
learned axis exists to answer. "Equal learning" means the interval holds 0, at the interval's
resolution: the table shows its width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lorabench import contract
from lorabench.analysis.benchmarks import RunBenchmarks, Subject
from lorabench.analysis.bootstrap import (
    item_draws,
    macro_average_draws,
    percentile_interval,
    replicate_draws,
)
from lorabench.analysis.findings import AGREES, CANNOT_TELL, DISAGREES, Check, Finding, overall
from lorabench.analysis.paired import COMPARED_METHODS, INCREMENTAL_LORA_VS_FT, LORA_VS_FT
from lorabench.analysis.runs import parse_run_name
from lorabench.config.schema import StatsConfig

TARGET, RETENTION = contract.BENCH_ROLE_TARGET, contract.BENCH_ROLE_RETENTION
CLAIM = (
    "At equal learning, LoRA forgets less than full fine-tuning (Biderman et al. 2024; "
    "benchmarks, paired over items)"
)
_NO_PAIR = "no LoRA and FT runs with benchmark results on one base model (or base run) and data"


@dataclass(frozen=True)
class Estimate:
    """A paired estimate with its bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    items: int
    """Items (documents) paired, over its tasks."""
    dropped: int
    """Items of its tasks that some side did not score: left out."""
    tasks: tuple[str, ...] = ()

    @property
    def side(self) -> int:
        """+1 when the interval lies above 0, −1 below, 0 when it holds 0."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0


Part = Estimate | str
"""An estimate, or why there is none."""


@dataclass(frozen=True)
class RunChange:
    """What a run learned and forgot against its starting run."""

    subject: Subject
    learned: Part | None = None
    forgotten: Part | None = None
    world: Part | None = None
    """Δ world perplexity (run − start)."""

    @property
    def skipped(self) -> str | None:
        """Why the run is not analysed at all, or None."""
        return self.subject.missing


def contrasts(
    sides: Sequence[RunBenchmarks], weights: Sequence[float], role: str
) -> tuple[dict[str, np.ndarray], int] | str:
    """Per task of `role` in every side (with that role in each), the per-item Σ weight × value
    over the items every side scored, and the items left out; or why there is no such task."""
    tasks = [t for t in sides[0].tasks(role) if all(s.roles.get(t) == role for s in sides)]
    if not tasks:
        names = " and ".join(f"`{name}`" for name in dict.fromkeys(s.run_name for s in sides))
        return f"no {role} task in the results of {names}"
    out, dropped = {}, 0
    for task in tasks:
        series = [s.items[task] for s in sides]
        keys = series[0].index
        for other in series[1:]:
            keys = keys.intersection(other.index)
        union = len(set().union(*(set(s.index) for s in series)))
        if keys.empty:
            return f"{role} task {task!r}: no item scored by every run"
        keys = keys.sort_values()
        out[task] = sum(
            w * s.loc[keys].to_numpy(dtype=float) for w, s in zip(weights, series, strict=True)
        )
        dropped += union - len(keys)
    return out, dropped


def estimate(values: Mapping[str, np.ndarray], dropped: int, stats: StatsConfig) -> Estimate:
    """The mean over tasks of each task's mean of `values` (per-item paired contrasts), with its
    percentile bootstrap interval (items resampled within each task; seeded by `stats.seed`)."""
    matrices = {task: np.asarray(v, dtype=float)[None, :] for task, v in values.items()}
    rng = np.random.default_rng(stats.seed)
    items = item_draws(matrices, stats.bootstrap_samples, rng)
    replicates = replicate_draws(1, stats.bootstrap_samples, rng)
    value, draws = macro_average_draws(matrices, items, replicates)
    low, high = percentile_interval(draws, stats.level)
    count = sum(m.shape[1] for m in matrices.values())
    return Estimate(value, float(low), float(high), count, dropped, tuple(matrices))


def _part(sides: Sequence[RunBenchmarks], weights: Sequence[float], role: str, stats) -> Part:
    found = contrasts(sides, weights, role)
    return found if isinstance(found, str) else estimate(*found, stats)


def perplexity_change(run: RunBenchmarks, start: RunBenchmarks, stats: StatsConfig) -> Part | None:
    """Perplexity over the world documents both scored, run − start, with a paired bootstrap
    interval over documents; why there is none; None when neither has world documents (no
    held-out world text: not the demo's bases)."""
    if run.world is None and start.world is None:
        return None
    if run.world is None or start.world is None:
        lacking = run if run.world is None else start
        return f"`{lacking.run_name}` has no world-perplexity items"
    keys = run.world.index.intersection(start.world.index).sort_values()
    if keys.empty:
        return "no world document scored by both"
    dropped = len(run.world.index.union(start.world.index)) - len(keys)
    a, b = run.world.loc[keys].to_numpy(dtype=float), start.world.loc[keys].to_numpy(dtype=float)
    rng = np.random.default_rng(stats.seed)
    documents = {"documents": a[None, :, 0]}  # one row of len(keys) items, as item_draws reads
    drawn = item_draws(documents, stats.bootstrap_samples, rng)["documents"]

    def ppl(docs: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        return np.exp(docs[rows, 0].sum(axis=-1) / docs[rows, 1].sum(axis=-1))

    value = float(ppl(a, slice(None)) - ppl(b, slice(None)))
    low, high = percentile_interval(ppl(a, drawn) - ppl(b, drawn), stats.level)
    return Estimate(
        value, float(low), float(high), len(keys), dropped, (contract.BENCH_WORLD_PERPLEXITY_TASK,)
    )


def run_change(subject: Subject, stats: StatsConfig) -> RunChange:
    """`subject`'s learned, forgotten and Δ world perplexity against its start (module doc)."""
    if subject.missing is not None:
        return RunChange(subject)
    sides = (subject.bench, subject.start)
    return RunChange(
        subject,
        learned=_part(sides, (1, -1), TARGET, stats),
        forgotten=_part(sides, (-1, 1), RETENTION, stats),
        world=perplexity_change(subject.bench, subject.start, stats),
    )


def run_changes(subjects: Sequence[Subject], stats: StatsConfig | None = None) -> list[RunChange]:
    """`run_change` of every subject, in their order."""
    return [run_change(s, stats or StatsConfig()) for s in subjects]


# The verdict ------------------------------------------------------------------------------------

READINGS = {
    (0, -1): (AGREES, "at equal learning, LoRA forgets less than FT"),
    (1, -1): (AGREES, "LoRA learns more and forgets less than FT"),
    (0, 1): (DISAGREES, "at equal learning, LoRA forgets more than FT"),
    (-1, 1): (DISAGREES, "LoRA learns less and forgets more than FT"),
    (-1, -1): (CANNOT_TELL, "LoRA forgets less but also learns less than FT"),
    (1, 1): (CANNOT_TELL, "LoRA learns more but also forgets more than FT"),
}
"""(side of the learned difference's interval, of the forgotten one's) → verdict and reading;
a forgotten interval that holds 0 cannot tell."""
_LEARNED_SIDE = {
    -1: "LoRA learns less",
    0: "learning equal within the interval",
    1: "LoRA learns more",
}


def reading(learned: Estimate, forgotten: Estimate) -> tuple[str, str]:
    """The verdict and reading of a pair's differences (LoRA − FT), as the module doc says."""
    key = (learned.side, forgotten.side)
    if key in READINGS:
        return READINGS[key]
    return CANNOT_TELL, f"{_LEARNED_SIDE[learned.side]}; no difference in forgetting can be told"


@dataclass(frozen=True)
class PairChange:
    """LoRA against FT, learned and forgotten compared item by item (LoRA − FT)."""

    kind: str
    lora: RunChange
    ft: RunChange
    learned: Part | None = None
    forgotten: Part | None = None
    verdict: str = CANNOT_TELL
    reading: str = ""

    @property
    def label(self) -> str:
        return f"{self.lora.subject.run_name} vs {self.ft.subject.run_name}"


def _pair_key(subject: Subject) -> tuple:
    """What a LoRA and an FT run must share to be compared: a first-stage run its base model,
    a chained run its base run; the data; and every other axis of its name (seed for seed)."""
    axes = parse_run_name(subject.run_name).get("axes")
    start = subject.start_name if subject.chained else subject.base_model
    return subject.chained, start, subject.data, axes


def compare_pair(kind: str, lora: RunChange, ft: RunChange, stats: StatsConfig) -> PairChange:
    """The paired differences LoRA − FT of learned and forgotten, and their reading."""
    skipped = [c for c in (lora, ft) if c.skipped]
    if skipped:
        why = "; ".join(f"`{c.subject.run_name}`: {c.skipped}" for c in skipped)
        return PairChange(kind, lora, ft, reading=f"not analysed ({why})")
    sides = (lora.subject.bench, lora.subject.start, ft.subject.bench, ft.subject.start)
    learned = _part(sides, (1, -1, -1, 1), TARGET, stats)
    forgotten = _part(sides, (-1, 1, 1, -1), RETENTION, stats)
    if isinstance(learned, str) or isinstance(forgotten, str):
        why = "; ".join(p for p in (learned, forgotten) if isinstance(p, str))
        return PairChange(kind, lora, ft, learned, forgotten, reading=f"cannot compare ({why})")
    if _target_unmoved(lora, ft):
        text = f"{UNMOVED}: there is no learning to be equal at"
        return PairChange(kind, lora, ft, learned, forgotten, CANNOT_TELL, text)
    verdict, text = reading(learned, forgotten)
    return PairChange(kind, lora, ft, learned, forgotten, verdict, text)


UNMOVED = "neither run changed a single target item against its start"


def _target_unmoved(*changes: RunChange) -> bool:
    """Whether every run's learned interval is [0, 0]: no target item changed at all (a target
    task the models cannot do, or one that no tuning reaches), so "equal learning" says nothing."""
    return all(
        isinstance(c.learned, Estimate) and c.learned.ci_low == c.learned.ci_high == 0
        for c in changes
    )


def pair_changes(
    changes: Sequence[RunChange], stats: StatsConfig | None = None
) -> list[PairChange]:
    """LoRA against FT (method labels `lora` and `ft`) wherever both share `_pair_key`."""
    stats = stats or StatsConfig()
    lora, ft = COMPARED_METHODS
    by_key: dict[tuple, dict[str, RunChange]] = {}
    for change in changes:
        if change.subject.method in COMPARED_METHODS:
            by_key.setdefault(_pair_key(change.subject), {})[change.subject.method] = change
    return [
        compare_pair(INCREMENTAL_LORA_VS_FT if key[0] else LORA_VS_FT, pair[lora], pair[ft], stats)
        for key, pair in by_key.items()
        if lora in pair and ft in pair
    ]


def interval(part: Part | None, digits: int = 3) -> str:
    """`+0.123 [+0.045, +0.201]`, or `—` with no estimate."""
    if not isinstance(part, Estimate):
        return "—"
    f = f"+.{digits}f"
    return f"{part.value:{f}} [{part.ci_low:{f}}, {part.ci_high:{f}}]"


def _check(pair: PairChange, level: float) -> Check:
    head = f"{pair.kind}: `{pair.lora.subject.run_name}` against `{pair.ft.subject.run_name}`"
    if not isinstance(pair.learned, Estimate) or not isinstance(pair.forgotten, Estimate):
        return Check(CANNOT_TELL, f"{head} ({pair.reading})")
    return Check(
        pair.verdict,
        f"{head}: learned LoRA − FT {interval(pair.learned)}, forgotten LoRA − FT "
        f"{interval(pair.forgotten)} ({level:.0%} paired intervals; {pair.learned.items} target, "
        f"{pair.forgotten.items} retention items): {pair.reading}",
    )


def forgetting_finding(pairs: Sequence[PairChange], stats: StatsConfig | None = None) -> Finding:
    """The finding "at equal learning, LoRA forgets less than FT": a check per pair, agreeing
    when every pair agrees (`findings.overall`)."""
    level = (stats or StatsConfig()).level
    checks = [_check(p, level) for p in pairs]
    return Finding(CLAIM, overall(checks), checks, None if checks else _NO_PAIR)


# Tables -----------------------------------------------------------------------------------------

MEASURES = {
    contract.FORGETTING_LEARNED: "learned",
    contract.FORGETTING_FORGOTTEN: "forgotten",
    contract.FORGETTING_WORLD_PERPLEXITY: "world",
}
"""The contract's measure names → `RunChange`'s attributes."""


def _columns(prefix: str, part: Part | None) -> dict[str, object]:
    if isinstance(part, Estimate):
        return {
            prefix: part.value,
            f"{prefix}_ci_low": part.ci_low,
            f"{prefix}_ci_high": part.ci_high,
            f"{prefix}_items": part.items,
            f"{prefix}_dropped": part.dropped,
            f"{prefix}_tasks": " ".join(part.tasks),
            f"{prefix}_note": "",
        }
    return {f"{prefix}_note": part or ""}


def change_table(changes: Sequence[RunChange]) -> pd.DataFrame:
    """One row per run: name, starting run, method, data, per measure its value, interval,
    items, dropped items and note (why it is missing), and `skipped` (why no measure at all)."""
    rows = []
    for c in changes:
        s = c.subject
        row = {"run": s.run_name, "started_from": s.start_name, "method": s.method, "data": s.data}
        row |= {"chained": s.chained, "skipped": c.skipped or ""}
        for measure, attribute in MEASURES.items():
            row |= _columns(measure, getattr(c, attribute))
        rows.append(row)
    return pd.DataFrame(rows)


def pair_table(pairs: Sequence[PairChange]) -> pd.DataFrame:
    """One row per pair: kind, the LoRA and FT runs, the two differences with their intervals,
    the verdict and its reading."""
    rows = []
    for p in pairs:
        row = {"comparison": p.kind, "lora": p.lora.subject.run_name, "ft": p.ft.subject.run_name}
        row |= _columns(contract.FORGETTING_LEARNED_DIFFERENCE, p.learned)
        row |= _columns(contract.FORGETTING_FORGOTTEN_DIFFERENCE, p.forgotten)
        rows.append(row | {"verdict": p.verdict, "reading": p.reading})
    return pd.DataFrame(rows)


@dataclass
class Forgetting:
    """The analysis of a run set: per run, per LoRA-vs-FT pair, and the finding."""

    changes: list[RunChange]
    pairs: list[PairChange]
    finding: Finding
    stats: StatsConfig = field(default_factory=StatsConfig)

    @property
    def analysed(self) -> list[RunChange]:
        return [c for c in self.changes if not c.skipped]


def analyse(subjects: Sequence[Subject], stats: StatsConfig | None = None) -> Forgetting:
    """Every subject's change, the LoRA-vs-FT pairs among them, and the finding."""
    stats = stats or StatsConfig()
    changes = run_changes(subjects, stats)
    pairs = pair_changes(changes, stats)
    return Forgetting(changes, pairs, forgetting_finding(pairs, stats), stats)
