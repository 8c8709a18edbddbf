"""The judge interface: requests in, one `Judgement` per request out, with counters for MLflow.

A judgement is either a score in [0, 1] (`status="ok"`) or an explicit failure with no score
(`parse_failure`, `error`, `no_reference`) and the reason. A score that could not be obtained is
never stood in for by 0: failures are excluded from the means and counted instead.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, get_args

from lorabench import contract
from lorabench.errors import LorabenchError
from lorabench.evaluation.eval_set import EvalItem, category_of

Status = Literal["ok", "parse_failure", "error", "no_reference"]
"""How a judgement ended.

- `ok`: a score in [0, 1].
- `parse_failure`: the judge replied (and was paid) but no valid score could be read.
- `error`: no reply (HTTP errors after retries, a rejected request); nothing was cached.
- `no_reference`: an offline judge had no gold answer to score against.
"""

STATUSES: tuple[str, ...] = get_args(Status)


class JudgeError(LorabenchError, RuntimeError):
    """The judge cannot run at all (no API key, server unreachable, model rejected).

    Raised before any work is done (preflight) so that nothing is generated or paid for in vain;
    the message says what to fix and never contains the API key.
    """


@dataclass(frozen=True)
class JudgeRequest:
    """One item to judge: the eval question (with its gold answer) and the model's answer."""

    item: EvalItem
    answer: str
    repeat: int = 0
    """0: the judgement; k > 0: the k-th extra one (`judge.repeats`), which an API judge asks
    for anew rather than from its reply cache (a repeat of a cached reply measures nothing)."""


@dataclass(frozen=True)
class Judgement:
    """The verdict on one `JudgeRequest`."""

    item: EvalItem
    answer: str
    """The answer that was judged."""
    score: float | None
    """In [0, 1] when `status == "ok"`, otherwise None (never 0 in place of a failure)."""
    status: Status
    reason: str = ""
    """Why there is no score (empty when `status == "ok"`)."""
    reply: str = ""
    """The judge's raw reply (empty for errors); an offline judge notes the rule it applied."""
    cached: bool = False
    """True when the reply came from the cache (or from an identical request in the same batch),
    i.e. nothing was paid for it in this evaluation."""
    prompt_tokens: int = 0
    """Tokens of the judge prompt as the server reported them when the reply was bought."""
    completion_tokens: int = 0
    judge: str = ""
    """The judge's id, e.g. `openai:gpt-3.5-turbo` or `reference:f1`."""
    served_model: str = ""
    """The model that wrote the reply as the server named it (e.g. `gpt-3.5-turbo-0125`);
    empty when unknown (errors, offline judges, replies cached before it was recorded)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok":
            if self.score is None or not 0.0 <= self.score <= 1.0:
                raise ValueError(f"an ok judgement needs a score in [0, 1], got {self.score!r}")
        elif self.score is not None:
            raise ValueError(f"a {self.status} judgement carries no score, got {self.score!r}")

    @property
    def category(self) -> str:
        """One of the 9 reported categories."""
        return self.item.category

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-serialisable row for `eval/judgements.jsonl`."""
        return {
            "question": self.item.question,
            "category": self.item.category,
            "class": self.item.raw_class,
            "reference": self.item.std_answer,
            "answer": self.answer,
            "judge": self.judge,
            "reply": self.reply,
            "score": self.score,
            "status": self.status,
            "reason": self.reason,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "served_model": self.served_model,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Judgement:
        """Rebuild a judgement from a `to_dict()` row (e.g. to re-aggregate an old run)."""
        item = EvalItem(row["question"], row["reference"], row["class"], category_of(row["class"]))
        return cls(
            item=item,
            answer=row["answer"],
            score=row["score"],
            status=row["status"],
            reason=row.get("reason", ""),
            reply=row.get("reply", ""),
            cached=bool(row.get("cached", False)),
            prompt_tokens=int(row.get("prompt_tokens", 0)),
            completion_tokens=int(row.get("completion_tokens", 0)),
            judge=row.get("judge", ""),
            served_model=row.get("served_model") or "",
        )


@dataclass
class JudgeStats:
    """Counters of one judge instance, accumulated over its `judge_all` calls.

    Tokens count only what was bought in this session (cache hits cost nothing); each
    `Judgement` still carries the tokens its reply cost when it was bought.
    """

    judgements: int = 0
    """Judgements returned."""
    calls: int = 0
    """HTTP requests sent for judging, retries included (0 for offline judges)."""
    retries: int = 0
    """Of `calls`, those that repeated a failed attempt."""
    rate_limited: int = 0
    """Of `calls`, those the server answered 429 (rate limited); each was retried, or ended
    the item's retries."""
    cache_hits: int = 0
    """Judgements answered without a call (cache, or a duplicate in the same batch)."""
    parse_failures: int = 0
    errors: int = 0
    no_reference: int = 0
    prompt_tokens: int = 0
    """Prompt tokens bought in this session (the servers' `usage`), the Batch API's included."""
    completion_tokens: int = 0
    batch_prompt_tokens: int = 0
    """Of `prompt_tokens`, those bought through the Batch API (at its discount)."""
    batch_completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    """Prompt tokens the judgements answered from the cache had cost when bought: paid for by
    an earlier evaluation, not this one (counted apart from `prompt_tokens`)."""
    cached_completion_tokens: int = 0
    preflight_calls: int = 0
    """HTTP requests made by `preflight()` (not counted in `calls`)."""

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens bought in this session."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def unscored(self) -> int:
        """Judgements without a score (excluded from means)."""
        return self.parse_failures + self.errors + self.no_reference

    def count(self, judgement: Judgement) -> None:
        """Account for one returned judgement (status counters and cache hits)."""
        self.judgements += 1
        self.count_cached(judgement, +1)
        if judgement.status == "parse_failure":
            self.parse_failures += 1
        elif judgement.status == "error":
            self.errors += 1
        elif judgement.status == "no_reference":
            self.no_reference += 1

    def count_cached(self, judgement: Judgement, sign: int) -> None:
        """Count a cached judgement in (`sign=+1`) or back out (`-1`: a batch bought it)."""
        if judgement.cached:
            self.cache_hits += sign
            self.cached_prompt_tokens += sign * judgement.prompt_tokens
            self.cached_completion_tokens += sign * judgement.completion_tokens

    def as_metrics(self) -> dict[str, float]:
        """The counters under the tracking contract's names (`eval/judge_calls`, …)."""
        return {
            contract.EVAL_JUDGE_CALLS: float(self.calls),
            contract.EVAL_JUDGE_CACHE_HITS: float(self.cache_hits),
            contract.EVAL_JUDGE_PARSE_FAILURES: float(self.parse_failures),
            contract.EVAL_JUDGE_TOKENS: float(self.tokens),
        }

    def as_dict(self) -> dict[str, int]:
        """Every counter, for logs and reports."""
        return {**asdict(self), "tokens": self.tokens, "unscored": self.unscored}


class CostEstimate(NamedTuple):
    """What judging would cost, for a dry run: calls to make and tokens they would use."""

    calls: int
    """Requests that would go to the server (cache hits and in-batch duplicates excluded)."""
    tokens: int
    """Estimated prompt + completion tokens of those calls."""


class Judge(abc.ABC):
    """A judge: scores model answers against the eval set, one `Judgement` per request.

    Subclasses implement `_judge_all` and call `super().__init__()`; `judge_all` counts the
    results into `stats`, which accumulates over the instance's life (use one judge per
    evaluation).
    """

    def __init__(self) -> None:
        self.stats = JudgeStats()

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The judge's id, e.g. `openai:gpt-3.5-turbo` or `reference:f1`."""

    def params(self) -> dict[str, object]:
        """Settings that define the judge's scores, for run parameters (never secrets)."""
        return {"name": self.name}

    @property
    def served_models(self) -> tuple[str, ...]:
        """The models that actually produced this judge's scores, sorted (for a run tag).

        An API judge reports the model names its replies carried (a dated snapshot such as
        `gpt-3.5-turbo-0125` behind the alias `gpt-3.5-turbo`); an offline judge, its name.
        """
        return (self.name,)

    @property
    def billed_model(self) -> str | None:
        """The model whose price its calls are charged at (a key of `conf/prices.yaml`); None
        for an offline judge, which calls nothing and costs nothing."""
        return None

    def preflight(self) -> None:  # noqa: B027 - optional hook: offline judges have nothing to check
        """Check that judging can run at all; raise `JudgeError` if not. Offline judges pass."""

    def estimate(self, requests: Sequence[JudgeRequest]) -> CostEstimate:
        """Calls and tokens that `judge_all(requests)` would spend; calls nothing."""
        return CostEstimate(0, 0)

    def judge_all(self, requests: Sequence[JudgeRequest], progress: bool = True) -> list[Judgement]:
        """Judge every request; the result is in the order of `requests`."""
        judgements = self._judge_all(requests, progress)
        if len(judgements) != len(requests):
            raise AssertionError(f"{self.name} returned {len(judgements)} for {len(requests)}")
        for judgement in judgements:
            self.stats.count(judgement)
        return judgements

    @abc.abstractmethod
    def _judge_all(self, requests: Sequence[JudgeRequest], progress: bool) -> list[Judgement]:
        """Judge every request, in order (stats other than per-judgement counts are the
        subclass's to keep: calls, retries, tokens)."""
