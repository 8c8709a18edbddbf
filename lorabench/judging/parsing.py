"""Reading the score out of a judge's free-text reply: its one intended score, or a failure.

The judge is asked to write its score as `得分: x` with x in [0, 1]. Real replies vary: full-width
colons and digits (`得分：０.８`), `得分为：0.5`, `得分: 0.75分`, Markdown (`**得分：** 0.9`),
English (`Score: 0.9/1`), fractions, percentages, sub-scores with a total, `给予满分`, `打0.6分`.
A reply yields the score it means or no score with the reason; never a different number. Rules:

Reading
- Text is NFKC-normalised first (full-width colons, digits, commas and brackets become ASCII).
- A bracketed note that only states the scale (`(满分1分)`, `（满分为1分）`, `(总分1分)`,
  `(out of 1)`) is dropped before reading, so its 1 is never taken for a score.
- A *labelled score* is a number after a label: `得分`, `分数`, `评分`, `打分`, `分值`, `score`,
  `rating`, optionally followed by a short bracketed note (`得分(0-1):`), `为`/`是` (also
  `应为`, `应该是`, `可以是`), `is`/`of`, a colon or `=`, quotes, brackets and Markdown emphasis.
- A *total* is a labelled score whose label says so: `总分`, `总得分`, `总评分`, `最终得分`,
  `最后得分`, `综合得分`, `整体得分`, `总体评分` (any of 总/最终/最后/综合/整体/总体 with
  得分/分数/评分/分值/分), `final score`, `overall score`, `total score`.
- The number: `0.8`, `.5`, `1`; `a/b` is a fraction (`1.0/1` → 1.0, `4/5` → 0.8); `x%` is x/100;
  `满分` in place of a number (`得分：满分`) is 1.0, or the number it names (`满分1分` → 1).
- Decimal comma: one digit, a comma and one or two digits with nothing more (`0,8` → 0.8,
  `0,75` → 0.75, `1,0` → 1.0). Any other comma after a number (`1,2,3`, `1,000`, `0.8, 0.9`)
  makes it a list: no score from it, never its first element.
- A range (`0.6-0.8`, `0.6~0.8`, `0到1`, `0至1`, `0.6或0.7`) is never a score. A formula is
  read by its result (`总分 = 0.8*0.5 + 0.6*0.5 = 0.7` → 0.7); one without `= result` is no
  score.
- An *awarded score* is a verb phrase: `给`/`给予`/`给出`/`打`/`评为`/`判为`/`获得`/`得到`/`得`
  (and the like, optionally with `这个回答`) followed by `满分` (→ 1.0, or `满分1分` → 1) or by a
  number and `分` (`打0.6分` → 0.6, `给予满分1分` → 1.0, `我给满分` → 1.0). A phrase whose clause
  (the text between punctuation marks) holds a negation or a condition (`不`, `没`, `未`,
  `无法`, `难以`, `每`, `各`, `若`, `则`, `如果`, `假如`, `只要`, `否则`, `扣`) is not a verdict
  (`不能给满分`, `每个要点给0.25分`, `如果完全正确则给满分`).
- A reply that is nothing but a number (`0.8`, `1分`) counts too.

Deciding, in this order (the first tier present decides; later tiers are not consulted)
1. Totals. A total wins over sub-scores (`准确性得分 0.8 … 总得分 0.7` → 0.7). Totals that
   disagree, a total that cannot be read (`总分：` with a list or an unfinished formula), or a
   total given only as a range give no score. A total of exactly 1 beside a different labelled
   score gives no score (`得分：0.7，总分1分`: the 1 may be the scale, not the verdict).
2. Labelled scores: all of them must agree (a restated equal score is fine); different values
   (`得分: 0.5 … 修正后得分: 0.7`), a list or an invalid fraction (`1/0`) give no score; so does
   a reply whose labelled scores are all ranges.
3. Awarded scores, only when no score is labelled: they must agree.
4. A bare number.
Finally, a value outside [0, 1] (`得分: 8`, `得分: -1`, `得分：120%`, `满分10分`) gives no score:
it is not clamped or rescaled, because the judge did not answer in the asked scale.

No score means a parse failure: the caller records it with the reason, never as 0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

_TOTAL_LABEL = (
    r"(?:(?:总|最终|最后|综合|整体|总体)的?(?:得分|分数|评分|分值|分)"
    r"|(?:final|overall|total)\s+(?:score|rating))"
)
_PLAIN_LABEL = r"(?:得分|分数|评分|打分|分值|score|rating)"
_LABEL = re.compile(rf"(?P<total>{_TOTAL_LABEL})|{_PLAIN_LABEL}", re.IGNORECASE)
# Decoration allowed between a label and its number: spaces, Markdown, quotes, brackets.
_DECOR = r"[\s*_`'\"“”‘’「」『』【】\[\]]*"
_NOTE = r"(?:\([^()\n]{0,20}\))?"  # e.g. 得分(0-1): 0.8
_LEAD = re.compile(
    rf"{_DECOR}{_NOTE}{_DECOR}"
    r"(?:(?:应该|应当|应|可以|可|会|将|就)?(?:是|为)|is|of|was|would be|will be)?"
    rf"{_DECOR}(?P<sep>[:=])?{_DECOR}",
    re.IGNORECASE,
)
_NUM = (
    r"(?P<sign>[-+−])?\s*(?P<num>\d,\d{1,2}(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?P<pct>\s*%)?"
)
_NUMBER = re.compile(_NUM)
_FULL_MARKS = re.compile(r"满分(?:\s*(?:为|是)?\s*(?P<num>\d+(?:\.\d+)?)\s*分)?")
_FORMULA = re.compile(
    r"[\d\s.()]*[\d)]\s*[*/+×÷−-][\d\s.()*/+×÷−-]*=\s*"
    r"(?P<sign>[-+−])?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<den>)(?P<pct>\s*%)?"
)
_LIST_AFTER = re.compile(r"\s*,\s*[-+−]?\.?\d")
_RANGE_AFTER = re.compile(r"\s*(?:-|−|–|—|~|到|至|或|or\b)\s*[-+−]?\.?\d", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*[*×+÷]\s*[\d(.]")
_SCALE_NOTE = re.compile(
    r"\([^()\n\d]{0,10}(?:满分|总分|out of|max)[^()\n\d]{0,6}"
    r"(?:1(?:\.0+)?)?[^()\n\d]{0,10}\)",
    re.IGNORECASE,
)
_AWARD = re.compile(
    r"(?:给予了?|给出了?|给了|给|打出|打了|打|评为|评定为|判为|判定为|定为|"
    r"获得了?|得到了?|可得|应得|能得|得了|得)"
    r"(?:这个|该|此|这一|这条|这份)?(?:模型)?的?(?:回答|答案|回复|结果)?(?:打|评)?"
    rf"{_DECOR}"
    r"(?:(?P<full>满分(?:\s*(?:为|是)?\s*\d+(?:\.\d+)?\s*分)?)"
    rf"|{_NUM}\s*(?:分(?![数值])|分?的(?:分数|得分|评分)))"
)
_NOT_A_VERDICT = re.compile(
    r"不|没|未|无法|难以|勿|每|各|若|则|如果|假如|假设|只要|一旦|除非|否则|扣|\bif\b",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[,;!?:。、\n]|(?<!\d)\.|\.(?!\d)")
_BARE = re.compile(rf"^{_DECOR}{_NUM}{_DECOR}(?:分|points?)?{_DECOR}[。.!]?$", re.IGNORECASE)


class ParsedScore(NamedTuple):
    """A score in [0, 1], or None with the reason it could not be read."""

    score: float | None
    reason: str = ""


@dataclass(frozen=True)
class _Found:
    """One score-like spot in a reply: a value, or why it gives none."""

    value: float | None
    excerpt: str
    problem: str = ""
    """`range`, `list`, `formula`, `invalid`, `unreadable`; empty for a value."""


def parse_score(reply: str) -> float | None:
    """The score in [0, 1] written in a judge reply, or None when there is no valid one."""
    return parse_score_detail(reply).score


def parse_score_detail(reply: str) -> ParsedScore:
    """Like `parse_score`, with the reason when there is no score (for the judgements file)."""
    text = unicodedata.normalize("NFKC", reply).strip()
    if not text:
        return ParsedScore(None, "empty reply")
    text = _SCALE_NOTE.sub(" ", text)
    totals: list[_Found] = []
    labelled: list[_Found] = []
    for match in _LABEL.finditer(text):
        lead = _LEAD.match(text, match.end())
        assert lead is not None  # every part of _LEAD is optional
        found = _read_value(text, lead.end(), match.start())
        if found is None:
            if match["total"] and lead["sep"]:
                excerpt = _excerpt(text, match.start(), lead.end())
                totals.append(_Found(None, excerpt, "unreadable"))
            continue
        (totals if match["total"] else labelled).append(found)
    if totals:
        parsed = _decide(totals, "total")
        if parsed.score is not None:
            others = [f.value for f in labelled if f.value is not None]
            if _same(parsed.score, 1.0) and any(not _same(v, 1.0) for v in others):
                shown = ", ".join(f"{v:g}" for v in others)
                return ParsedScore(
                    None, f"a total of 1 beside other scores ({shown}): the 1 may be the scale"
                )
        return _in_range(parsed)
    if labelled:
        return _in_range(_decide(labelled, "labelled score"))
    awarded = _awarded(text)
    if awarded:
        return _in_range(_decide(awarded, "awarded score"))
    bare = _BARE.match(text)
    if bare is not None:
        return _in_range(_decide([_from_number(text, bare, 0)], "score"))
    return ParsedScore(None, "no score found in the reply")


def _read_value(text: str, pos: int, start: int) -> _Found | None:
    """The value written at `pos` (a label's `start` for the excerpt), or None if no number."""
    formula = _FORMULA.match(text, pos)
    if formula is not None and "\n" not in formula.group(0):
        return _from_number(text, formula, start)
    full = _FULL_MARKS.match(text, pos)
    if full is not None:
        value = 1.0 if full["num"] is None else float(full["num"])
        return _Found(value, _excerpt(text, start, full.end()))
    number = _NUMBER.match(text, pos)
    if number is None:
        return None
    return _from_number(text, number, start)


def _from_number(text: str, match: re.Match[str], start: int) -> _Found:
    excerpt = _excerpt(text, start, match.end())
    end = match.end()
    if _LIST_AFTER.match(text, end):
        return _Found(None, excerpt, "list")
    if _RANGE_AFTER.match(text, end):
        return _Found(None, excerpt, "range")
    if _OPERATOR_AFTER.match(text, end):
        return _Found(None, excerpt, "formula")
    num = match["num"].replace(",", ".")
    value = float(num)
    if match["den"]:
        den = float(match["den"])
        if den == 0:
            return _Found(None, excerpt, "invalid")
        value /= den
    if match["pct"]:
        value /= 100
    if match["sign"] in ("-", "−"):
        value = -value
    return _Found(value, excerpt)


def _awarded(text: str) -> list[_Found]:
    """Awarded scores (`给予满分`, `打0.6分`) whose clause is not negated or conditional."""
    found: list[_Found] = []
    for match in _AWARD.finditer(text):
        if _NOT_A_VERDICT.search(_clause(text, match.start(), match.end())):
            continue
        if match["full"] is not None:
            full = _FULL_MARKS.match(match["full"])
            assert full is not None
            value = 1.0 if full["num"] is None else float(full["num"])
            found.append(_Found(value, _excerpt(text, match.start(), match.end())))
        else:
            found.append(_from_number(text, match, match.start()))
    return found


def _clause(text: str, start: int, end: int) -> str:
    """The text around [start, end) up to the nearest punctuation on either side."""
    left = 0
    for stop in _CLAUSE_END.finditer(text, 0, start):
        left = stop.end()
    after = _CLAUSE_END.search(text, end)
    return text[left : after.start() if after else len(text)]


def _decide(found: list[_Found], what: str) -> ParsedScore:
    """One value from the spots of one tier, or the reason there is none."""
    for problem, reason in (
        ("unreadable", f"unreadable {what}"),
        ("invalid", f"invalid {what}"),
        ("list", f"{what} given as a list of numbers"),
        ("formula", f"{what} given as a formula without a result"),
    ):
        bad = [f for f in found if f.problem == problem]
        if bad:
            return ParsedScore(None, f"{reason}: {bad[0].excerpt}")
    values = [f.value for f in found if f.value is not None]
    if not values:
        return ParsedScore(None, f"{what} given only as a range: {found[0].excerpt}")
    if any(not _same(v, values[0]) for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        return ParsedScore(None, f"conflicting {what}s in the reply: {shown}")
    return ParsedScore(values[0])


def _in_range(parsed: ParsedScore) -> ParsedScore:
    if parsed.score is not None and not 0.0 <= parsed.score <= 1.0:
        return ParsedScore(None, f"score {parsed.score:g} is outside [0, 1]")
    return parsed


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-9)


def _excerpt(text: str, start: int, end: int) -> str:
    return repr(text[start : end + 8])
