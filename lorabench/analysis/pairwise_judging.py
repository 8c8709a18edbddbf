"""The head-to-head stage of a sweep: its runs' answers judged pairwise, pair by pair, and the
statistics of those verdicts (`lorabench.analysis.pairwise`) logged to the sweep's parent.

The pairs are the study's own comparisons (`paired.paper_pairs`: LoRA vs FT per base model and
data size, the larger base vs the smaller, each chained run vs its base, chained LoRA vs chained
FT, §4.5), or the named ones (`stats.pairs`-style `A vs B`, run or replicate-group names). A
pair is judged on the items both runs answered (matched by `items.item_key`), read from each
run's headline judgements artifact; two runs evaluated on different eval sets are refused,
naming what differs. A pair that cannot be judged (a run missing, refused, no answers) is
skipped with its reason and the other pairs go on.

    result = head_to_head(client, runs, ReferencePairwiseJudge(), stats=StatsConfig())
    record_head_to_head(client, parent_id, result)   # pairwise/ artifacts and metrics
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.items import item_key
from lorabench.analysis.paired import find_group, named_pairs, paper_pairs
from lorabench.analysis.pairwise import (
    ALL,
    bradley_terry,
    category_win_rates,
    length_controlled_win_rates,
    position_consistency,
    win_rates,
)
from lorabench.analysis.replicates import Group, replicate_groups
from lorabench.analysis.runs import run_frame
from lorabench.config.schema import StatsConfig
from lorabench.errors import LorabenchError
from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging.pairwise import PairwiseJudge

EVAL_SET_TAGS = (contract.TAG_EVAL_SET, contract.TAG_EVAL_ITEMS)
"""The tags that must agree for two runs' answers to be compared item by item."""

TABLE_FILES = {
    "win_rates": "win_rates.csv",
    "category_win_rates": "category_win_rates.csv",
    "position_consistency": "position_consistency.csv",
    "bradley_terry": "bradley_terry.csv",
    "length_controlled": "length_controlled.csv",
}
"""`HeadToHead`'s tables and their file names under `contract.ARTIFACT_PAIRWISE_DIR`."""
SKIPPED_FILE = "skipped.txt"
Answers = tuple[list[EvalItem], list[str], list[str]]
"""A pair's shared items with A's and B's answers (`pair_answers`)."""
BASELINE_PAIR = "vs baseline"
"""The kind of a pair `pairwise.baseline` adds (the other kinds are `paired`'s)."""


class Unpairable(LorabenchError, ValueError):
    """Two runs whose answers cannot be judged head to head (other eval sets, no judgements,
    no item in common); the message names the runs and what differs."""


def pair_label(run_a: str, run_b: str) -> str:
    """A pair of runs as it is named in `stats.pairs` and in the metrics: `A vs B`."""
    return f"{run_a} vs {run_b}"


def _run_name(run: Run) -> str:
    return run.info.run_name or run.data.tags.get("mlflow.runName") or run.info.run_id


def _judgements_path(client: MlflowClient, run: Run) -> str | None:
    """The run's headline judgements artifact: its headline judge's (tag `eval_judge`), else the
    legacy `eval/judgements.jsonl`, else any judge's; None when it has none."""
    run_id = run.info.run_id
    headline = run.data.tags.get(contract.TAG_EVAL_JUDGE)
    candidates = []
    if headline:
        candidates.append(f"{contract.judge_artifact_dir(headline)}/{contract.JUDGEMENTS_FILE}")
    candidates.append(contract.ARTIFACT_JUDGEMENTS)
    for judge_dir in client.list_artifacts(run_id, contract.ARTIFACT_JUDGE_DIR):
        candidates.append(f"{judge_dir.path}/{contract.JUDGEMENTS_FILE}")
    for path in candidates:
        parent = path.rsplit("/", 1)[0]
        if any(f.path == path for f in client.list_artifacts(run_id, parent)):
            return path
    return None


def _answers(client: MlflowClient, run: Run) -> dict[str, tuple[EvalItem, str]]:
    """The run's answers by item key (the first row of a key), in the artifact's order."""
    path = _judgements_path(client, run)
    if path is None:
        raise Unpairable(f"run {_run_name(run)} ({run.info.run_id}) has no judgements artifact")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run.info.run_id, path, tmp))
        lines = local.read_text(encoding="utf-8").splitlines()
    answers: dict[str, tuple[EvalItem, str]] = {}
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        key = item_key(row["class"], row["question"])
        if key not in answers:
            item = EvalItem(
                row["question"], row.get("reference") or "", row["class"], category_of(row["class"])
            )
            answers[key] = (item, row["answer"])
    return answers


def pair_answers(
    client: MlflowClient, run_a_id: str, run_b_id: str
) -> tuple[list[EvalItem], list[str], list[str]]:
    """The items both runs answered (in A's order, matched by `items.item_key`) with A's and
    B's answers, from their headline judgements artifacts. `Unpairable` when the runs were
    evaluated on different eval sets (tags `eval_set`/`eval_items` differ: both values named),
    when either has no judgements, or when they share no item; MlflowException when a run does
    not exist."""
    run_a, run_b = client.get_run(run_a_id), client.get_run(run_b_id)
    name_a, name_b = _run_name(run_a), _run_name(run_b)
    differ = [
        f"{tag} {run_a.data.tags.get(tag)!r} vs {run_b.data.tags.get(tag)!r}"
        for tag in EVAL_SET_TAGS
        if run_a.data.tags.get(tag) != run_b.data.tags.get(tag)
    ]
    if differ:
        raise Unpairable(
            f"{name_a} and {name_b} were evaluated on different eval sets ({'; '.join(differ)}): "
            "their answers are not comparable item by item"
        )
    answers_a, answers_b = _answers(client, run_a), _answers(client, run_b)
    shared = [key for key in answers_a if key in answers_b]
    if not shared:
        raise Unpairable(f"{name_a} and {name_b} answered no item in common")
    items = [answers_a[key][0] for key in shared]
    return items, [answers_a[k][1] for k in shared], [answers_b[k][1] for k in shared]


@dataclass
class HeadToHead:
    """A head-to-head stage's verdicts, their statistics, and the pairs it could not judge."""

    judge: str
    """The pairwise judge's id (`ReferencePairwiseJudge().name`)."""
    verdicts: pd.DataFrame
    """Every item verdict, `contract.PAIRWISE_VERDICT_COLUMNS`, run names as run_a/run_b."""
    win_rates: pd.DataFrame
    category_win_rates: pd.DataFrame
    position_consistency: pd.DataFrame
    bradley_terry: pd.DataFrame
    length_controlled: pd.DataFrame
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    """The pairs judged: (kind, run A's name, run B's name); kind as in `paired` (`LoRA vs
    FT`, ..., `named`)."""
    skipped: list[str] = field(default_factory=list)
    """The pairs not judged, each `A vs B: why`."""

    def tables(self) -> dict[str, pd.DataFrame]:
        """The statistics tables by name (`TABLE_FILES`' keys)."""
        return {name: getattr(self, name) for name in TABLE_FILES}


def head_to_head(
    client: MlflowClient,
    runs: Sequence[Run],
    judge: PairwiseJudge,
    *,
    pairs: Sequence[str] = (),
    baseline: str | None = None,
    focus: Collection[str] | None = None,
    stats: StatsConfig | None = None,
    progress: bool = True,
) -> HeadToHead:
    """Judge `runs` head to head with the pairwise `judge`.

    The runs are grouped into replicate groups (`replicate_groups(run_frame(runs))`); the pairs
    are `chosen_pairs(groups, pairs, baseline, focus)`. A group with replicates is represented
    by its FIRST run (its first in `runs`' order): pairwise judging costs two judge calls per
    item and pair, so seeds are not judged against each other, and the verdict frame's
    run_a/run_b are those runs' names. Each pair (a pair met twice is judged once) is judged in
    one `judge.judge_pairs` call on the items both runs answered; a pair whose run is missing or
    that is refused (`pair_answers`' `Unpairable`, e.g. other eval sets) is skipped with its
    reason, and the other pairs go on. The judge's `preflight` runs first unless every call is
    in its reply cache (a rerun sends nothing); a judge that cannot run raises its `JudgeError`
    before any pair is judged. The tables use `stats`' bootstrap samples, level and seed."""
    stats = stats or StatsConfig()
    chosen, skipped = chosen_pairs(replicate_groups(run_frame(runs)), pairs, baseline, focus)
    answered = _answered_pairs(client, chosen, skipped)
    requests = [r for _, _, _, answers in answered for r in judge.requests_for(*answers)]
    if judge.estimate(requests).calls:  # all cached: nothing to check, nothing sent
        judge.preflight()
    rows: list[dict] = []
    for _, name_a, name_b, answers in answered:
        verdicts = judge.judge_pairs(*answers, progress=progress)
        rows.extend(v.to_row(name_a, name_b) for v in verdicts)
    frame = pd.DataFrame.from_records(rows, columns=list(contract.PAIRWISE_VERDICT_COLUMNS))
    sampling = {"samples": stats.bootstrap_samples, "level": stats.level, "seed": stats.seed}
    return HeadToHead(
        judge=judge.name,
        verdicts=frame,
        win_rates=win_rates(frame, **sampling),
        category_win_rates=category_win_rates(frame, **sampling),
        position_consistency=position_consistency(frame),
        bradley_terry=bradley_terry(frame, **sampling),
        length_controlled=length_controlled_win_rates(frame, level=stats.level),
        pairs=[(kind, name_a, name_b) for kind, name_a, name_b, _ in answered],
        skipped=skipped,
    )


def _answered_pairs(
    client: MlflowClient, chosen: Sequence[tuple[str, Group, Group]], skipped: list[str]
) -> list[tuple[str, str, str, Answers]]:
    """Each chosen pair (once) as (kind, A's name, B's name, `pair_answers`), its groups
    represented by their first runs; a pair that cannot be judged is appended to `skipped`
    with its reason."""
    answered, seen = [], set()
    for kind, a, b in chosen:
        id_a, name_a = a.run_ids[0], a.run_names[0]
        id_b, name_b = b.run_ids[0], b.run_names[0]
        if (id_a, id_b) in seen:
            continue
        seen.add((id_a, id_b))
        try:
            answered.append((kind, name_a, name_b, pair_answers(client, id_a, id_b)))
        except (Unpairable, MlflowException) as err:
            skipped.append(f"{pair_label(name_a, name_b)}: {err}")
    return answered


def chosen_pairs(
    groups: Sequence[Group],
    pairs: Sequence[str] = (),
    baseline: str | None = None,
    focus: Collection[str] | None = None,
) -> tuple[list[tuple[str, Group, Group]], list[str]]:
    """The pairs to judge among `groups`, and the named ones that are missing (`A vs B: why`).

    `pairs` (`A vs B`, run or group names: `named_pairs`) are judged whatever `focus` says;
    `baseline` adds every group against the baseline's (kind `vs baseline`); with neither, the
    study's own comparisons (`paper_pairs`). `focus` (run ids: a sweep's runs), when given,
    keeps of the baseline's and the study's pairs those with a run in it."""
    chosen, skipped = named_pairs(groups, list(pairs)) if pairs else ([], [])
    if baseline is not None:
        anchor = find_group(groups, baseline)
        if anchor is None:
            skipped.append(f"baseline {baseline}: no evaluated run or group of that name")
        else:
            others = [g for g in groups if anchor.run_ids[0] not in g.run_ids]
            chosen += _in_focus([(BASELINE_PAIR, g, anchor) for g in others], focus)
    elif not pairs:
        chosen = _in_focus(paper_pairs(groups), focus)
    return chosen, skipped


def _in_focus(
    pairs: list[tuple[str, Group, Group]], focus: Collection[str] | None
) -> list[tuple[str, Group, Group]]:
    if focus is None:
        return pairs
    return [p for p in pairs if {p[1].run_ids[0], p[2].run_ids[0]} & set(focus)]


def record_head_to_head(client: MlflowClient, parent_id: str, result: HeadToHead) -> None:
    """Log a head-to-head stage to the sweep's parent run: the verdicts as
    `contract.ARTIFACT_PAIRWISE_VERDICTS`, each table as a CSV under `pairwise/` (`TABLE_FILES`),
    the skipped pairs as `pairwise/skipped.txt` (when any), and the metrics
    `contract.pairwise_win_rate` (+ `_ci_low`, `_ci_high`) per pair and
    `contract.pairwise_position_consistency` per judge (a value that is not finite, e.g. a pair
    without a judged item, is not logged)."""
    client.log_text(
        parent_id, result.verdicts.to_csv(index=False), contract.ARTIFACT_PAIRWISE_VERDICTS
    )
    for name, table in result.tables().items():
        path = f"{contract.ARTIFACT_PAIRWISE_DIR}/{TABLE_FILES[name]}"
        client.log_text(parent_id, table.to_csv(index=False), path)
    if result.skipped:
        path = f"{contract.ARTIFACT_PAIRWISE_DIR}/{SKIPPED_FILE}"
        client.log_text(parent_id, "\n".join(result.skipped) + "\n", path)
    values: dict[str, float] = {}
    for row in result.win_rates.itertuples(index=False):
        pair = pair_label(row.run_a, row.run_b)
        values[contract.pairwise_win_rate(pair)] = row.win_rate
        values[contract.pairwise_win_rate_ci_low(pair)] = row.ci_low
        values[contract.pairwise_win_rate_ci_high(pair)] = row.ci_high
    overall = result.position_consistency
    for row in overall[(overall["run_a"] == ALL) & (overall["run_b"] == ALL)].itertuples():
        values[contract.pairwise_position_consistency(row.judge)] = row.consistency
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, 0)
        for key, value in values.items()
        if value is not None and math.isfinite(float(value))
    ]
    if metrics:
        client.log_batch(parent_id, metrics=metrics)
