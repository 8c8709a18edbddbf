"""Tests for the generated demo instruction corpus."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from lorabench.demo.corpus import (
    DOMAINS,
    RAW_CLASSES,
    generate_eval_set,
    generate_train_samples,
    write_jsonl,
)
from lorabench.demo.world import CAPITALS, PRETRAIN_ONLY_EVERY, TAUGHT

CJK = re.compile(r"[\u4e00-\u9fff]")
# "a op b = c" steps in the worked answers of the math word problems.
STEP = re.compile(r"(\d+) ([+\-×÷]) (\d+) = (\d+)")
OPS = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__, "÷": int.__floordiv__}


def _question(row: dict[str, str]) -> str:
    return f"{row['instruction']}\n{row['input']}" if row["input"] else row["instruction"]


def test_raw_classes_and_domains() -> None:
    assert len(RAW_CLASSES) == 10 == len(set(RAW_CLASSES))
    assert {"open qa", "closed qa", "math", "code"} <= set(RAW_CLASSES)
    assert DOMAINS == ("general", "math")


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("n", [0, 1, 11, 500])
def test_train_samples_exact_count_and_schema(n: int, domain: str) -> None:
    rows = generate_train_samples(n, domain=domain)
    assert len(rows) == n
    for row in rows:
        assert set(row) == {"instruction", "input", "output"}
        assert all(isinstance(v, str) for v in row.values())
        assert row["instruction"] and row["output"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_train_samples_deterministic_and_seed_sensitive(domain: str) -> None:
    rows = generate_train_samples(200, domain=domain, seed=3)
    assert rows == generate_train_samples(200, domain=domain, seed=3)
    assert rows != generate_train_samples(200, domain=domain, seed=4)
    # A longer draw extends the shorter one rather than reshuffling it.
    assert generate_train_samples(300, domain=domain, seed=3)[:200] == rows


def test_general_domain_mixes_chinese_and_english_and_some_inputs() -> None:
    rows = generate_train_samples(1000)
    zh_share = sum(bool(CJK.search(r["instruction"] + r["input"])) for r in rows) / len(rows)
    assert 0.35 < zh_share < 0.75
    assert any(r["input"] for r in rows) and any(not r["input"] for r in rows)
    assert len({r["instruction"] for r in rows}) > 200


def test_math_domain_is_chinese_word_problems_with_correct_worked_answers() -> None:
    for row in generate_train_samples(300, domain="math"):
        assert CJK.search(row["instruction"]) and row["input"] == ""
        final = re.search(r"答案：(\d+)$", row["output"])
        assert final, row["output"]
        steps = STEP.findall(row["output"])
        assert steps
        for a, op, b, result in steps:
            assert OPS[op](int(a), int(b)) == int(result), row["output"]
        assert int(steps[-1][3]) == int(final.group(1))


def test_general_domain_has_no_word_problems() -> None:
    assert not any("答案：" in r["output"] for r in generate_train_samples(1000))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": -1}, "n"),
        ({"n": 2.0}, "n"),
        ({"n": True}, "n"),
        ({"n": 3, "domain": "code"}, "domain"),
    ],
)
def test_train_samples_reject_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        generate_train_samples(**kwargs)


@pytest.mark.parametrize("n_per_class", [0, 1, 5, 30])
def test_eval_set_counts_and_schema(n_per_class: int) -> None:
    rows = generate_eval_set(n_per_class)
    assert len(rows) == 10 * n_per_class
    for row in rows:
        assert set(row) == {"question", "std_answer", "class"}
    counts = Counter(row["class"] for row in rows)
    assert counts == Counter(dict.fromkeys(RAW_CLASSES, n_per_class))
    # Grouped by class, in RAW_CLASSES order.
    assert [row["class"] for row in rows] == [c for c in RAW_CLASSES for _ in range(n_per_class)]
    assert len({row["question"] for row in rows}) == len(rows)


def test_every_eval_row_has_a_gold_answer_for_the_offline_judge() -> None:
    assert all(row["std_answer"] for row in generate_eval_set(10))


def test_eval_set_deterministic_and_seed_sensitive() -> None:
    assert generate_eval_set(5) == generate_eval_set(5, seed=1234)
    assert generate_eval_set(5) != generate_eval_set(5, seed=1)


def test_eval_questions_never_appear_in_training_data() -> None:
    eval_questions = {row["question"] for row in generate_eval_set(30)}
    for domain in DOMAINS:
        for seed in (0, 1234):
            train = {_question(r) for r in generate_train_samples(4000, domain=domain, seed=seed)}
            assert not eval_questions & train


def test_eval_gold_answers_are_grounded_in_the_question() -> None:
    for row in generate_eval_set(10):
        question, gold, raw_class = row["question"], row["std_answer"], row["class"]
        if raw_class in {"closed qa", "extract"}:
            _, passage = question.split("\n")
            assert gold in passage
        elif raw_class == "summarization":
            assert question.split("\n")[1].startswith(gold)
        elif raw_class == "classification":
            assert gold in {"正面", "负面", "positive", "negative"}
        elif raw_class == "code":
            assert gold.startswith("def ") and "\n    return " in gold


def test_eval_arithmetic_gold_answers_are_correct() -> None:
    pattern = re.compile(r"^(?:计算 |What is )(\d+) (加|减|乘以|plus|minus|times) (\d+)")
    ops = {"加": "+", "plus": "+", "减": "-", "minus": "-", "乘以": "*", "times": "*"}
    checked = 0
    for row in generate_eval_set(30):
        match = pattern.match(row["question"])
        if match:
            a, op, b = int(match.group(1)), ops[match.group(2)], int(match.group(3))
            expected = {"+": a + b, "-": a - b, "*": a * b}[op]
            assert row["std_answer"] == str(expected)
            checked += 1
    assert checked > 5


def test_eval_set_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="^n_per_class must"):
        generate_eval_set(-1)


def test_eval_set_too_large_for_a_class_raises() -> None:
    with pytest.raises(RuntimeError, match="exhausted"):
        generate_eval_set(500)


def test_write_jsonl_round_trip(tmp_path) -> None:
    rows = generate_eval_set(2)
    path = write_jsonl(rows, tmp_path / "nested" / "dir" / "eval_set.json")
    assert path == tmp_path / "nested" / "dir" / "eval_set.json"
    text = path.read_text(encoding="utf-8")
    assert "计算" in text or "的" in text  # Chinese stays readable (ensure_ascii=False)
    assert "\\u" not in text
    assert [json.loads(line) for line in text.splitlines()] == rows


def test_pretraining_only_knowledge_is_asked_by_the_eval_and_never_taught() -> None:
    """A third of the world's facts come from pretraining alone (demo_world.TAUGHT leaves them
    out): no training sample mentions them, and the eval set asks about them."""
    only = [c for c in CAPITALS if c not in TAUGHT.capitals]
    assert len(only) == len(CAPITALS) // PRETRAIN_ONLY_EVERY
    names = {name for entry in only for name in (entry[0], entry[2])}
    train_text = " ".join(
        f"{r['instruction']} {r['input']} {r['output']}" for r in generate_train_samples(4000)
    )
    assert not any(name in train_text for name in names)
    eval_questions = " ".join(row["question"] for row in generate_eval_set(30))
    assert sum(name in eval_questions for name in names) >= len(names) // 2
