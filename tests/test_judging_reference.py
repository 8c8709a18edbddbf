"""The offline reference judge on the demo eval set: its rules, and no score without a gold."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorabench.demo.corpus import generate_eval_set
from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging import Judgement, JudgeRequest, ReferenceJudge
from lorabench.judging.reference_judge import f1, final_number, lcs_length, rouge_l, tokens


def _items() -> list[EvalItem]:
    return [
        EvalItem(row["question"], row["std_answer"], row["class"], category_of(row["class"]))
        for row in generate_eval_set()
    ]


def _item(raw_class: str, question: str, gold: str) -> EvalItem:
    return EvalItem(question, gold, raw_class, category_of(raw_class))


def _score(raw_class: str, gold: str, answer: str, question: str = "q") -> float | None:
    return ReferenceJudge().judge_one(JudgeRequest(_item(raw_class, question, gold), answer)).score


def test_gold_answers_score_1_and_items_without_gold_are_not_scored() -> None:
    # Every demo item has a gold answer; BELLE's open-ended items do not.
    no_gold = [_item("brainstorming", "列出三种水果", ""), _item("generation", "写一首诗", "")]
    items = [*_items(), *no_gold]
    judge = ReferenceJudge()
    judgements = judge.judge_all([JudgeRequest(item, item.std_answer or "苹果") for item in items])
    unscored = Counter(j.item.raw_class for j in judgements if j.status == "no_reference")
    assert unscored == {"brainstorming": 1, "generation": 1}
    assert all(j.score is None and j.reason for j in judgements if j.status == "no_reference")
    assert all(j.score == 1.0 for j in judgements if j.status == "ok")
    assert judge.stats.no_reference == 2 and judge.stats.judgements == len(items)
    assert judge.stats.as_metrics()["eval/judge_calls"] == 0


def test_wrong_and_empty_answers_score_0_not_none() -> None:
    items = [item for item in _items() if item.std_answer]
    judgements = ReferenceJudge().judge_all([JudgeRequest(item, "") for item in items])
    assert all(j.status == "ok" and j.score == 0.0 for j in judgements)


def test_judge_is_deterministic() -> None:
    items = _items()
    requests = [JudgeRequest(item, item.std_answer[:3] + "嗯") for item in items]
    assert ReferenceJudge().judge_all(requests) == ReferenceJudge().judge_all(requests)


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("答案：37", 1.0),
        ("先算 60 - 23，结果是 37 个。", 1.0),  # other working, same final number
        ("37.0", 1.0),
        ("答案：36", 0.0),
        ("我不知道", 0.0),
    ],
)
def test_math_compares_the_final_number(answer: str, score: float) -> None:
    gold = "原来有60个，送出23个，还剩 60 - 23 = 37个。\n答案：37"
    assert _score("math", gold, answer) == score


def test_code_ignores_whitespace_and_counts_operators() -> None:
    gold = "def square(x):\n    return x * x"
    assert _score("code", gold, "def square(x):\n  return x*x") == 1.0
    wrong_op = _score("code", gold, "def square(x):\n    return x + x")
    assert wrong_op is not None and 0.8 < wrong_op < 1.0


@pytest.mark.parametrize(
    ("raw_class", "gold", "answer", "question", "expected"),
    [
        ("classification", "正面", "正面", "判断情感", 1.0),
        ("classification", "positive", "Positive.", "Classify", 1.0),  # case and punctuation
        ("open qa", "北京", "中国的首都是北京。", "中国的首都是哪里？", 1.0),  # short, contains
        ("open qa", "12", "120", "一年有几个月？", 0.0),  # tokens, not substrings
        ("rewrite", "apple", "apple", "把下面的词翻译成英文：\n苹果", 1.0),
    ],
)
def test_checkable_answers(
    raw_class: str, gold: str, answer: str, question: str, expected: float
) -> None:
    assert _score(raw_class, gold, answer, question) == expected


def test_echoing_the_passage_does_not_count_as_containing_the_answer() -> None:
    passage = "小明住在北京，今年35岁，是一名老师。他每天骑自行车上班，周末喜欢去公园散步。"
    score = _score("closed qa", "北京", passage, f"阅读短文并回答问题：小明住在哪里？\n{passage}")
    assert score is not None and score < 0.3


def test_rewrite_is_case_sensitive_so_copying_the_input_fails() -> None:
    sentence = "Alice's favourite word is apple."
    assert _score("rewrite", sentence.upper(), sentence) == 0.0
    assert _score("rewrite", sentence.upper(), sentence.upper()) == 1.0


def test_summarization_uses_overlap_only() -> None:
    gold = "北京是一座历史悠久的城市。"
    passage = gold + "这里有很多古老的建筑。每年都有很多游客来参观。"
    score = _score("summarization", gold, passage)
    assert score is not None and 0.3 < score < 1.0


def test_f1_on_mixed_chinese_and_english() -> None:
    assert tokens("H2O是水的化学式, OK!") == ["h2o", "是", "水", "的", "化", "学", "式", "ok"]
    # answer 北京市 vs gold 北京: precision 2/3, recall 1 → F1 0.8
    assert f1(tokens("北京市"), tokens("北京")) == pytest.approx(0.8)
    judgement = ReferenceJudge("rouge_l").judge_one(
        JudgeRequest(_item("summarization", "q", "小明喜欢读书"), "小明很喜欢看书")
    )
    assert judgement.judge == "reference:rouge_l"
    assert judgement.score == pytest.approx(rouge_l(list("小明很喜欢看书"), list("小明喜欢读书")))


def test_final_number_reads_thousands_and_negatives() -> None:
    assert final_number("共 1,200 元，找回 -3.5") == -3.5
    assert final_number("共 1,200 元") == 1200
    assert final_number("没有数字") is None


def _lcs_dp(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


@given(
    st.lists(st.sampled_from("abc北京"), max_size=40),
    st.lists(st.sampled_from("abc北京"), max_size=70),
)
def test_bit_parallel_lcs_matches_dynamic_programming(a: list[str], b: list[str]) -> None:
    assert lcs_length(a, b) == _lcs_dp(a, b)


def test_judgement_rows_round_trip() -> None:
    item = _item("closed qa", "小明住在哪里？", "北京")
    judgement = ReferenceJudge().judge_one(JudgeRequest(item, "北京"))
    assert Judgement.from_dict(judgement.to_dict()) == judgement
    assert judgement.to_dict()["category"] == "closed_qa"
