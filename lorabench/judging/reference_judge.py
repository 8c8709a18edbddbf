"""An offline, deterministic judge: scores an answer against the item's gold answer.

No network, no randomness, no model: the same answer always gets the same score, which makes it
the judge of the demo profile and of tests. It measures agreement with the gold answer, not
quality, so it is a proxy for the LLM judge, not a substitute.

Text is NFKC-normalised and split into tokens the way Chinese reading-comprehension scorers do
(CMRC 2018's "mixed segmentation"): each CJK character is a token, runs of other letters and
digits are word tokens, punctuation and spaces are dropped. Rules, by raw class:

- math: 1 if the last number in the answer equals the last number in the gold answer, else 0.
- code: 1 if equal ignoring whitespace, else ROUGE-L F over the non-space characters.
- classification, extract, open qa, closed qa: 1 if equal, or if a short answer contains the
  gold tokens in order; else F1 (or ROUGE-L) over tokens.
- rewrite, translation: as above but case-sensitive (an upper-casing task must not be won by
  copying the input).
- summarization: F1 (or ROUGE-L) only; containment would reward copying the whole passage.
- any class with an empty gold answer: no score, status `no_reference`.

"Short" means at most twice the gold's tokens plus 8, so echoing a passage that contains the
answer (closed QA, extraction) does not count as containing it. Items without a gold answer
(all brainstorming and generation, most of BELLE's rewrite) are not scored at all: they get
`status="no_reference"`, `score=None`, are counted in `stats.no_reference` and excluded from the
category means, since inventing a score (0, or a length heuristic) would be dishonest. An empty
or wrong answer to an item with a gold answer is a real judgement and scores 0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal

from tqdm.auto import tqdm

from lorabench.judging.base import Judge, Judgement, JudgeRequest

TextMetric = Literal["f1", "rouge_l"]

_CJK = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff\u3040-\u30ff\uac00-\ud7af]"
)
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CASE_SENSITIVE_CLASSES = frozenset({"rewrite", "translation"})


def tokens(text: str, *, keep_case: bool = False) -> list[str]:
    """Mixed segmentation: CJK characters one by one, other letter/digit runs as words."""
    text = unicodedata.normalize("NFKC", text)
    if not keep_case:
        text = text.lower()
    return _WORD.findall(_CJK.sub(r" \g<0> ", text))


def f1(prediction: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """Token-multiset F1 (SQuAD/CMRC style); 0 when either side is empty."""
    overlap = sum((Counter(prediction) & Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): O(len(a) ·
    len(b) / word size), fast enough for BELLE's kilobyte-long code answers."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[Hashable, int] = {}
    for i, symbol in enumerate(b):
        masks[symbol] = masks.get(symbol, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for symbol in a:
        u = v & masks.get(symbol, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def rouge_l(prediction: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    """ROUGE-L F1 (beta = 1) over two token sequences; 0 when either side is empty."""
    common = lcs_length(prediction, gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def final_number(text: str) -> float | None:
    """The last number written in `text` (thousands separators allowed), if any."""
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text))
    numbers = _NUMBER.findall(text)
    return float(numbers[-1]) if numbers else None


def _contains(answer: list[str], gold: list[str]) -> bool:
    """Gold tokens in order, contiguously, in an answer no longer than 2·gold + 8 tokens."""
    if not gold or len(answer) > 2 * len(gold) + 8:
        return False
    n = len(gold)
    return any(answer[i : i + n] == gold for i in range(len(answer) - n + 1))


class ReferenceJudge(Judge):
    """Scores answers against gold answers offline (rules in the module docstring)."""

    def __init__(self, text_metric: TextMetric = "f1") -> None:
        """
        Args:
            text_metric: the overlap score for free-text answers: token F1 (`f1`) or
                ROUGE-L over the same tokens (`rouge_l`); `judge.model` of the `reference`
                judge, which the config schema checks.
        """
        super().__init__()
        self.text_metric = text_metric

    @property
    def name(self) -> str:
        return f"reference:{self.text_metric}"

    def params(self) -> dict[str, object]:
        """Settings that define the judge's scores, for run parameters."""
        return {"name": self.name, "text_metric": self.text_metric}

    def __repr__(self) -> str:
        return f"ReferenceJudge(text_metric={self.text_metric!r})"

    def _judge_all(self, requests: Sequence[JudgeRequest], progress: bool) -> list[Judgement]:
        bar = tqdm(requests, desc=f"judging ({self.name})", unit="item", disable=not progress)
        return [self.judge_one(request) for request in bar]

    def judge_one(self, request: JudgeRequest) -> Judgement:
        """Score one request; `reply` notes the rule that produced the score."""
        item, answer = request.item, request.answer
        common = {"item": item, "answer": answer, "judge": self.name}
        if not item.std_answer.strip():
            return Judgement(
                **common,
                score=None,
                status="no_reference",
                reason="no gold answer: an offline judge cannot score this item",
            )
        score, note = self._score(item.raw_class, answer, item.std_answer)
        return Judgement(**common, score=score, status="ok", reply=note)

    def _score(self, raw_class: str, answer: str, gold: str) -> tuple[float, str]:
        if raw_class == "math":
            want = final_number(gold)
            if want is not None:
                got = final_number(answer)
                if got is None:
                    return 0.0, f"no number in the answer (gold {want:g})"
                same = math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
                return float(same), f"final number {got:g} vs gold {want:g}"
        if raw_class == "code":
            a, g = "".join(answer.split()), "".join(gold.split())
            if a == g:
                return 1.0, "exact match (whitespace ignored)"
            score = rouge_l(list(a), list(g))
            return score, f"rouge_l over characters = {score:.4f}"
        keep_case = raw_class in _CASE_SENSITIVE_CLASSES
        a, g = tokens(answer, keep_case=keep_case), tokens(gold, keep_case=keep_case)
        if raw_class != "summarization":
            if a == g:
                return 1.0, "exact match"
            if _contains(a, g):
                return 1.0, "short answer containing the gold answer"
        score = f1(a, g) if self.text_metric == "f1" else rouge_l(a, g)
        return score, f"{self.text_metric} = {score:.4f}"
