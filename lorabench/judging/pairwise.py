"""Pairwise (head-to-head) judging: which of two runs' answers to the same item is better.

The protocol is MT-Bench's pairwise mode (also Arena-Hard's). For a pair of runs, A (the pair's
first run) and B, each item is judged twice with the answers' order swapped: order `ab` shows
A's answer first, order `ba` shows B's first. Each reply's verdict (the answer shown first
better, the second better, or a tie) is mapped back to A/B/tie, and the two orders combine the
conservative way: A only if both orders prefer A, B only if both prefer B, otherwise a tie; two
orders that disagree are a position inconsistency. An order without a verdict (a reply that
could not be read, an HTTP error, no gold answer for the offline judge) leaves the item without
a verdict (None, with the reason): never a tie.

    judge = OpenAIPairwiseJudge("gpt-4o", language="zh", cache_path=".cache/judge/openai.sqlite")
    verdicts = judge.judge_pairs(items, answers_a, answers_b)   # one batch of 2·n requests
    rows = [v.to_row(run_a, run_b) for v in verdicts]          # for the statistics

Both judges here are `Judge`s (stats, params, preflight, estimate work as for scoring judges):
a verdict travels through `judge_all` inside a `Judgement` as the score 1.0 (first shown
better), 0.0 (second) or 0.5 (tie), which `judge_pairs` decodes; nothing outside this module
sees that encoding. `OpenAIPairwiseJudge` is `OpenAIJudge` with the pairwise prompt and parser
(calls, concurrency, retries, reply cache, tokens, served models, progress bar and preflight are
its parent's); a reply is cached under its own prompt, hence per item, pair of answers, order
and prompt language. `ReferencePairwiseJudge` is the offline judge of the demo: the answer with
the better token F1 against the gold answer wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tqdm.auto import tqdm

from lorabench.evaluation.eval_set import EvalItem
from lorabench.judging.base import STATUSES, Judge, Judgement, JudgeRequest, Status
from lorabench.judging.openai_judge import OpenAIJudge
from lorabench.judging.pairwise_prompts import (
    PAIRWISE_LANGUAGES,
    PAIRWISE_PROMPTS_VERSION,
    VERDICTS,
    PairwiseLanguage,
    Verdict,
    build_pairwise_prompt,
    parse_verdict,
)
from lorabench.judging.parsing import ParsedScore
from lorabench.judging.reference_judge import f1, tokens

Order = Literal["ab", "ba"]
"""Which run's answer is shown first: `ab` A's, `ba` B's."""

ORDERS: tuple[str, ...] = get_args(Order)

PairLabel = Literal["A", "B", "tie"]
"""A verdict in the pair's own labels: A (the pair's first run), B (its second), or a tie."""

PAIR_LABELS: tuple[str, ...] = get_args(PairLabel)


# How a verdict travels as a `Judgement` score through `Judge.judge_all` (see the docstring).
_SCORE_OF: dict[str, float] = {"first": 1.0, "second": 0.0, "tie": 0.5}
_VERDICT_OF: dict[float, Verdict] = {1.0: "first", 0.0: "second", 0.5: "tie"}
# Of an item's failed orders, the status it reports: an error first, since a rerun may mend it.
_FAILURE_PRIORITY: tuple[Status, ...] = ("error", "parse_failure", "no_reference")


@dataclass(frozen=True)
class PairRequest:
    """One pairwise request: two answers to `item`, in the order they are shown."""

    item: EvalItem
    first: str
    """The answer shown first (answer 1): A's in order `ab`, B's in order `ba`."""
    second: str
    """The answer shown second (answer 2)."""
    order: Order

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")

    def label(self, verdict: Verdict | None) -> PairLabel | None:
        """A verdict on the shown answers in the pair's labels (None stays None)."""
        if verdict is None or verdict == "tie":
            return verdict
        shown_first: PairLabel = "A" if self.order == "ab" else "B"
        shown_second: PairLabel = "B" if self.order == "ab" else "A"
        return shown_first if verdict == "first" else shown_second


def pair_requests(item: EvalItem, answer_a: str, answer_b: str) -> tuple[PairRequest, PairRequest]:
    """The two orders of a pair: (`ab`: A's answer shown first, `ba`: B's shown first)."""
    return PairRequest(item, answer_a, answer_b, "ab"), PairRequest(item, answer_b, answer_a, "ba")


@dataclass(frozen=True)
class PairJudgement:
    """The judge's verdict on one `PairRequest` (one order of one item)."""

    request: PairRequest
    verdict: Verdict | None
    """`first`, `second` or `tie` (the shown order) when `status == "ok"`, otherwise None."""
    status: Status
    reason: str = ""
    """Why there is no verdict (empty when `status == "ok"`)."""
    reply: str = ""
    """The judge's raw reply (empty for errors); the offline judge notes its rule."""
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judge: str = ""
    served_model: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if (self.status == "ok") != (self.verdict is not None):
            raise ValueError(f"a {self.status} judgement with verdict {self.verdict!r}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def label(self) -> PairLabel | None:
        """The verdict in the pair's labels: A, B, tie, or None without a verdict."""
        return self.request.label(self.verdict)

    @classmethod
    def from_judgement(cls, request: PairRequest, judgement: Judgement) -> PairJudgement:
        """Decode a `Judgement` whose score carries a verdict (see the module docstring)."""
        verdict = None if judgement.score is None else _VERDICT_OF[judgement.score]
        return cls(
            request=request,
            verdict=verdict,
            status=judgement.status,
            reason=judgement.reason,
            reply=judgement.reply,
            cached=judgement.cached,
            prompt_tokens=judgement.prompt_tokens,
            completion_tokens=judgement.completion_tokens,
            judge=judgement.judge,
            served_model=judgement.served_model,
        )


@dataclass(frozen=True)
class ItemVerdict:
    """An item's two orders combined into one verdict in the pair's labels (module docstring)."""

    index: int
    """The item's position in the eval set."""
    item: EvalItem
    ab: PairJudgement
    """Order `ab`: A's answer shown first."""
    ba: PairJudgement
    """Order `ba`: B's answer shown first."""

    def __post_init__(self) -> None:
        if (self.ab.request.order, self.ba.request.order) != ("ab", "ba"):
            raise ValueError("ItemVerdict needs order ab's judgement, then order ba's")

    @property
    def judged(self) -> bool:
        """Whether both orders gave a verdict."""
        return self.ab.status == "ok" and self.ba.status == "ok"

    @property
    def verdict(self) -> PairLabel | None:
        """A or B when both orders prefer it, a tie otherwise, None when unjudged."""
        if not self.judged:
            return None
        return self.ab.label if self.ab.label == self.ba.label else "tie"

    @property
    def consistent(self) -> bool | None:
        """Whether the two orders agree (False: a position inconsistency); None when unjudged."""
        return self.ab.label == self.ba.label if self.judged else None

    @property
    def status(self) -> Status:
        """`ok`, or the failure of an order that gave no verdict (an error before others)."""
        failed = {j.status for j in (self.ab, self.ba)}
        for status in _FAILURE_PRIORITY:
            if status in failed:
                return status
        return "ok"

    @property
    def reason(self) -> str:
        """Why there is no verdict, or the two orders' verdicts when they disagree."""
        if not self.judged:
            failed = [j for j in (self.ab, self.ba) if j.status != "ok"]
            return "; ".join(f"order {j.request.order}: {j.status}: {j.reason}" for j in failed)
        if not self.consistent:
            return f"position inconsistency: order ab → {self.ab.label}, order ba → {self.ba.label}"
        return ""

    def to_row(self, run_a: str, run_b: str) -> dict[str, Any]:
        """A flat row with exactly `contract.PAIRWISE_VERDICT_COLUMNS`, in order, for the pair
        of runs `run_a` (A) and `run_b` (B)."""
        return {
            "judge": self.ab.judge,
            "run_a": run_a,
            "run_b": run_b,
            "item": self.index,
            "category": self.item.category,
            "first": self.ab.label,
            "second": self.ba.label,
            "verdict": self.verdict,
            "consistent": self.consistent,
            "length_a": len(self.ab.request.first),
            "length_b": len(self.ab.request.second),
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _ShownPair(JudgeRequest):
    """A `PairRequest` travelling through `Judge.judge_all` (`answer` is the one shown first)."""

    pair: PairRequest | None = None


class PairwiseJudge(Judge):
    """A judge of answer pairs: `judge_pairs` on top of a `Judge` whose requests carry a
    `PairRequest` and whose judgements carry a verdict as their score (module docstring)."""

    def requests_for(
        self, items: Sequence[EvalItem], answers_a: Sequence[str], answers_b: Sequence[str]
    ) -> list[JudgeRequest]:
        """The 2·n requests `judge_pairs` sends (per item order `ab`, then `ba`), e.g. for
        `estimate(...)` in a dry run."""
        if not len(items) == len(answers_a) == len(answers_b):
            raise ValueError(
                f"{len(items)} items but {len(answers_a)} answers of A and {len(answers_b)} of B"
            )
        return [
            _ShownPair(item, shown.first, pair=shown)
            for item, a, b in zip(items, answers_a, answers_b, strict=True)
            for shown in pair_requests(item, a, b)
        ]

    def judge_pair_requests(
        self, requests: Sequence[PairRequest], progress: bool = True
    ) -> list[PairJudgement]:
        """Judge each shown pair, in order, in one `judge_all` batch."""
        wrapped = [_ShownPair(r.item, r.first, pair=r) for r in requests]
        judgements = self.judge_all(wrapped, progress)
        return [
            PairJudgement.from_judgement(r, j) for r, j in zip(requests, judgements, strict=True)
        ]

    def judge_pairs(
        self,
        items: Sequence[EvalItem],
        answers_a: Sequence[str],
        answers_b: Sequence[str],
        progress: bool = True,
    ) -> list[ItemVerdict]:
        """Each item's verdict on A's answer against B's, both orders in ONE batch of 2·n
        requests (so the judge's concurrency covers both); in the order of `items`."""
        requests = [self._pair_of(r) for r in self.requests_for(items, answers_a, answers_b)]
        judged = self.judge_pair_requests(requests, progress)
        return [
            ItemVerdict(i, item, judged[2 * i], judged[2 * i + 1]) for i, item in enumerate(items)
        ]

    @staticmethod
    def _pair_of(request: JudgeRequest) -> PairRequest:
        """The pair a request carries; a plain `JudgeRequest` is a caller's mistake."""
        if not isinstance(request, _ShownPair) or request.pair is None:
            raise TypeError("a pairwise judge takes pairs: use judge_pairs or judge_pair_requests")
        return request.pair


class OpenAIPairwiseJudge(PairwiseJudge, OpenAIJudge):
    """`OpenAIJudge` asking which of two answers is better (pairwise prompt and verdict parser).

    Args:
        model: the judge model's name as the server knows it.
        language: the prompt's language, `zh` (BELLE's) or `en` (`pairwise_prompts`).
        **settings: `OpenAIJudge`'s keyword settings (base_url, api_key_env, concurrency,
            max_retries, timeout, temperature, max_tokens, cache_path, backoff_*,
            max_retry_after, recheck_parse_failures), except `prompts`, which are the pairwise
            ones here.
    """

    def __init__(
        self, model: str = "gpt-3.5-turbo", *, language: PairwiseLanguage = "zh", **settings: Any
    ) -> None:
        """Check the language, keep it, and set up the parent with the other settings."""
        if "prompts" in settings:
            raise TypeError("OpenAIPairwiseJudge uses the pairwise prompts; `prompts` is not taken")
        if language not in PAIRWISE_LANGUAGES:
            raise ValueError(f"language must be one of {PAIRWISE_LANGUAGES}, got {language!r}")
        super().__init__(model, **settings)
        self.language = language

    @property
    def name(self) -> str:
        return f"openai-pairwise:{self.model}"

    def params(self) -> dict[str, object]:
        """The parent's settings, with the pairwise prompt in place of the scoring prompts."""
        return {
            **super().params(),
            "prompts": PAIRWISE_PROMPTS_VERSION,
            "prompt_layout": f"pairwise({self.language})",
            "language": self.language,
        }

    def __repr__(self) -> str:
        return (
            f"OpenAIPairwiseJudge(model={self.model!r}, base_url={self.base_url!r}, "
            f"language={self.language!r}, concurrency={self.concurrency}, "
            f"cache={self.cache.path!r})"
        )

    def prompt_for(self, request: JudgeRequest) -> str:
        """The exact user message sent for a shown pair."""
        pair = self._pair_of(request)
        return build_pairwise_prompt(pair.item, pair.first, pair.second, self.language)

    def parse_reply(self, reply: str) -> ParsedScore:
        """The reply's verdict, carried as a score (module docstring), or None and the reason."""
        verdict, reason = parse_verdict(reply)
        return ParsedScore(None if verdict is None else _SCORE_OF[verdict], reason)


class ReferencePairwiseJudge(PairwiseJudge):
    """Offline pairwise judge (the demo's): the answer with the better token F1 against the gold
    answer wins; F1s within `margin` of each other tie; an item without a gold answer gets no
    verdict (`no_reference`). Its verdicts do not depend on the order shown (F1 is computed per
    answer and the margin is symmetric), so its position consistency is 1 by construction.

    F1 is the reference judge's (`reference_judge.f1` over its mixed segmentation `tokens`),
    applied to every class alike: a pairwise proxy, not the scoring judge's per-class rules.
    """

    def __init__(self, margin: float = 0.05) -> None:
        """`margin`: the largest F1 difference that is still a tie, in [0, 1)."""
        super().__init__()
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        self.margin = margin

    @property
    def name(self) -> str:
        return "reference-pairwise:f1"

    def params(self) -> dict[str, object]:
        """Settings that define the verdicts, for run parameters."""
        return {"name": self.name, "margin": self.margin}

    def __repr__(self) -> str:
        return f"ReferencePairwiseJudge(margin={self.margin!r})"

    def _judge_all(self, requests: Sequence[JudgeRequest], progress: bool) -> list[Judgement]:
        bar = tqdm(requests, desc=f"judging ({self.name})", unit="pair", disable=not progress)
        return [self._judge_one(self._pair_of(request)) for request in bar]

    def _judge_one(self, pair: PairRequest) -> Judgement:
        common = {"item": pair.item, "answer": pair.first, "judge": self.name}
        gold = pair.item.std_answer
        if not gold.strip():
            reason = "no gold answer: an offline judge cannot compare the answers"
            return Judgement(**common, score=None, status="no_reference", reason=reason)
        gold_tokens = tokens(gold)
        first, second = (f1(tokens(answer), gold_tokens) for answer in (pair.first, pair.second))
        verdict: Verdict = "tie"
        if abs(first - second) > self.margin:
            verdict = "first" if first > second else "second"
        note = f"f1 first={first:.4f} second={second:.4f} (margin {self.margin:g}): {verdict}"
        return Judgement(**common, score=_SCORE_OF[verdict], status="ok", reply=note)
