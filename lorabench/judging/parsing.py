"""Reading the score out of a judge's free-text reply.

The judge is asked to write its score as `得分: x` with x in [0, 1]. Real replies vary: full-width
colons and digits (`得分：０.８`), `得分为0.6`, `得分: 0.75分`, Markdown (`**得分**: 1`), English
(`Score: 0.9`), fractions (`1.0/1`, `4/5`), percentages (`80%`), trailing reasons. The rules:

- Text is NFKC-normalised first (full-width colons, digits and brackets become ASCII).
- A score is a number after a label (`得分`, `分数`, `评分`, `打分`, `score`, `rating`), optionally
  followed by `为`/`是`/`is`/`of`, a colon or `=`, quotes, Markdown emphasis, and a short
  parenthesised note such as `(0-1)`. A reply that is nothing but a number also counts.
- `a/b` is read as a fraction (`1.0/1` → 1.0, `4/5` → 0.8), `x%` as x/100.
- Several labelled scores must agree: different values (`得分: 0.5 … 修正后得分: 0.7`) are
  ambiguous and give no score. A range (`分数为0到1`, `得分: 0.6-0.8`) is never read as a score.
- A value outside [0, 1] (`得分: 8`, `得分: -1`) gives no score: it is not clamped or rescaled,
  because the judge did not answer in the asked scale.

No score means a parse failure: the caller records it with the reason, never as 0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import NamedTuple

_LABEL = r"(?:得分|分数|评分|打分|score|rating)"
# Decoration allowed between a label and its number: spaces, Markdown, quotes, brackets.
_DECOR = r"[\s*_`'\"“”‘’「」『』【】\[\]]*"
_NOTE = r"(?:\([^()\n]{0,20}\))?"  # e.g. 得分(0-1): 0.8
_NUMBER = (
    r"(?P<sign>[-+−])?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?P<pct>\s*%)?"
)
_LABELLED = re.compile(
    rf"{_LABEL}{_DECOR}{_NOTE}{_DECOR}(?:为|是|is|of)?{_DECOR}[:=]?{_DECOR}{_NUMBER}",
    re.IGNORECASE,
)
_BARE = re.compile(rf"^{_DECOR}{_NUMBER}{_DECOR}(?:分|points?)?{_DECOR}[。.!]?$", re.IGNORECASE)
_RANGE_AFTER = re.compile(r"\s*(?:-|~|～|到|至)\s*\d")


class ParsedScore(NamedTuple):
    """A score in [0, 1], or None with the reason it could not be read."""

    score: float | None
    reason: str = ""


def parse_score(reply: str) -> float | None:
    """The score in [0, 1] written in a judge reply, or None when there is no valid one."""
    return parse_score_detail(reply).score


def parse_score_detail(reply: str) -> ParsedScore:
    """Like `parse_score`, with the reason when there is no score (for the judgements file)."""
    text = unicodedata.normalize("NFKC", reply).strip()
    if not text:
        return ParsedScore(None, "empty reply")
    matches = list(_LABELLED.finditer(text))
    if not matches:
        bare = _BARE.match(text)
        if bare is None:
            return ParsedScore(None, "no score found in the reply")
        matches = [bare]
    values: list[float] = []
    ranges: list[str] = []
    for match in matches:
        if _RANGE_AFTER.match(text, match.end()):
            # "分数为0到1之间" restates the scale; a range is never the verdict itself.
            ranges.append(_excerpt(text, match))
            continue
        value = _value(match)
        if value is None:
            return ParsedScore(None, f"invalid score: {_excerpt(text, match)}")
        values.append(value)
    if not values:
        return ParsedScore(None, f"score given only as a range: {ranges[0]}")
    if any(not math.isclose(v, values[0], abs_tol=1e-9) for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        return ParsedScore(None, f"conflicting scores in the reply: {shown}")
    score = values[0]
    if not 0.0 <= score <= 1.0:
        return ParsedScore(None, f"score {score:g} is outside [0, 1]")
    return ParsedScore(score)


def _value(match: re.Match[str]) -> float | None:
    value = float(match["num"])
    if match["den"] is not None:
        den = float(match["den"])
        if den == 0:
            return None
        value /= den
    if match["pct"]:
        value /= 100
    if match["sign"] in ("-", "−"):
        value = -value
    return value


def _excerpt(text: str, match: re.Match[str]) -> str:
    return repr(text[match.start() : match.end() + 8])
