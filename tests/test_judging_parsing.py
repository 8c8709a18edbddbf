"""Score parsing on the kinds of replies judges really write, and what must not parse: a reply
gives its one intended score or an explicit failure, never a different number."""

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
        # the spellings gpt-3.5-turbo writes under BELLE's prompts
        ("得分：0.8分", 0.8),
        ("得分为：0.5", 0.5),
        ("**得分：** 0.9", 0.9),
        ("Score: 0.9/1", 0.9),
        ("得分:1\n\n理由：模型回答与标准答案一致，得分为1。", 1.0),
        ("满分为1分，最低分为0分。得分：0.3", 0.3),  # the prompt's scale echoed
        ('请按照"得分:"这样的形式输出分数。得分:0.9', 0.9),  # the format echoed
        ("得分：0.8（满分1分）", 0.8),
        ("得分: 0.8 (满分为1)", 0.8),
        ("得分：0.7（总分1分）", 0.7),  # a bracketed scale note is not a total
        ("【得分】0.8", 0.8),
        ("得分：[0.8]", 0.8),
        ("得分:0.8/1.0", 0.8),
        ("得分应该是0.6", 0.6),
        ("这个回答的得分应为0.4分。", 0.4),
        ("模型回答的得分是0分", 0.0),
        ("得分：0.8。满分1分。", 0.8),
        ("得分： 0.8 **理由**：略", 0.8),
        ("总体来看回答很好，得分：0.9", 0.9),  # 总体 not followed by a score label
        ("The overall score is 0.6.", 0.6),
        ("Final score: 0.85", 0.85),
        # decimal comma: one digit, a comma, one or two digits
        ("得分:0,8", 0.8),
        ("得分：0，8", 0.8),  # a full-width comma
        ("得分:0,75 理由：略", 0.75),
        ("得分:1,0", 1.0),
        ("0,8", 0.8),
        ("得分：1，理由：完全正确。", 1.0),  # a comma before words is punctuation
        # full marks and awarded scores
        ("得分：满分", 1.0),
        ("得分：满分1分", 1.0),
        ("给予满分1分", 1.0),
        ("这个回答很好，我给满分。", 1.0),
        ("回答完全正确，给予满分", 1.0),
        ("打0.6分", 0.6),
        ("我给这个回答打0.8分。", 0.8),
        ("综上，给0.7分", 0.7),
        ("可以评为0.5分", 0.5),
        ("给出0.7的分数", 0.7),
        ("该回答可得0.5分", 0.5),
        ("虽然不够完整，但可以给0.8分", 0.8),  # the negation is in another clause
        ("得分：0.8\n理由：回答基本正确，不能给满分。", 0.8),  # negated: not a verdict
        ("得分：1\n理由：……因此给予满分。", 1.0),
        # sub-scores and a total: the total wins
        ("准确性得分 0.8，流畅性得分 0.6，总得分 0.7", 0.7),
        ("准确性得分：0.8\n完整性得分：0.6\n总分：0.7", 0.7),
        ("准确性：0.8分；完整性：0.6分；总分：0.7分", 0.7),
        ("准确性评分：0.9，相关性评分：0.5，最终得分：0.7", 0.7),
        ("准确性得分：0.8，完整性得分：0.6。综合得分为0.75分。", 0.75),
        ("最终得分：0.7", 0.7),
        ("得分：0.7\n最终得分：0.7", 0.7),
        ("总分 = 0.8*0.5 + 0.6*0.5 = 0.7", 0.7),  # a formula is read by its result
        ("准确性得分0.8，流畅性得分0.6，总分：(0.8+0.6)/2=0.7", 0.7),
        ("得分：4/5 = 0.8", 0.8),
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
        ("这个回答不错，但不能给满分。", "no score"),  # negated
        ("无法给予满分", "no score"),
        ("每个要点给0.25分。", "no score"),  # a rubric, not a verdict
        ("如果完全正确则给满分", "no score"),  # a condition
        ("满分为1分，最低分为0分。", "no score"),  # the scale alone
        ("总分是根据两点计算的", "no score"),
        ("得分：8", "outside"),  # not silently rescaled to 0.8
        ("得分: 8分", "outside"),
        ("Score: 85", "outside"),
        ("得分：-0.5", "outside"),
        ("得分: 1.5", "outside"),
        ("得分：120%", "outside"),
        ("得分：0.5\n……修正后得分：0.7", "conflicting"),
        ("得分：0.6-0.8", "range"),
        ("得分：1/0", "invalid"),
        # lists and commas: never the first number of a list
        ("得分:1,2,3", "list"),
        ("得分：1,000", "list"),
        ("得分：0.8, 0.9", "list"),
        ("得分：0,8,9", "list"),
        ("得分：1,5", "outside"),  # 1.5, not 1
        # more ranges, alternatives and bad scales
        ("得分：0.6~0.8", "range"),
        ("得分：0.6～0.8", "range"),
        ("得分：0.6到0.8", "range"),
        ("得分：0.6或0.7", "range"),
        ("得分: 0.6 - 0.8分", "range"),
        ("得分：满分10分", "outside"),
        ("给满分10分", "outside"),
        ("得分：4分（满分5分）", "outside"),
        ("打8分", "outside"),
        # totals: disagreeing, unreadable, or maybe the scale
        ("总得分：0.7\n最终得分：0.8", "conflicting totals"),
        ("准确性得分：0.8\n总分：0.7\n最终得分：0.6", "conflicting totals"),
        ("准确性得分0.8，总分：", "unreadable total"),
        ("准确性得分0.8，总分：0.8*0.5+0.6", "formula"),
        ("得分：0.8\n总分：0-1", "range"),
        ("得分：0.7，总分1分", "the 1 may be the scale"),
        ("准确性得分：0.8，流畅性得分：0.6", "conflicting"),  # sub-scores without a total
        ("打0.6分，打0.8分", "conflicting"),
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


@given(
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=0, max_value=99),
    st.booleans(),
)
def test_a_decimal_comma_reads_as_its_decimal_or_not_at_all(
    units: int, hundredths: int, two_digits: bool
) -> None:
    fraction = f"{hundredths:02d}" if two_digits else str(hundredths % 10)
    reply = f"得分:{units},{fraction} 理由：略。"
    value = float(f"{units}.{fraction}")
    parsed = parse_score_detail(reply)
    if value <= 1:
        assert parsed.score == pytest.approx(value)
    else:  # never the integer part alone
        assert parsed.score is None and "outside" in parsed.reason


@given(
    st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=10),
)
def test_a_total_wins_over_any_sub_scores(subs: list[int], total: int) -> None:
    lines = [f"第{i}项得分：{v / 10:g}" for i, v in enumerate(subs, start=1)]
    if total == 10 and any(v != 10 for v in subs):
        return  # a total of 1 beside other scores is refused (tested above)
    reply = "\n".join([*lines, f"总得分：{total / 10:g}"])
    assert parse_score(reply) == pytest.approx(total / 10)


@given(st.lists(st.integers(min_value=0, max_value=9), min_size=3, max_size=5))
def test_a_list_of_numbers_is_never_read_as_its_first(digits: list[int]) -> None:
    reply = "得分：" + ",".join(map(str, digits))
    assert parse_score(reply) is None


@given(st.text(max_size=200))
def test_parser_never_raises_and_stays_in_range(reply: str) -> None:
    parsed = parse_score_detail(reply)
    assert (parsed.score is None) != (parsed.reason == "")
    if parsed.score is not None:
        assert 0.0 <= parsed.score <= 1.0
