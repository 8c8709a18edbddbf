"""Pairwise judging: the verdict parser (both languages), the combination of the two orders, the
OpenAI pairwise judge against a real OpenAI-compatible HTTP server on 127.0.0.1 whose judge is
position-biased on planted items, and the offline reference pairwise judge."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorabench import contract
from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging import JudgeRequest
from lorabench.judging.pairwise import (
    ItemVerdict,
    OpenAIPairwiseJudge,
    PairJudgement,
    PairRequest,
    ReferencePairwiseJudge,
    pair_requests,
)
from lorabench.judging.pairwise_prompts import build_pairwise_prompt, parse_verdict
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import (
    FakeOpenAIServer,
    bad_request,
    fast_judge_settings,
    reply,
)

# ---- the parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("两个回答都提到了要点，但回答1更完整。\n结论：1", "first"),
        ("回答2给出了正确的结果。\n结论：2", "second"),
        ("两者质量接近。\n结论：平局", "tie"),
        ("结论:1", "first"),  # half-width colon
        ("结论：２", "second"),  # full-width digit
        ("**结论：** 1", "first"),
        ("分析……\n**结论：**\n\n2", "second"),  # the verdict on the line after its label
        ("最终结论：回答1更好，因为回答2漏掉了关键步骤。", "first"),
        ("结论：答案1", "first"),
        ("结论：回答二", "second"),
        ("结论：第一个回答更好", "first"),
        ("结论是回答1", "first"),
        ("结论：回答2比回答1好", "second"),
        ("结论：回答1和回答2一样好", "tie"),
        ("结论：两者不相上下", "tie"),
        ("结论：1（即回答1更好）", "first"),
        ("更好的回答是：回答1", "first"),
        ("综上所述，回答2更好。[[2]]", "second"),  # MT-Bench's bracketed form
        ("[[1]]", "first"),
        ("[[平局]]", "tie"),
        ("结论：1\n再想一想，回答2其实更准确。\n结论：2", "second"),  # the last line wins
        ("1", "first"),
        ("平局", "tie"),
        ("回答1更好。", "first"),
        ("Both answers are fluent, but answer 1 is correct.\nVerdict: 1", "first"),
        ("Verdict: 2", "second"),
        ("Verdict: tie", "tie"),
        ("Verdict: Tie.", "tie"),
        ("verdict: equal", "tie"),
        ("Verdict: Answer 2", "second"),
        ("Final verdict: [[1]]", "first"),
        ("The better answer is Answer 2.", "second"),
        ("Verdict: Answer 1 is better than Answer 2", "first"),
        ("[[tie]]", "tie"),
        ("Answer 2 is better", "second"),
        ("Tie.", "tie"),
    ],
)
def test_the_verdict_the_judge_meant_is_read(text: str, verdict: str) -> None:
    assert parse_verdict(text) == (verdict, "")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty reply"),
        ("两个回答各有千秋。", "no verdict line"),
        ("回答1不好", "no verdict line"),  # not a verdict: it says nothing of answer 2
        ("结论：1或2", "alternatives"),
        ("结论：1/2", "alternatives"),
        ("Verdict: 1 or 2", "alternatives"),
        ("结论：回答1不如回答2", "worse answer"),  # names the loser first: no guess
        ("Verdict: answer 1 is worse", "worse answer"),
        ("结论：无法判断", "naming neither"),
        ("结论：2个回答都不好", "naming neither"),  # 2 counts answers, it names none
        ("结论：问题1的回答都对", "naming neither"),
        ("结论：1 [[2]]", "contradictory"),
        ("结论：1\n结论：无法判断", "naming neither"),  # the last line decides, and says nothing
        ("Verdict:", "naming neither"),
        ("My verdict is based on accuracy.", "naming neither"),
        ("I cannot decide between them.", "no verdict line"),
    ],
)
def test_unreadable_or_contradictory_verdicts_give_none_with_the_reason(text, why) -> None:
    parsed = parse_verdict(text)
    assert parsed.verdict is None
    assert why in parsed.reason


_REASONING = st.lists(
    st.sampled_from(
        [
            "两个回答都回答了问题。",
            "其中一个回答的格式更清楚。",
            "标准答案给出的是巴黎。",
            "Both answers address the question.",
            "The reference answer is short.",
            "One of them is more concise.",
        ]
    ),
    max_size=4,
)
_LINES = {
    "first": [
        "结论：1",
        "结论：回答1",
        "**结论：** 答案一",
        "Verdict: 1",
        "Verdict: Answer 1",
        "[[1]]",
    ],
    "second": ["结论：2", "结论：回答2", "结论：第二个回答", "Verdict: 2", "verdict: response 2"],
    "tie": ["结论：平局", "结论：两者一样好", "Verdict: tie", "Verdict: equally good", "[[tie]]"],
}


@settings(max_examples=150, deadline=None)
@given(
    reasoning=_REASONING,
    verdict=st.sampled_from(sorted(_LINES)),
    pick=st.integers(0, 10),
    earlier=st.sampled_from([None, *sorted(_LINES)]),
    wide=st.booleans(),
)
def test_a_final_verdict_line_after_any_reasoning_is_read(
    reasoning: list[str], verdict: str, pick: int, earlier: str | None, wide: bool
) -> None:
    lines = [*reasoning]
    if earlier is not None:  # an earlier, possibly different verdict: the last one counts
        lines.insert(len(lines) // 2, _LINES[earlier][pick % len(_LINES[earlier])])
    final = _LINES[verdict][pick % len(_LINES[verdict])]
    if wide:  # full-width forms, as Chinese replies often write them
        final = final.translate(str.maketrans({":": "：", "1": "１", "2": "２"}))
    assert parse_verdict("\n".join([*lines, final])).verdict == verdict


_TIE_WORDS = ("平局", "平手", "打平", "持平", "一样", "同样", "不相上下", "难分", "旗鼓相当",
              "势均力敌", "相当", "tie", "draw", "equal", "neither")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("结论：: 12回答平局是或tieTIE\n[]*更好不")), max_size=30)
)
def test_a_reply_is_never_read_as_a_tie_without_a_tie_word(text: str) -> None:
    parsed = parse_verdict(text)
    assert parsed.verdict in {"first", "second", "tie", None}
    assert (parsed.verdict is None) == bool(parsed.reason)
    if parsed.verdict == "tie":
        folded = unicodedata.normalize("NFKC", text).lower()
        assert any(word in folded for word in _TIE_WORDS), text


def test_the_prompts_show_the_gold_answer_only_where_there_is_one() -> None:
    with_gold = EvalItem("1+1等于几？", "2", "math", "others")
    without = EvalItem("写一首诗", "", "generation", "generation")
    zh = build_pairwise_prompt(with_gold, "等于2", "等于3", "zh")
    assert zh.index("等于2") < zh.index("等于3") and "[标准答案]\n2" in zh
    assert zh.rstrip().endswith("“结论：平局”表示两个回答一样好。")
    assert "标准答案" not in build_pairwise_prompt(without, "一", "二", "zh")
    en = build_pairwise_prompt(with_gold, "two", "three", "en")
    assert "[Reference Answer]\n2" in en and '"Verdict: tie"' in en
    assert "Reference" not in build_pairwise_prompt(without, "x", "y", "en")
    with pytest.raises(ValueError, match="language"):
        build_pairwise_prompt(with_gold, "x", "y", "fr")  # type: ignore[arg-type]


# ---- combining the two orders ----------------------------------------------------------------

_ITEM = EvalItem("问题", "答案", "open qa", "open_qa")


def _judged(order: str, verdict: str | None, status: str = "ok") -> PairJudgement:
    request = PairRequest(_ITEM, "甲的回答", "乙的回答甲", order)  # type: ignore[arg-type]
    reason = "" if status == "ok" else f"{status} here"
    return PairJudgement(request, verdict, status, reason, judge="j")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ab", "ba", "verdict", "consistent"),
    [
        # order ab shows A first, order ba shows B first
        ("first", "second", "A", True),
        ("second", "first", "B", True),
        ("tie", "tie", "tie", True),
        ("first", "first", "tie", False),  # always the first shown: position bias
        ("second", "second", "tie", False),
        ("first", "tie", "tie", False),
        ("tie", "first", "tie", False),
        ("second", "tie", "tie", False),
    ],
)
def test_the_two_orders_combine_the_conservative_way(ab, ba, verdict, consistent) -> None:
    combined = ItemVerdict(3, _ITEM, _judged("ab", ab), _judged("ba", ba))
    assert (combined.verdict, combined.consistent, combined.status) == (verdict, consistent, "ok")
    assert ("position inconsistency" in combined.reason) == (not consistent)
    row = combined.to_row("a", "b")
    assert tuple(row) == contract.PAIRWISE_VERDICT_COLUMNS
    assert row["item"] == 3 and row["category"] == "open_qa" and row["judge"] == "j"
    assert (row["length_a"], row["length_b"]) == (4, 5)


@pytest.mark.parametrize(
    ("ab", "ba", "status"),
    [
        (("first", "ok"), (None, "parse_failure"), "parse_failure"),
        ((None, "parse_failure"), ("tie", "ok"), "parse_failure"),
        ((None, "parse_failure"), (None, "error"), "error"),
        ((None, "no_reference"), (None, "no_reference"), "no_reference"),
    ],
)
def test_an_order_without_a_verdict_leaves_the_item_without_one(ab, ba, status) -> None:
    combined = ItemVerdict(0, _ITEM, _judged("ab", *ab), _judged("ba", *ba))
    row = combined.to_row("a", "b")
    assert row["verdict"] is None and row["consistent"] is None and row["status"] == status
    assert row["first"] == {"first": "A", "tie": "tie", None: None}[ab[0]]
    assert row["second"] == {"first": "B", "tie": "tie", None: None}[ba[0]]
    assert f"{status} here" in row["reason"]


def test_pair_requests_swap_the_order_and_labels_map_back() -> None:
    ab, ba = pair_requests(_ITEM, "answer A", "answer B")
    assert (ab.first, ab.second, ab.order) == ("answer A", "answer B", "ab")
    assert (ba.first, ba.second, ba.order) == ("answer B", "answer A", "ba")
    assert [ab.label(v) for v in ("first", "second", "tie", None)] == ["A", "B", "tie", None]
    assert [ba.label(v) for v in ("first", "second", "tie", None)] == ["B", "A", "tie", None]
    with pytest.raises(ValueError, match="order"):
        PairRequest(_ITEM, "x", "y", "ab ")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="verdict"):
        PairJudgement(ab, "tie", "parse_failure")  # a failure never carries a verdict


# ---- the OpenAI pairwise judge against a local server ----------------------------------------

GOOD = "【要点齐全】"
"""The marker of the truly better answer: the server's unbiased judge prefers the answer with it."""
BIASED = "#bias"
"""In the question of a planted item: there the server's judge prefers the answer shown first."""
_BLOCKS = {
    "zh": (r"\[回答1开始\]\n(.*?)\n\[回答1结束\]", r"\[回答2开始\]\n(.*?)\n\[回答2结束\]"),
    "en": (
        r"\[The Start of Answer 1\]\n(.*?)\n\[The End of Answer 1\]",
        r"\[The Start of Answer 2\]\n(.*?)\n\[The End of Answer 2\]",
    ),
}


def _shown(prompt: str) -> tuple[str, str, str]:
    """(language, answer 1, answer 2) as the prompt shows them."""
    language = "en" if "[The Start of Answer 1]" in prompt else "zh"
    one, two = (re.search(p, prompt, re.DOTALL) for p in _BLOCKS[language])
    assert one is not None and two is not None, prompt
    return language, one.group(1), two.group(1)


def _biased_judge(body: dict[str, Any]) -> Any:
    # A judge with a position bias on planted items only; elsewhere it prefers the answer with
    # the marker (a tie when both or neither have it). It writes some reasoning, then a verdict.
    prompt = body["messages"][0]["content"]
    language, first, second = _shown(prompt)
    if BIASED in prompt:
        pick = "1"
    elif (GOOD in first) != (GOOD in second):
        pick = "1" if GOOD in first else "2"
    else:
        pick = "平局" if language == "zh" else "tie"
    if language == "zh":
        return reply(f"两个回答都回答了问题，回答1和回答2的表达都清楚。\n结论：{pick}")
    return reply(f"Both answers address the question.\nVerdict: {pick}")


def _pairs(n: int, planted: set[int]) -> tuple[list[EvalItem], list[str], list[str], list[str]]:
    """Items, A's and B's answers, and the true winner per item (A, B or tie)."""
    items, answers_a, answers_b, truth = [], [], [], []
    for i in range(n):
        raw = ("open qa", "generation", "closed qa", "brainstorming")[i % 4]
        tag = f" {BIASED}" if i in planted else ""
        items.append(EvalItem(f"问题{i}{tag}", "" if i % 2 else f"标准{i}", raw, category_of(raw)))
        winner = ("B", "A", "A", "tie")[i % 4]
        answers_a.append(f"A 的回答 {i}" + (GOOD if winner == "A" else ""))
        answers_b.append(f"B 的回答 {i}，更长一些" + (GOOD if winner == "B" else ""))
        truth.append(winner)
    return items, answers_a, answers_b, truth


def _judge(server: FakeOpenAIServer, tmp_path: Path, **kwargs: Any) -> OpenAIPairwiseJudge:
    settings_ = {**fast_judge_settings(server, tmp_path / "judge.sqlite"), "api_key_env": KEY_ENV}
    return OpenAIPairwiseJudge(**{**settings_, **kwargs})


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_swap_exposes_a_position_bias_exactly_where_it_was_planted(
    api_key, tmp_path, language
) -> None:
    n, planted = 20, {1, 4, 7, 10, 13, 16}  # 30% of the items, true winners A, B and tie
    items, answers_a, answers_b, truth = _pairs(n, planted)
    with FakeOpenAIServer(api_key=api_key, responder=_biased_judge) as server:
        judge = _judge(server, tmp_path, language=language)
        verdicts = judge.judge_pairs(items, answers_a, answers_b, progress=False)
        assert server.chat_calls == judge.stats.calls == 2 * n

        rerun = _judge(server, tmp_path, language=language)
        again = rerun.judge_pairs(items, answers_a, answers_b, progress=False)
        assert server.chat_calls == 2 * n and rerun.stats.calls == 0  # a rerun sends nothing
        assert rerun.stats.cache_hits == 2 * n
    rows = [v.to_row("a", "b") for v in verdicts]
    assert [v.to_row("a", "b") for v in again] == rows
    for i, row in enumerate(rows):
        assert row["item"] == i and row["status"] == "ok"
        if i in planted:  # the first shown always wins: A in order ab, B in order ba
            assert (row["first"], row["second"], row["verdict"]) == ("A", "B", "tie"), row
            assert row["consistent"] is False and "position inconsistency" in row["reason"]
        else:
            assert row["verdict"] == row["first"] == row["second"] == truth[i], row
            assert row["consistent"] is True and row["reason"] == ""
        assert (row["length_a"], row["length_b"]) == (len(answers_a[i]), len(answers_b[i]))
        assert row["judge"] == "openai-pairwise:gpt-3.5-turbo" and row["category"]
    assert judge.served_models == ("gpt-3.5-turbo",)
    assert judge.params()["language"] == language


def test_both_orders_go_out_in_one_batch_each_with_its_own_prompt(api_key, tmp_path) -> None:
    items, answers_a, answers_b, _ = _pairs(2, set())
    # Each reply takes 0.3 s: only requests sent in one batch can be answered at the same time,
    # so all 4 (2 items x 2 orders) in flight at once means one batch.
    with FakeOpenAIServer(api_key=api_key, responder=_biased_judge, latency=0.3) as server:
        judge = _judge(server, tmp_path, concurrency=4)
        batches: list[int] = []
        judge_all = judge.judge_all
        judge.judge_all = lambda requests, progress=True: (  # type: ignore[method-assign]
            batches.append(len(requests)) or judge_all(requests, progress)
        )
        verdicts = judge.judge_pairs(items, answers_a, answers_b, progress=False)
        assert batches == [4] and server.max_in_flight == 4
        shown = sorted(_shown(r.body["messages"][0]["content"])[1:] for r in server.chat_requests)
    assert shown == sorted(
        pair for a, b in zip(answers_a, answers_b, strict=True) for pair in ((a, b), (b, a))
    )
    for v, a, b in zip(verdicts, answers_a, answers_b, strict=True):
        assert (v.ab.request.first, v.ba.request.first) == (a, b)
        assert v.ab.prompt_tokens > 0 and v.ab.completion_tokens > 0
        assert not v.ab.cached and not v.ba.cached


def _no_verdict_for_b_first(body: dict[str, Any]) -> Any:
    # Order ab (A's answer shown first) gets a verdict; order ba gets prose without one.
    _, first, _ = _shown(body["messages"][0]["content"])
    return reply("结论：1") if first.startswith("A ") else reply("两个回答各有千秋，难以取舍。")


def test_a_reply_without_a_verdict_is_a_parse_failure_never_a_tie(api_key, tmp_path) -> None:
    items, answers_a, answers_b, _ = _pairs(4, set())
    with FakeOpenAIServer(api_key=api_key, responder=_no_verdict_for_b_first) as server:
        judge = _judge(server, tmp_path)
        verdicts = judge.judge_pairs(items, answers_a, answers_b, progress=False)
        for v in verdicts:
            assert (v.ab.status, v.ab.verdict) == ("ok", "first")
            assert (v.ba.status, v.ba.verdict) == ("parse_failure", None)
            assert v.ba.reply and "no verdict line" in v.ba.reason
            row = v.to_row("a", "b")
            assert row["verdict"] is None and row["consistent"] is None
            assert (row["first"], row["second"], row["status"]) == ("A", None, "parse_failure")
        assert judge.stats.parse_failures == 4 and judge.stats.calls == 8

        # The verdicts read are reused; only the replies without one are asked again (the
        # cache's recheck reads replies with the pairwise parser, not the score parser).
        recheck = _judge(server, tmp_path, recheck_parse_failures=True)
        recheck.judge_pairs(items, answers_a, answers_b, progress=False)
        assert recheck.stats.calls == 4 and recheck.stats.cache_hits == 4


def test_an_http_error_in_one_order_leaves_the_item_without_a_verdict(api_key, tmp_path) -> None:
    def reject_b_first(body: dict[str, Any]) -> Any:
        _, first, _ = _shown(body["messages"][0]["content"])
        return reply("结论：平局") if first.startswith("A ") else bad_request("prompt too long")

    items, answers_a, answers_b, _ = _pairs(2, set())
    with FakeOpenAIServer(api_key=api_key, responder=reject_b_first) as server:
        verdicts = _judge(server, tmp_path).judge_pairs(items, answers_a, answers_b, False)
    for v in verdicts:
        row = v.to_row("a", "b")
        assert (row["first"], row["second"], row["verdict"]) == ("tie", None, None)
        assert row["status"] == "error" and "prompt too long" in row["reason"]


def test_the_pairwise_judge_takes_pairs_only_and_says_it_is_pairwise(tmp_path) -> None:
    judge = OpenAIPairwiseJudge(cache_path=None, api_key_env=None, language="en")
    assert judge.name == "openai-pairwise:gpt-3.5-turbo"
    assert judge.params()["prompt_layout"] == "pairwise(en)"
    with pytest.raises(TypeError, match="pairs"):
        judge.judge_all([JudgeRequest(_ITEM, "an answer")], progress=False)
    with pytest.raises(ValueError, match="items"):
        judge.judge_pairs([_ITEM], ["a"], [], progress=False)
    with pytest.raises(TypeError, match="prompts"):
        OpenAIPairwiseJudge(prompts=None)
    with pytest.raises(ValueError, match="language"):
        OpenAIPairwiseJudge(language="fr", cache_path=None)  # type: ignore[arg-type]
    items, answers_a, answers_b, _ = _pairs(3, set())
    calls, _tokens = judge.estimate(judge.requests_for(items, answers_a, answers_b))
    assert calls == 6


# ---- the offline reference pairwise judge ----------------------------------------------------


def test_the_reference_pairwise_judge_prefers_the_better_f1() -> None:
    gold = EvalItem("法国的首都是哪里？", "法国的首都是巴黎", "open qa", "open_qa")
    no_gold = EvalItem("写一首诗", "", "generation", "generation")
    items = [gold, gold, gold, no_gold]
    answers_a = ["法国的首都是巴黎", "伦敦", "首都是巴黎", "一首诗"]
    answers_b = ["伦敦是英国的首都", "法国的首都是巴黎。", "首都是巴黎!", "另一首诗"]
    judge = ReferencePairwiseJudge()
    rows = [
        v.to_row("a", "b") for v in judge.judge_pairs(items, answers_a, answers_b, progress=False)
    ]
    assert [r["verdict"] for r in rows] == ["A", "B", "tie", None]
    assert [r["consistent"] for r in rows] == [True, True, True, None]
    assert rows[3]["status"] == "no_reference" and "no gold answer" in rows[3]["reason"]
    assert all(r["judge"] == "reference-pairwise:f1" for r in rows)
    assert judge.stats.no_reference == 2 and judge.stats.judgements == 8
    assert judge.params() == {"name": "reference-pairwise:f1", "margin": 0.05}


def test_f1s_within_the_margin_tie() -> None:
    item = EvalItem("问", "一二三四五六七八九十", "open qa", "open_qa")
    # F1 against the gold: 20/22 ≈ 0.909 for A (two extra tokens), 18/19 ≈ 0.947 for B (one
    # missing): 0.038 apart, a tie within 0.05 and B's win beyond 0.01.
    a, b = "一二三四五六七八九十甲乙", "一二三四五六七八九"
    [wide] = ReferencePairwiseJudge(margin=0.05).judge_pairs([item], [a], [b], progress=False)
    [narrow] = ReferencePairwiseJudge(margin=0.01).judge_pairs([item], [a], [b], progress=False)
    assert wide.verdict == "tie" and narrow.verdict == "B"
    with pytest.raises(ValueError, match="margin"):
        ReferencePairwiseJudge(margin=1.0)


@settings(max_examples=60, deadline=None)
@given(
    gold=st.text(alphabet="甲乙丙丁ab ", min_size=1, max_size=12),
    a=st.text(alphabet="甲乙丙丁ab ", max_size=12),
    b=st.text(alphabet="甲乙丙丁ab ", max_size=12),
    margin=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_the_reference_pairwise_judge_is_order_independent(gold, a, b, margin) -> None:
    item = EvalItem("问", gold, "open qa", category_of("open qa"))
    [verdict] = ReferencePairwiseJudge(margin).judge_pairs([item], [a], [b], progress=False)
    if gold.strip():
        assert verdict.consistent is True and verdict.verdict in {"A", "B", "tie"}
    else:
        assert verdict.verdict is None and verdict.status == "no_reference"
