"""Score parsing on the kinds of replies judges really write, and what must not parse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorabench.judging.parsing import parse_score, parse_score_detail


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("得分：0.8 理由：回答基本正确。", 0.8),
        ("得分: 1", 1.0),
        ("得分:0.75分", 0.75),
        ("得分：0", 0.0),
        ("得分为0.6，因为模型回答遗漏了一个要点。", 0.6),
        ("得分是 0.5", 0.5),
        ("得分：０.９", 0.9),  # full-width digits
        ("得分 ： 0.3", 0.3),
        ("**得分**: 0.7\n\n**理由**：……", 0.7),
        ("得分：【0.4】", 0.4),
        ("得分(0-1)：0.9", 0.9),
        ("得分（满分1分）：0.6", 0.6),
        ("分数：1分。理由：完全正确。", 1.0),
        ("评分: .5", 0.5),
        ("Score: 0.9. The answer is correct.", 0.9),
        ("score = 0.25", 0.25),
        ("The score is 1.", 1.0),
        ("得分：1.0/1", 1.0),
        ("得分：4/5", 0.8),
        ("得分: 80%", 0.8),
        ("0.8", 0.8),
        ("1分", 1.0),
        ("理由：模型回答正确，与标准答案一致。\n得分：1", 1.0),
        ("得分：0.8\n理由：……综上，得分：0.8。", 0.8),  # a restated, equal score
        ("分数在0到1之间。得分：0.6", 0.6),  # the scale restated is not a score
        ("满分为1分，模型得分：0.5", 0.5),
    ],
)
def test_scores_are_read_from_real_reply_shapes(reply: str, score: float) -> None:
    assert parse_score(reply) == pytest.approx(score)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("模型回答正确，与标准答案一致。", "no score"),
        ("这个回答很好，我给满分。", "no score"),
        ("得分：8", "outside"),  # not silently rescaled to 0.8
        ("得分: 8分", "outside"),
        ("Score: 85", "outside"),
        ("得分：-0.5", "outside"),
        ("得分: 1.5", "outside"),
        ("得分：120%", "outside"),
        ("得分：0.5\n……修正后得分：0.7", "conflicting"),
        ("得分：0.6-0.8", "range"),
        ("得分：1/0", "invalid"),
    ],
)
def test_unreadable_or_out_of_range_scores_are_failures(reply: str, reason: str) -> None:
    parsed = parse_score_detail(reply)
    assert parsed.score is None
    assert reason in parsed.reason


@given(st.integers(min_value=0, max_value=100), st.sampled_from(["：", ":", " : ", "为", "是 "]))
def test_any_labelled_score_in_range_round_trips(hundredths: int, separator: str) -> None:
    value = hundredths / 100
    reply = f"得分{separator}{value:g} 理由：略。"
    assert parse_score(reply) == pytest.approx(value)


@given(st.text(max_size=200))
def test_parser_never_raises_and_stays_in_range(reply: str) -> None:
    parsed = parse_score_detail(reply)
    assert (parsed.score is None) != (parsed.reason == "")
    if parsed.score is not None:
        assert 0.0 <= parsed.score <= 1.0
