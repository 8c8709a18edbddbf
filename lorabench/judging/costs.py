"""The judge cost ledger: the tokens a judge bought and what they cost at `conf/prices.yaml`.

A judge's `JudgeStats` hold what one evaluation bought (the servers' `usage`, the Batch API's
share apart) and what it answered from the cache (bought by an earlier evaluation, counted
apart and not charged again). Priced per 1M tokens at the judge's model's entry in `prices`;
the Batch API's tokens at that entry's `batch_discount` off. Three cases, never mixed up:

- an API judge with a price: its cost in USD, with a note naming the prices and their date;
- an API judge without one: no cost at all (not 0), and a note saying it is unknown;
- an offline judge (`billed_model` None): 0, since it calls nothing, and a note saying so.

The preflight's one-token check and the Batch API's file uploads are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlflow.entities import Run

from lorabench import contract
from lorabench.config.schema import PriceConfig
from lorabench.judging.base import Judge, JudgeStats

PER_TOKENS = 1_000_000
"""Prices are per this many tokens."""

OFFLINE_NOTE = "offline judge: calls no API, costs nothing"


@dataclass(frozen=True)
class Cost:
    """A priced amount, or why it has no price."""

    usd: float | None
    """None when unknown (the model has no price); 0 only for what truly costs nothing."""
    note: str
    """How it was priced, or why it is unknown."""


def price_note(model: str, price: PriceConfig) -> str:
    """`gpt-3.5-turbo at $0.5 / $1.5 per 1M prompt / completion tokens (batch −50%), read …`."""
    batch = f" (batch -{price.batch_discount:.0%})" if price.batch_discount else ""
    return (
        f"{model} at ${price.input:g} / ${price.output:g} per 1M prompt / completion tokens"
        f"{batch}, prices read {price.read_on}"
    )


def unpriced_note(model: str) -> str:
    """Why a model's cost is unknown, and how to price it."""
    return f"unknown: no price for model {model!r} (add it to conf/prices.yaml)"


def usd(prompt: int, completion: int, price: PriceConfig, batch: bool = False) -> float:
    """What `prompt` and `completion` tokens cost at `price` (through the Batch API or not)."""
    share = 1.0 - price.batch_discount if batch else 1.0
    return share * (prompt * price.input + completion * price.output) / PER_TOKENS


def cost_of(stats: JudgeStats, model: str | None, prices: Mapping[str, PriceConfig]) -> Cost:
    """What `stats`' bought tokens cost for a judge billed as `model` (None: offline)."""
    if model is None:
        return Cost(0.0, OFFLINE_NOTE)
    price = prices.get(model)
    if price is None:
        return Cost(None, unpriced_note(model))
    synchronous = usd(
        stats.prompt_tokens - stats.batch_prompt_tokens,
        stats.completion_tokens - stats.batch_completion_tokens,
        price,
    )
    batch = usd(stats.batch_prompt_tokens, stats.batch_completion_tokens, price, batch=True)
    return Cost(synchronous + batch, price_note(model, price))


Ledger = tuple[dict[str, float], dict[str, str]]
"""Metrics and tags to log on a run."""


def ledger(judge: Judge, prices: Mapping[str, PriceConfig]) -> Ledger:
    """The judge's ledger metrics and its cost note tag, under the contract's names
    (`judge/<judge>/tokens_*`, `judge/<judge>/cost_usd` when priced, tag `judge/<judge>/cost`)."""
    stats = judge.stats
    cost = cost_of(stats, judge.billed_model, prices)
    measures = {
        contract.LEDGER_TOKENS_PROMPT: stats.prompt_tokens,
        contract.LEDGER_TOKENS_COMPLETION: stats.completion_tokens,
        contract.LEDGER_TOKENS_BATCH: stats.batch_prompt_tokens + stats.batch_completion_tokens,
        contract.LEDGER_TOKENS_CACHED: stats.cached_prompt_tokens + stats.cached_completion_tokens,
    }
    if cost.usd is not None:
        measures[contract.LEDGER_COST_USD] = cost.usd
    metrics = {contract.judge_ledger(judge.name, k): float(v) for k, v in measures.items()}
    return metrics, {contract.judge_cost_note(judge.name): cost.note}


def sweep_total(runs: Sequence[Run]) -> Ledger:
    """A sweep's judging total over `runs`' ledgers (every judge of every run: its grid points and
    the parent's head-to-head judge): `sweep/judge_tokens` always, `sweep/judge_cost_usd`
    only when every ledger is priced, and the tag `sweep_judge_cost` saying which are not."""
    usd_total, tokens, unpriced, ledgers = 0.0, 0.0, [], 0
    for run in runs:
        metrics = run.data.metrics
        for judge in sorted(_ledger_judges(metrics)):
            ledgers += 1
            tokens += metrics.get(f"{judge}/{contract.LEDGER_TOKENS_PROMPT}", 0.0)
            tokens += metrics.get(f"{judge}/{contract.LEDGER_TOKENS_COMPLETION}", 0.0)
            cost = metrics.get(f"{judge}/{contract.LEDGER_COST_USD}")
            if cost is None:
                unpriced.append(f"{run.info.run_name} ({judge.removeprefix(_PREFIX)})")
            else:
                usd_total += cost
    totals = {contract.SWEEP_JUDGE_TOKENS: tokens}
    if unpriced:
        note = (
            f"unknown: {len(unpriced)} of {ledgers} judge ledgers unpriced "
            f"({', '.join(unpriced)}); the priced ones cost ${usd_total:.4f}"
        )
    else:
        totals[contract.SWEEP_JUDGE_COST_USD] = usd_total
        note = f"${usd_total:.4f} over {ledgers} judge ledgers"
    return totals, {contract.TAG_SWEEP_JUDGE_COST: note[:5000]}


_PREFIX = contract.JUDGE_LEDGER_PREFIX


def _ledger_judges(metrics: Mapping[str, float]) -> set[str]:
    """The `judge/<slug>` prefixes of a run's ledger metrics."""
    suffix = f"/{contract.LEDGER_TOKENS_PROMPT}"
    return {k.removesuffix(suffix) for k in metrics if k.startswith(_PREFIX) and k.endswith(suffix)}
