"""Reading the score out of a judge's free-text reply: its one intended score, or a failure.

The judge is asked to write its score as `得分: x` with x in [0, 1]. Real replies vary: full-width
colons and digits (`得分：０.８`), `得分为：0.5`, `得分: 0.75分`, Markdown (`**得分：** 0.9`),
English (`Score: 0.9/1`), fractions, percentages, Chinese numerals (`得零分`, `零点五分`),
sub-scores with a total, `给予满分`, `打0.6分`.
A reply yields the score it means or no score with the reason; never a different number. Rules:

Reading
- Text is NFKC-normalised first (full-width colons, digits and brackets become ASCII), except
  that a non-ASCII comma (`，`) stays `，`: it separates clauses and is never a decimal comma.
- A bracketed note that only states the scale (`(满分1分)`, `（满分为1分）`, `(总分1分)`,
  `(out of 1)`) is dropped before reading, so its 1 is never taken for a score.
- A *labelled score* is a number after a label: `得分`, `分数`, `评分`, `打分`, `分值`, `score`,
  `rating`, optionally followed by a short bracketed note (`得分(0-1):`), `为`/`是` (also
  `应为`, `应该是`, `可以是`), `is`/`of`, a colon or `=`, quotes, brackets and Markdown emphasis.
- A *total* is a labelled score whose label says so: `总分`, `总得分`, `总评分`, `最终得分`,
  `最后得分`, `综合得分`, `整体得分`, `总体评分` (any of 总/最终/最后/综合/整体/总体 with
  得分/分数/评分/分值/分), `final score`, `overall score`, `total score`.
- The number: `0.8`, `.5`, `1`; `a/b` is a fraction (`1.0/1` → 1.0, `4/5` → 0.8); `x%` is x/100;
  `满分` in place of a number (`得分：满分`) is 1.0, or the number it names (`满分1分` → 1), but
  not `满分的一半` or `满分的80%` (no score).
- Chinese numerals: one of 零〇一二两三四五六七八九十, optionally `点` and digits (`零` → 0,
  `一` → 1, `零点五` → 0.5, `零点七五` → 0.75, `十` → 10, refused as outside [0, 1]). It counts
  only where it ends a word, with or without `分` (`得分：零点八`, `得一分。`), so `一分为二`,
  `得十分清楚`, `一般` hold no score.
- Decimal comma: an ASCII comma in the reply, one digit before it and one or two after, the
  digits ending the number (`分`, a space, punctuation or the end of the text follows):
  `0,8` → 0.8, `0,75 理由` → 0.75, `0,8分` → 0.8, `1,0` → 1.0. Otherwise the number ends before
  the comma: `0,3个问题…` reads 0 and the rest is another clause.
- A number followed by a comma (`,`, `，` or `、`) and another number that stands alone (`分`, a
  space, punctuation or the end of the text follows it) is a list: no score from it, never its
  first element (`1,2,3`, `1,000`, `0.8, 0.9`). So is `得分：0，8`: with a clause-separating
  comma it may mean 0.8 or 0 and 8, and an ambiguous reply gives no score. A number glued to a
  word (`得分：0，3个问题都没有回答`) starts a new clause: the score is 0.
- A broken decimal, a full stop between digits with spaces around it or written `。`
  (`0. 8`, `0。8`), is unreadable: no score, since 0, 8 or 0.8 may be meant.
- A range (`0.6-0.8`, `0.6~0.8`, `0到1`, `0至1`, `0.6或0.7`) is never a score. A formula is
  read by its result (`总分 = 0.8*0.5 + 0.6*0.5 = 0.7` → 0.7); one without `= result` is no
  score.
- An *awarded score* is a verb phrase: `给`/`给予`/`给出`/`打`/`评为`/`判为`/`获得`/`得到`/`得`
  (and the like, optionally with `这个回答`) followed by `满分` (→ 1.0, or `满分1分` → 1) or by a
  number and `分` (`打0.6分` → 0.6, `给零分` → 0, `给予满分1分` → 1.0, `我给满分` → 1.0). A
  phrase whose clause (the text between punctuation marks) holds a negation, a condition, a
  bound or a goal (`不`, `没`, `未`, `无法`, `难以`, `每`, `各`, `若`, `则`, `如果`, `假如`,
  `只要`, `否则`, `扣`, `至少`, `最多`, `才`, `需`, `要想`) is not a verdict (`不能给满分`,
  `每个要点给0.25分`, `如果完全正确则给满分`, `至少给0.5分`, `要想得到满分，…`).
- A reply that is nothing but a number (`0.8`, `1分`, `零分`) counts too.

Deciding, in this order (the first tier present gives the score)
1. Totals. A total wins over sub-scores (`准确性得分 0.8 … 总得分 0.7` → 0.7). Totals that
   disagree, a total that cannot be read (`总分：` with a list or an unfinished formula), or a
   total given only as a range give no score. A total of exactly 1 beside a different labelled
   score gives no score (`得分：0.7，总分1分`: the 1 may be the scale, not the verdict).
2. Labelled scores: all of them must agree (a restated equal score is fine); different values
   (`得分: 0.5 … 修正后得分: 0.7`), a list or an invalid fraction (`1/0`) give no score; so does
   a reply whose labelled scores are all ranges.
3. Awarded scores, only when no score is labelled: they must agree.
4. A bare number (the whole reply), only when nothing else is there.
Across tiers: a score from a total or from labelled scores must agree with every awarded score
in the reply. `得分：0.5。…应得0分` gives no score ("labelled score 0.5 and awarded score 0
disagree"), and so does a total beside an awarded score of another value, even one that equals
a sub-score (an awarded phrase does not say which part it scores). Equal values are fine
(`得分：1 … 因此给予满分`). Sub-scores never conflict with their total.
Finally, a value outside [0, 1] (`得分: 8`, `得分: -1`, `得分：120%`, `满分10分`, `得分：十分`)
gives no score: it is not clamped or rescaled, because the judge did not answer in the asked
scale.

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
# Commas NFKC would make ASCII: kept as `，` so that none can pass for a decimal comma.
_WIDE_COMMA = re.compile("[，﹐︐]")
_CN_DIGITS = {**{c: i for i, c in enumerate("零一二三四五六七八九")}, "〇": 0, "两": 2, "十": 10}
# A Chinese numeral must end a word, so that 一分为二, 得十分清楚 and 一般 hold no number.
_CN_NUM = r"[零〇一二两三四五六七八九十](?:点[零〇一二三四五六七八九]+)?(?=分?(?:[吧了]|(?!\w)))"
# The digits after a decimal comma end the number: `0,8分` is 0.8, `0,3个` is 0 and a clause.
_DECIMAL_COMMA = r"\d,\d{1,2}(?:(?=分)|(?!\w))"
_NUM = (
    rf"(?P<sign>[-+−])?\s*(?:(?P<num>{_DECIMAL_COMMA}|\d+(?:\.\d+)?|\.\d+)|(?P<cn>{_CN_NUM}))"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?P<pct>\s*%)?"
)
_NUMBER = re.compile(_NUM)
_FULL_MARKS = (
    r"满分(?!\s*的\s*[\d.半零〇一二两三四五六七八九十百])"  # not 满分的一半, 满分的80%
    rf"(?:\s*(?:为|是)?\s*(?P<marks>\d+(?:\.\d+)?|{_CN_NUM})\s*分)?"
)
_FULL = re.compile(_FULL_MARKS)
_FORMULA = re.compile(
    r"[\d\s.()]*[\d)]\s*[*/+×÷−-][\d\s.()*/+×÷−-]*=\s*"
    r"(?P<sign>[-+−])?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<den>)(?P<pct>\s*%)?"
)
# A number standing alone: `分`, a space, punctuation or the end of the text follows it.
_ALONE = r"[-+−]?\.?\d+(?:\.\d+)?(?:(?=分)|(?!\w|\.\d))"
_LIST_AFTER = re.compile(rf"\s*[,，、]\s*{_ALONE}")
_BROKEN_AFTER = re.compile(rf"(?<=\d)[ \t]*[.。][ \t]*{_ALONE}")  # 0. 8, 0。8
_RANGE_AFTER = re.compile(r"\s*(?:-|−|–|—|~|到|至|或|or\b)\s*[-+−]?\.?\d", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*[*×+÷]\s*[\d(.]")
_AFTER_PROBLEMS = (
    (_LIST_AFTER, "list"),
    (_BROKEN_AFTER, "broken"),
    (_RANGE_AFTER, "range"),
    (_OPERATOR_AFTER, "formula"),
)
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
    rf"(?:(?P<full>{_FULL_MARKS})"
    rf"|{_NUM}\s*(?:分(?![数值])|分?的(?:分数|得分|评分)))"
)
_NOT_A_VERDICT = re.compile(
    r"不|没|未|无法|难以|勿|每|各|若|则|如果|假如|假设|只要|一旦|除非|否则|扣|"
    r"至少|最少|最多|至多|才|需|要想|想要|\bif\b",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[,，;!?:。、\n]|(?<!\d)\.|\.(?!\d)")
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
    """`range`, `list`, `broken`, `formula`, `invalid`, `unreadable`; empty for a value."""


def parse_score(reply: str) -> float | None:
    """The score in [0, 1] written in a judge reply, or None when there is no valid one."""
    return parse_score_detail(reply).score


def parse_score_detail(reply: str) -> ParsedScore:
    """Like `parse_score`, with the reason when there is no score (for the judgements file)."""
    text = "，".join(unicodedata.normalize("NFKC", p) for p in _WIDE_COMMA.split(reply)).strip()
    if not text:
        return ParsedScore(None, "empty reply")
    text = _SCALE_NOTE.sub(" ", text)
    totals, labelled = _labelled(text)
    awarded = _awarded(text)
    if totals:
        parsed = _agrees(_decide_totals(totals, labelled), "total", awarded)
    elif labelled:
        parsed = _agrees(_decide(labelled, "labelled score"), "labelled score", awarded)
    elif awarded:
        parsed = _decide(awarded, "awarded score")
    else:
        bare = _BARE.match(text)
        if bare is None:
            return ParsedScore(None, "no score found in the reply")
        parsed = _decide([_from_number(text, bare, 0)], "score")
    return _in_range(parsed)


def _labelled(text: str) -> tuple[list[_Found], list[_Found]]:
    """The totals and the other labelled scores in the text."""
    totals: list[_Found] = []
    labelled: list[_Found] = []
    for match in _LABEL.finditer(text):
        lead = _LEAD.match(text, match.end())
        assert lead is not None  # every part of _LEAD is optional
        found = _read_value(text, lead.end(), match.start())
        if found is None and match["total"] and lead["sep"]:
            found = _Found(None, _excerpt(text, match.start(), lead.end()), "unreadable")
        if found is not None:
            (totals if match["total"] else labelled).append(found)
    return totals, labelled


def _read_value(text: str, pos: int, start: int) -> _Found | None:
    """The value written at `pos` (a label's `start` for the excerpt), or None if no number."""
    formula = _FORMULA.match(text, pos)
    if formula is not None and "\n" not in formula.group(0):
        return _from_number(text, formula, start)
    full = _FULL.match(text, pos)
    if full is not None:
        return _Found(_full_value(full["marks"]), _excerpt(text, start, full.end()))
    number = _NUMBER.match(text, pos)
    if number is None:
        return None
    return _from_number(text, number, start)


def _from_number(text: str, match: re.Match[str], start: int) -> _Found:
    excerpt = _excerpt(text, start, match.end())
    for after, problem in _AFTER_PROBLEMS:
        if after.match(text, match.end()):
            return _Found(None, excerpt, problem)
    value = _value(match.groupdict().get("cn") or match["num"])
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


def _value(number: str) -> float:
    """The value of an Arabic (`0.8`, `0,8`) or a Chinese (`零点八`) number."""
    whole, _, fraction = number.partition("点")
    if whole in _CN_DIGITS:
        digits = "".join(str(_CN_DIGITS[digit]) for digit in fraction)
        return float(f"{_CN_DIGITS[whole]}.{digits or 0}")
    return float(number.replace(",", "."))


def _full_value(marks: str | None) -> float:
    """`满分` is 1; `满分x分` is x."""
    return 1.0 if marks is None else _value(marks)


def _awarded(text: str) -> list[_Found]:
    """Awarded scores (`给予满分`, `打0.6分`) whose clause is not negated or conditional."""
    found: list[_Found] = []
    for match in _AWARD.finditer(text):
        if _NOT_A_VERDICT.search(_clause(text, match.start(), match.end())):
            continue
        if match["full"] is not None:
            excerpt = _excerpt(text, match.start(), match.end())
            found.append(_Found(_full_value(match["marks"]), excerpt))
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
        ("broken", f"unreadable {what} (a broken decimal)"),
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


def _decide_totals(totals: list[_Found], labelled: list[_Found]) -> ParsedScore:
    """The totals' one value; a total of 1 beside other labelled scores may be the scale."""
    parsed = _decide(totals, "total")
    if parsed.score is None or not _same(parsed.score, 1.0):
        return parsed
    others = [f.value for f in labelled if f.value is not None]
    if any(not _same(v, 1.0) for v in others):
        shown = ", ".join(f"{v:g}" for v in others)
        return ParsedScore(
            None, f"a total of 1 beside other scores ({shown}): the 1 may be the scale"
        )
    return parsed


def _agrees(parsed: ParsedScore, what: str, awarded: list[_Found]) -> ParsedScore:
    """`parsed`, unless an awarded score elsewhere in the reply says something else."""
    if parsed.score is None:
        return parsed
    for found in awarded:
        if found.value is None:
            return ParsedScore(
                None, f"{what} {parsed.score:g} beside an unreadable awarded score: {found.excerpt}"
            )
        if not _same(found.value, parsed.score):
            return ParsedScore(
                None,
                f"{what} {parsed.score:g} and awarded score {found.value:g} disagree: "
                f"{found.excerpt}",
            )
    return parsed


def _in_range(parsed: ParsedScore) -> ParsedScore:
    if parsed.score is not None and not 0.0 <= parsed.score <= 1.0:
        return ParsedScore(None, f"score {parsed.score:g} is outside [0, 1]")
    return parsed


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-9)


def _excerpt(text: str, start: int, end: int) -> str:
    return repr(text[start : end + 8])
