"""What judging a grid point's answers would cost, before anything runs (`sweep.plan=true`).

The answers do not exist yet, so each item's gold answer stands in for the model's (BELLE's
median gold answer is 168 characters; an item without one counts an empty answer): the prompt
tokens are counted on the judge's real prompts for the eval set, each call adds the judge's
expected reply, and `judge.repeats` multiplies the calls. Priced at `conf/prices.yaml` (the
Batch API's discount when `judge.batch`). The plan downloads nothing: an eval set or BELLE's
judge prompts that are not on this machine yet make the cost unknown, saying how to get them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lorabench.config import Config
from lorabench.errors import LorabenchError
from lorabench.evaluation.eval_set import download_path, load_items
from lorabench.judging import JudgeRequest, OpenAIJudge, build_judge
from lorabench.judging.base import JudgeStats
from lorabench.judging.costs import Cost, cost_of
from lorabench.judging.factory import BELLE_PROMPTS_CACHE


@dataclass(frozen=True)
class JudgingEstimate:
    """The judge calls, tokens and cost of one point's evaluation."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: Cost
    """As configured: synchronous, or through the Batch API with `judge.batch`."""
    batch_usd: float | None = None
    """The same calls through the Batch API; None when unpriced."""

    def describe(self) -> str:
        """`judge: 1,000 calls, 0.91M tokens, $0.52` (or the reason the cost is unknown)."""
        tokens = (self.prompt_tokens + self.completion_tokens) / 1e6
        usd = "cost unknown" if self.cost.usd is None else f"${self.cost.usd:,.2f}"
        return f"judge: {self.calls:,} calls, {tokens:.2f}M tokens, {usd}"


_ESTIMATES: dict[str, JudgingEstimate | str] = {}
"""Estimates by evaluation settings: a grid's points share one eval set and judge."""


def estimate_judging(cfg: Config) -> JudgingEstimate:
    """The judging of `cfg`'s evaluation (module docstring); LorabenchError saying why it
    cannot be estimated (the eval set or the judge prompts are not here)."""
    key = json.dumps(
        [asdict(cfg.eval), asdict(cfg.judge), cfg.cache_dir, asdict(cfg)["prices"]],
        sort_keys=True,
        default=str,
    )
    if key not in _ESTIMATES:
        try:
            _ESTIMATES[key] = _estimate(cfg)
        except LorabenchError as err:
            _ESTIMATES[key] = str(err)
    found = _ESTIMATES[key]
    if isinstance(found, str):
        raise LorabenchError(found)
    return found


def _estimate(cfg: Config) -> JudgingEstimate:
    _check_local(cfg)
    items = load_items(cfg.eval, cfg.cache_dir)
    judge = build_judge(cfg.judge, cfg.cache_dir)
    if not isinstance(judge, OpenAIJudge):  # offline: no calls, no tokens
        return JudgingEstimate(0, 0, 0, cost_of(judge.stats, judge.billed_model, cfg.prices))
    with judge:
        counted = judge.estimate([JudgeRequest(item, item.std_answer) for item in items])
    repeats = cfg.judge.repeats
    calls, tokens = counted.calls * repeats, counted.tokens * repeats
    completion = calls * judge.expected_reply_tokens
    prompt = tokens - completion
    synchronous = JudgeStats(prompt_tokens=prompt, completion_tokens=completion)
    batch = replace(synchronous, batch_prompt_tokens=prompt, batch_completion_tokens=completion)
    model = judge.billed_model
    in_batch = cost_of(batch, model, cfg.prices)
    cost = in_batch if cfg.judge.batch else cost_of(synchronous, model, cfg.prices)
    return JudgingEstimate(calls, prompt, completion, cost, in_batch.usd)


def _check_local(cfg: Config) -> None:
    """Stop (LorabenchError) when the estimate would need a download."""
    if cfg.eval.path is None and cfg.eval.url is not None:
        path = download_path(cfg.eval, cfg.cache_dir)
        if not path.is_file():
            raise LorabenchError(
                f"the eval set is not on this machine yet ({path}): evaluating downloads it, "
                "or set eval.path to a copy"
            )
    if cfg.judge.name == "openai" and cfg.judge.prompts == "belle":
        path = Path(cfg.cache_dir) / BELLE_PROMPTS_CACHE
        if not path.is_file():
            raise LorabenchError(
                f"BELLE's judge prompts are not on this machine yet ({path}): evaluating "
                "downloads them, or set judge.prompts to a copy"
            )
