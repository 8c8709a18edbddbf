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
        # decimal comma: an ASCII comma, one digit before it, one or two ending the number after
        ("得分:0,8", 0.8),
        ("得分:0,75 理由：略", 0.75),
        ("得分:1,0", 1.0),
        ("0,8", 0.8),
        ("得分: 0,8分", 0.8),
        ("得分: 0,8。", 0.8),
        ("得分：1，理由：完全正确。", 1.0),  # a comma before words is punctuation
        ("得分：1，满分。", 1.0),
        # a zero, a comma and a count: the count starts a new clause
        ("得分：0，3个问题都没有回答", 0.0),
        ("模型回答错误，得分为0，1个步骤都不对", 0.0),
        ("评分：0，该回答3个要点都没有覆盖", 0.0),
        ("得分: 0,3个要点都没有覆盖", 0.0),  # an ASCII comma too
        ("得分：0。\n理由：模型没有回答问题。", 0.0),
        ("得分：0.8。2个要点都覆盖了。", 0.8),
        # Chinese numerals
        ("得分：零分", 0.0),
        ("回答完全错误，得零分。", 0.0),
        ("得分：零点五分", 0.5),
        ("得分：零点八", 0.8),
        ("得分为零点七五分。", 0.75),
        ("这个回答可以得一分。", 1.0),
        ("评分：一分", 1.0),
        ("模型的回答与标准答案完全不同，给零分。", 0.0),
        ("我打一分。", 1.0),
        ("回答只对了一半，给予零点五分。", 0.5),
        ("零分", 0.0),
        ("0.5分", 0.5),
        # Chinese numerals inside words are not scores
        ("得分：0.9\n理由：模型解释得十分清楚。", 0.9),
        ("打分一分为二：内容与格式各占一半。得分：0.7", 0.7),
        ("得分：0.5\n理由：每答对一步得一分，本题只答对了一半。", 0.5),
        ("得分：1\n理由：与标准答案一致，给满分十分合理。", 1.0),
        ("得分：0.6\n理由：要想得到满分，还需要给出完整步骤。", 0.6),  # a goal, not a verdict
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
        # a labelled score and an awarded one that agree
        ("得分：1\n理由：……因此给予满分。", 1.0),
        ("得分：0.5分。理由：只答对了一半，应得0.5分。", 0.5),
        ("准确性得分：0.8，完整性得分：0.6，总分：0.7，综上给0.7分", 0.7),
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
        ("得分：0，8", "list"),  # a full-width comma is no decimal comma: 0.8, or 0 and 8?
        ("得分：0，8分", "list"),
        ("得分：1、2、3", "list"),
        # a broken decimal: 0, 8 or 0.8
        ("得分：0. 8", "broken decimal"),
        ("得分：0。8", "broken decimal"),
        # Chinese numerals stay on the [0, 1] scale
        ("得分：二分", "outside"),
        ("得分：十分", "outside"),
        ("给两分", "outside"),
        ("得分：一般", "no score"),
        ("至少给零点五分", "no score"),  # a bound, not a verdict
        ("给满分的一半", "no score"),
        # tiers that disagree
        ("得分为0.5分。不过没有推理过程，应得0分", "labelled score 0.5 and awarded score 0"),
        ("得分：1\n理由：结论正确但推理有误，应得零点五分。", "labelled score 1 and awarded"),
        ("准确性得分：0.8，完整性得分：0.6\n总分：0.7\n综上，给0.5分。", "total 0.7 and awarded"),
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
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["", "分", "。", " 理由：略。", "个要点都没有覆盖", "个问题都没有回答"]),
)
def test_a_full_width_comma_is_never_a_decimal_comma(units: int, after: int, tail: str) -> None:
    parsed = parse_score_detail(f"得分：{units}，{after}{tail}")
    if tail.startswith("个"):  # a count: a new clause, the score stands
        assert parsed.score == (units if units <= 1 else None)
    else:  # two numbers side by side: ambiguous
        assert parsed.score is None and "list" in parsed.reason


def _chinese(hundredths: int) -> str:
    """`零点七五` for 75, `一` for 100, `零` for 0."""
    if hundredths in (0, 100):
        return "零一"[hundredths // 100]
    digits = f"{hundredths:02d}".rstrip("0")
    return "零点" + "".join("零一二三四五六七八九"[int(d)] for d in digits)


@given(
    st.integers(min_value=0, max_value=100),
    st.sampled_from(["得分：{}", "得分：{}分", "得分为{}分。", "给{}分。", "这个回答可以得{}分。"]),
)
def test_a_chinese_numeral_score_round_trips(hundredths: int, template: str) -> None:
    assert parse_score(template.format(_chinese(hundredths))) == pytest.approx(hundredths / 100)


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=10))
def test_a_labelled_score_must_agree_with_an_awarded_one(labelled: int, awarded: int) -> None:
    reply = f"得分：{labelled / 10:g}\n理由：……综上，应得{awarded / 10:g}分。"
    parsed = parse_score_detail(reply)
    if labelled == awarded:
        assert parsed.score == pytest.approx(labelled / 10)
    else:
        assert parsed.score is None and "disagree" in parsed.reason


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
