"""The prompt template and the exact loss mask, token by token."""

from __future__ import annotations

import pytest

from lorabench.prompts import IGNORE_INDEX, format_prompt, tokenize_example
from lorabench.tiny_tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_template_is_the_papers() -> None:
    assert format_prompt("把句子翻译成英文：", "你好") == "Human: 把句子翻译成英文：你好\n\nAssistant: "


@pytest.mark.parametrize("response", ["82", "苹果、香蕉、橙子", "The answer is 7."])
def test_loss_covers_exactly_the_response_and_eos(tokenizer, response: str) -> None:
    ex = tokenize_example(tokenizer, "列出三种水果", "", response, max_length=512)
    prompt_ids = tokenizer(format_prompt("列出三种水果"), add_special_tokens=True)["input_ids"]
    n = len(prompt_ids)
    assert ex.input_ids[:n] == prompt_ids and ex.input_ids[0] == tokenizer.bos_token_id
    assert ex.labels[:n] == [IGNORE_INDEX] * n
    trained = ex.labels[n:]
    assert IGNORE_INDEX not in trained and trained == ex.input_ids[n:]
    assert trained[-1] == tokenizer.eos_token_id
    # The first trained token is the first token of the response: nothing lost at the boundary.
    assert tokenizer.decode(trained[:-1]) == response
    assert tokenizer.decode(ex.input_ids[:n], skip_special_tokens=True).endswith("Assistant: ")


def test_truncation_keeps_the_prompt_and_cuts_the_response(tokenizer) -> None:
    full = tokenize_example(tokenizer, "写一段话", "", "很长的回答。" * 50, max_length=4096)
    n_prompt = full.labels.count(IGNORE_INDEX)
    cut = tokenize_example(tokenizer, "写一段话", "", "很长的回答。" * 50, max_length=n_prompt + 3)
    assert len(cut.input_ids) == n_prompt + 3
    assert cut.labels[n_prompt:] == full.labels[n_prompt : n_prompt + 3]


def test_sample_with_no_room_for_a_response_is_dropped(tokenizer) -> None:
    assert tokenize_example(tokenizer, "问" * 100, "", "答", max_length=8) is None
