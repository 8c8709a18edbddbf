"""The report's judge-cost section, from the cost ledgers on the runs (`judging.costs`): per
run and judge, the tokens its latest evaluation bought (the Batch API's share, and what the
reply cache answered, apart) and their cost; each sweep's head-to-head judge from its parent;
and the total. A ledger without a price is shown as unknown and makes the total unknown
(its priced part said); an offline judge's 0 says that it calls no API.

    costs = load_judge_costs(uri, "lorabench-demo", runs)
    costs_markdown(costs)                 # the section
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
from mlflow.entities import Run

from lorabench import contract
from lorabench.analysis.runs import open_experiment, sweep_parents
from lorabench.judging.costs import OFFLINE_NOTE

COST_COLUMNS = ("run", "judge", *contract.LEDGER_MEASURES, "note")
"""One row per (run, judge) ledger; `cost_usd` NaN when unpriced."""
HEAD_TO_HEAD = " (head to head)"
"""Suffix of a sweep parent's row: its head-to-head judge's ledger."""


def load_judge_costs(
    tracking_uri: str,
    experiment: str,
    runs: pd.DataFrame,
    parent_run_id: str | None = None,
) -> pd.DataFrame:
    """The ledgers of the report's `runs` (its tidy table: `run_id`) and of the experiment's
    sweep parents (only `parent_run_id` when given), as `COST_COLUMNS` rows."""
    client, experiment_id = open_experiment(tracking_uri, experiment)
    ours = [client.get_run(run_id) for run_id in runs["run_id"].dropna()]
    parents = sweep_parents(client, experiment_id, parent_run_id)
    rows = [*_ledger_rows(ours, ""), *_ledger_rows(parents, HEAD_TO_HEAD)]
    return pd.DataFrame.from_records(rows, columns=list(COST_COLUMNS))


def _ledger_rows(runs: Iterable[Run], suffix: str) -> Iterable[dict[str, object]]:
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        for key in sorted(metrics):
            is_ledger = key.startswith(contract.JUDGE_LEDGER_PREFIX)
            if not (is_ledger and key.endswith(f"/{contract.LEDGER_TOKENS_PROMPT}")):
                continue
            prefix = key.removesuffix(contract.LEDGER_TOKENS_PROMPT)
            judge = prefix.removeprefix(contract.JUDGE_LEDGER_PREFIX).rstrip("/")
            yield {
                "run": f"{run.info.run_name}{suffix}",
                "judge": judge,
                **{m: metrics.get(prefix + m, math.nan) for m in contract.LEDGER_MEASURES},
                "note": tags.get(contract.judge_cost_note(judge), ""),
            }


def _usd(value: float) -> str:
    return "unknown" if math.isnan(value) else f"${value:,.4f}"


def costs_markdown(costs: pd.DataFrame) -> str:
    """The section: a row per ledger and the total (unknown, with its priced part, when any
    ledger is unpriced)."""
    lines = ["## Judge cost", ""]
    if costs.empty:
        return "\n".join([*lines, "No run of this report recorded a judge cost ledger."])
    lines += [
        "What each run's latest evaluation bought per judge (a sweep's head-to-head judge on "
        "its own row); tokens answered from the reply cache were bought before and are not "
        "charged again.",
        "",
        "| run | judge | prompt tokens | completion tokens | of which batch | cached tokens "
        "| cost | priced as |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in costs.itertuples(index=False):
        counts = (row.tokens_prompt, row.tokens_completion, row.tokens_batch, row.tokens_cached)
        shown = " | ".join(f"{c:,.0f}" for c in counts)
        lines.append(f"| {row.run} | {row.judge} | {shown} | {_usd(row.cost_usd)} | {row.note} |")
    unpriced = costs["cost_usd"].isna()
    tokens = costs["tokens_prompt"].sum() + costs["tokens_completion"].sum()
    priced = costs.loc[~unpriced, "cost_usd"].sum()
    if unpriced.any():
        count = f"{unpriced.sum()} of {len(costs)} ledgers"
        total = f"unknown: {count} unpriced (the rest ${priced:,.4f})"
    else:
        total = f"${priced:,.4f}"
    lines += ["", f"**Total**: {total} for {tokens:,.0f} tokens bought."]
    if (costs["note"] == OFFLINE_NOTE).all():
        lines.append("Every judge here is offline: it calls no API, so the cost is 0 by design.")
    return "\n".join(lines)
