"""Pairwise judge prompts (two answers to one question, which is better) and the verdict parser.

The protocol is MT-Bench's pairwise mode (and Arena-Hard's): the judge sees the question, the
gold answer where the eval set has one (BELLE's `std_answer` is empty for brainstorming,
generation and most rewrite items, and then that block is left out), answer 1 and answer 2, and
ends its reply with a verdict line in a fixed format:

- Chinese (`language="zh"`, BELLE's language): `结论：1`, `结论：2` or `结论：平局`;
- English (`language="en"`): `Verdict: 1`, `Verdict: 2` or `Verdict: tie`.

The answers are only ever called 1 and 2 (the order shown), never A and B: which run is shown
first is decided per request by the caller (`lorabench.judging.pairwise`), who swaps the order.

`parse_verdict` reads the verdict the judge meant, or none with the reason, like the score
parser (`parsing.py`). Rules:

- Text is NFKC-normalised (full-width colons, digits and brackets become ASCII).
- A *verdict line* is a label (`结论`, `最终结论`, `裁决`, `判定`, `胜者`, `更好的回答`,
  `verdict`, `final verdict`, `conclusion`, `winner`, `better answer`), optionally in Markdown,
  then `:`/`=` or `是`/`为`/`is`, then the verdict; a label with nothing after it on its line
  takes the next non-empty line (`**结论：**\\n1`). A bracketed mark `[[1]]`, `[[2]]`,
  `[[平局]]`, `[[tie]]` (MT-Bench's form) is a verdict line too.
- The LAST verdict line decides (a judge that reconsiders writes its final verdict last);
  earlier ones are not read. Every verdict mark on that line must agree (`结论：1 [[2]]` gives
  none).
- Within the verdict, the first clause (up to `,`, `;`, `。`, `!`, `?`) is read. A tie word
  not negated (`平局`, `平手`, `打平`, `一样好`, `不相上下`, `旗鼓相当`, `tie`, `draw`, `equal`,
  `equally`, `neither`; not `不是平局`, `not a tie`) makes a tie, even beside both numbers
  (`回答1和回答2一样好`). Otherwise the first answer named wins (`1`, `回答1`, `答案一`,
  `第一个回答`, `Answer 1`, `Response 2`; `回答2比回答1好` → 2), where a bare `1`/`2` must
  stand alone after punctuation, `是`/`为` or a conjunction and count nothing (`2个回答` and
  `问题1` name no answer).
- No verdict from that clause when it names the two answers as alternatives (`1或2`, `1/2`,
  `1 or 2`, `回答1和回答2`), when it holds a word that may make the answer named first the
  loser (`不`, `没`, `无`, `差`, `逊`, `worse`, `less`, `not`: `回答1不如回答2` gives none
  rather than a guess), or when it names no answer and no tie (`结论：无法判断`).
- Without any verdict line, a reply that is nothing but a verdict (`1`, `平局`, `Tie.`,
  `回答1更好。`, `Answer 2 is better`) counts; anything else gives none ("no verdict line").

Unreadable verdicts are parse failures for the caller: never a tie.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from lorabench.evaluation.eval_set import EvalItem

PairwiseLanguage = Literal["zh", "en"]
"""The language of the pairwise prompt (`zh`: BELLE's language)."""

PAIRWISE_LANGUAGES: tuple[str, ...] = get_args(PairwiseLanguage)

Verdict = Literal["first", "second", "tie"]
"""Which shown answer the judge preferred: the one shown first, second, or neither."""

VERDICTS: tuple[str, ...] = get_args(Verdict)

PAIRWISE_PROMPTS_VERSION = "lorabench-pairwise-v1"
"""Names the prompt texts below in run parameters; change it whenever they change."""

_ZH_INSTRUCTION = (
    "你是一名公正的评审。请比较两个AI助手对下面这个问题的回答，判断哪一个回答更好。"
    "请考虑回答是否正确、是否满足问题的要求、是否有帮助、表达是否清楚、内容是否真实且没有恶意。"
    "{reference_note}"
    "不要让回答出现的先后顺序、回答的长短或助手的名字影响你的判断，尽量客观。"
)
_ZH_REFERENCE_NOTE = "请以标准答案为参考，与标准答案不符的内容是错误。"
_ZH_VERDICT = (
    "请先简要比较两个回答，然后在最后一行严格按照以下格式给出结论："
    "“结论：1”表示回答1更好，“结论：2”表示回答2更好，“结论：平局”表示两个回答一样好。"
)
_EN_INSTRUCTION = (
    "You are an impartial judge. Compare the two AI assistants' answers to the question below "
    "and decide which answer is better. Consider correctness, whether the answer does what the "
    "question asks, helpfulness, clarity, and whether it is truthful and harmless. "
    "{reference_note}"
    "Do not let the order in which the answers are shown, their length or the assistants' "
    "names influence your judgement; be as objective as possible."
)
_EN_REFERENCE_NOTE = "Use the reference answer as the standard: what contradicts it is wrong. "
_EN_VERDICT = (
    "First compare the two answers briefly, then give your verdict on the last line in exactly "
    'this format: "Verdict: 1" if answer 1 is better, "Verdict: 2" if answer 2 is better, '
    '"Verdict: tie" if they are equally good.'
)


@dataclass(frozen=True)
class _Texts:
    """One language's prompt texts; answers are fenced by start and end marks (MT-Bench's
    layout), since an answer may itself hold blank lines and headings."""

    instruction: str
    reference_note: str
    question: str
    reference: str
    answer_start: str
    """With `{n}` for the answer's number, 1 or 2."""
    answer_end: str
    verdict: str


_TEXTS: dict[str, _Texts] = {
    "zh": _Texts(
        _ZH_INSTRUCTION,
        _ZH_REFERENCE_NOTE,
        "[问题]",
        "[标准答案]",
        "[回答{n}开始]",
        "[回答{n}结束]",
        _ZH_VERDICT,
    ),
    "en": _Texts(
        _EN_INSTRUCTION,
        _EN_REFERENCE_NOTE,
        "[Question]",
        "[Reference Answer]",
        "[The Start of Answer {n}]",
        "[The End of Answer {n}]",
        _EN_VERDICT,
    ),
}


def build_pairwise_prompt(
    item: EvalItem, first: str, second: str, language: PairwiseLanguage = "zh"
) -> str:
    """The single user message asking which of two answers to `item` is better.

    `first` is shown as answer 1 and `second` as answer 2; the gold answer is shown when the
    item has one (non-empty `std_answer`), and the instruction mentions it only then.
    """
    if language not in _TEXTS:
        raise ValueError(f"language must be one of {PAIRWISE_LANGUAGES}, got {language!r}")
    texts = _TEXTS[language]
    has_reference = bool(item.std_answer.strip())
    head = texts.instruction.format(reference_note=texts.reference_note if has_reference else "")
    blocks = [head, f"{texts.question}\n{item.question}"]
    if has_reference:
        blocks.append(f"{texts.reference}\n{item.std_answer}")
    for n, answer in ((1, first), (2, second)):
        start, end = texts.answer_start.format(n=n), texts.answer_end.format(n=n)
        blocks.append(f"{start}\n{answer}\n{end}")
    blocks.append(texts.verdict)
    return "\n\n".join(blocks)


# ---- parsing ---------------------------------------------------------------------------------


class VerdictParse(NamedTuple):
    """A verdict on the two shown answers, or None with the reason it could not be read."""

    verdict: Verdict | None
    reason: str = ""


_DECOR = r"[\s*_`'\"“”‘’「」『』【】]*"
_LABEL = re.compile(
    r"(?:(?:最终|最后|综合|我的|总体)?(?:结论|裁决|判定|判决)|获胜者|胜者|更好的(?:回答|答案)"
    r"|(?:final\s+|my\s+)?(?:verdict|conclusion|judgement|judgment)|winner"
    r"|better\s+(?:answer|response))"
    rf"{_DECOR}(?:(?:是|为|is)?{_DECOR}[:=]|是|为|\bis\b)",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"\[\[\s*([^\[\]\n]{1,12}?)\s*\]\]")
_ORDINAL: dict[str, Verdict] = {"1": "first", "2": "second", "一": "first", "二": "second"}
# An answer named: `回答1`, `答案一`, `第一个回答`, `Answer 1`, or a bare 1/2 standing alone
# after punctuation, `是`/`为` or a conjunction, and counting nothing (`2个回答` counts answers,
# `1.5` is a number, `1分` a score).
_COUNTED = r"个|条|点|种|分|份|项|位|次|段|句|号"
_CHOICE = re.compile(
    r"(?:(?:模型|助手)?(?:回答|答案|回复)\s*([12一二])(?![\d.]?\d)"
    r"|第\s*([12一二])\s*(?:个|条)?\s*(?:回答|答案|回复)?"
    r"|\b(?:answer|response|assistant|output)\s*#?\s*([12])\b"
    r"|(?<![^\s:=*_`'\"“”‘’「」『』【】\[(（是为选或和与及跟、/&])"
    rf"([12])(?![A-Za-z0-9_%]|\.\d|\s*(?:{_COUNTED})))",
    re.IGNORECASE,
)
_TIE = re.compile(
    r"平局|平手|打平|持平|一样好|同样好|一样差|同样差|不相上下|难分高下|难分伯仲|旗鼓相当|势均力敌"
    r"|水平相当|质量相当|\b(?:tie|tied|draw|equal|equally|neither)\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"(?:不是|并非|并不是|不算|不为|非|\bnot\s+(?:a\s+)?|n't\s+(?:a\s+)?)$", re.I)
# Words that may say the named answer is the worse one (`回答1不如回答2`, `Answer 2 is worse`):
# a clause holding one is not read, since the answer it names first may be the loser.
_INFERIOR = re.compile(
    r"不|没|无|差|劣|逊|输|弱|\b(?:not|worse|worst|less|lose|loses|inferior|fails?)\b|n't", re.I
)
_JOINED = re.compile(r"\s*(?:或者|或是|或|还是|和|与|及|跟|/|&|、|\bor\b|\band\b)\s*", re.I)
_CLAUSE_END = re.compile(r"[,，;；。!！?？]|\.(?!\d)")
_BETTER = (
    r"(?:更好|更佳|更优|较好|胜出|获胜|胜|赢|is\s+better|is\s+the\s+better\s+one|wins"
    r"|is\s+the\s+winner)?"
)
_BARE = re.compile(rf"^{_DECOR}(?P<content>[^\n]{{1,30}}?){_DECOR}{_BETTER}{_DECOR}[。.!]?$", re.I)


def parse_verdict(reply: str) -> VerdictParse:
    """The verdict in a pairwise judge reply (`first`, `second`, `tie`) or None with the reason
    (the module docstring gives the rules)."""
    text = unicodedata.normalize("NFKC", reply).strip()
    if not text:
        return VerdictParse(None, "empty reply")
    marks = _verdict_marks(text)
    if not marks:
        bare = _BARE.match(text)
        if bare is not None and _only_a_verdict(bare["content"]):
            return _read_clause(bare["content"])
        return VerdictParse(None, "no verdict line in the reply")
    last_line = marks[-1][0]
    readings = [(content, _read_clause(content)) for line, content in marks if line == last_line]
    for content, reading in readings:
        if reading.verdict is None:
            return VerdictParse(None, f"{reading.reason}: {content[:40]!r}")
    verdicts = sorted({reading.verdict for _, reading in readings if reading.verdict})
    if len(verdicts) > 1:
        return VerdictParse(None, f"contradictory verdicts on the last verdict line: {verdicts}")
    return VerdictParse(verdicts[0])


def _verdict_marks(text: str) -> list[tuple[int, str]]:
    """(line number, what follows the mark) for every verdict mark, in order of position."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    marks: list[tuple[int, int, str]] = []
    for match in _LABEL.finditer(text):
        line_no = text.count("\n", 0, match.start())
        content = text[match.end() : starts[line_no] + len(lines[line_no])]
        if not content.strip(" *_`'\"“”‘’「」『』【】"):
            # `**结论：**` alone on its line: the verdict is on the next non-empty line.
            content = next((line for line in lines[line_no + 1 :] if line.strip()), "")
        marks.append((match.start(), line_no, content))
    for match in _BRACKETED.finditer(text):
        marks.append((match.start(), text.count("\n", 0, match.start()), match.group(1)))
    return [(line_no, content) for _, line_no, content in sorted(marks)]


def _read_clause(content: str) -> VerdictParse:
    """The verdict in the first clause of a verdict's text (rules in the module docstring)."""
    end = _CLAUSE_END.search(content)
    clause = content[: end.start()] if end else content
    for tie in _TIE.finditer(clause):
        if not _NEGATED.search(clause[: tie.start()]):
            return VerdictParse("tie")
    choices = list(_CHOICE.finditer(clause))
    if not choices:
        return VerdictParse(None, "a verdict line naming neither answer nor a tie")
    named = [_ORDINAL[next(g for g in match.groups() if g)] for match in choices]
    for i in range(1, len(choices)):
        between = clause[choices[i - 1].end() : choices[i].start()]
        if _JOINED.fullmatch(between) and named[i] != named[i - 1]:
            return VerdictParse(None, "a verdict line naming both answers as alternatives")
    inferior = _INFERIOR.search(clause)
    if inferior is not None:
        return VerdictParse(
            None, f"a verdict line that may name the worse answer ({inferior[0]!r})"
        )
    return VerdictParse(named[0])


def _only_a_verdict(content: str) -> bool:
    """Whether `content` is one answer's name or a tie word and nothing else."""
    content = content.strip()
    return any(p.fullmatch(content) is not None for p in (_CHOICE, _TIE))
