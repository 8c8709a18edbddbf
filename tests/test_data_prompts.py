"""The prompt template and the exact loss mask, token by token, with two tokenizers.

``tokenizer`` is the project's tiny byte-level BPE; ``sp_tokenizer`` is a LLaMA-style
SentencePiece tokenizer (dummy prefix, byte fallback) trained locally (tests/conftest.py) and
loaded as transformers loads a LLaMA checkpoint: the one whose "▁" handling makes the boundary
after "Assistant: " delicate (BELLE issue #337).
"""

from __future__ import annotations

import pytest

from lorabench.data.prompts import (
    IGNORE_INDEX,
    encode_prompt,
    format_prompt,
    tokenize_conversation,
    tokenize_conversations,
    tokenize_example,
)
from tests.helpers.local_tokenizers import (
    assert_exact_mask,
    load_llama_style_tokenizer,
    tiny_tokenizer,
)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(params=["tokenizer", "sp_tokenizer"])
def any_tokenizer(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


def test_template_is_the_papers() -> None:
    assert (
        format_prompt("把句子翻译成英文：", "你好")
        == "Human: 把句子翻译成英文：你好\n\nAssistant: "
    )


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


def test_sentencepiece_tokenizer_is_llama_style(sp_tokenizer) -> None:
    tok = sp_tokenizer
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert 1000 <= len(tok) <= 2000
    ids = tok("Human: 12345 😀", add_special_tokens=True)["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    assert ids[0] == tok.bos_token_id and tokens[1].startswith("▁")  # BOS, then dummy prefix
    assert [t for t in tokens if t.isdigit()] == list("12345")  # digits split
    assert "<0xF0>" in tokens  # byte fallback for a character outside the vocabulary
    assert tok.decode(ids, skip_special_tokens=True) == "Human: 12345 😀"


@pytest.mark.parametrize("response", ["Hello world.", "答案是 82。", "42", "\n换行开头"])
def test_sentencepiece_boundary_after_assistant(sp_tokenizer, response: str) -> None:
    tok = sp_tokenizer
    ex = tokenize_example(tok, "列出三种水果", "", response, max_length=512)
    prompt_ids = encode_prompt(tok, "列出三种水果")
    n = len(prompt_ids)
    tokens = tok.convert_ids_to_tokens(ex.input_ids)
    assert ex.input_ids[:n] == prompt_ids
    assert ex.labels == [IGNORE_INDEX] * n + ex.input_ids[n:]
    # The space of "Assistant: " is the prompt's last token, masked, exactly as generation
    # tokenises the prompt; the first trained token starts the response with no "▁" of its own
    # (tokenised alone, the response would get the dummy prefix: a second, spurious space).
    assert tokens[n - 2 : n] == [":", "▁"]
    assert tokens[n].startswith(response[0]) and not tokens[n].startswith("▁")
    alone = tok.convert_ids_to_tokens(tok(response, add_special_tokens=False)["input_ids"])
    assert alone[0].startswith("▁")
    assert ex.input_ids[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[n:-1]) == response
    assert tok.decode(ex.input_ids[:n], skip_special_tokens=True) == format_prompt("列出三种水果")
    assert_exact_mask(tok, ex, [("列出三种水果", response)])


def test_tokenising_the_whole_text_would_merge_the_boundary(sp_tokenizer) -> None:
    """The bug class of BELLE issue #337, shown on the LLaMA-style tokenizer."""
    tok = sp_tokenizer
    prompt_ids = encode_prompt(tok, "Say hello")
    whole = tok(format_prompt("Say hello") + "Hello", add_special_tokens=True)["input_ids"]
    # "▁" of "Assistant: " and the answer's "H" form one piece, so masking len(prompt_ids)
    # positions of the whole text's ids masks the answer's first token.
    assert tok.convert_ids_to_tokens(whole)[len(prompt_ids) - 1].startswith("▁H")
    ex = tokenize_example(tok, "Say hello", "", "Hello", max_length=512)
    assert tok.decode([i for i in ex.labels if i != IGNORE_INDEX]) == "Hello</s>"


def test_multi_turn_trains_every_assistant_turn(any_tokenizer) -> None:
    tok = any_tokenizer
    turns = [("你好", "你好！有什么可以帮你？"), ("What is 17+25?", "42"), ("谢谢", "不客气。")]
    ex = tokenize_conversation(tok, turns, max_length=512)
    assert_exact_mask(tok, ex, turns)
    # Spelled out: BOS once, then each turn's prompt masked and its response + EOS trained.
    expected_labels = [IGNORE_INDEX] * len(encode_prompt(tok, turns[0][0]))
    for index, (human, assistant) in enumerate(turns):
        if index:
            expected_labels += [IGNORE_INDEX] * _continuation_length(tok, format_prompt(human))
        start, size = len(expected_labels), _continuation_length(tok, assistant) + 1
        expected_labels += ex.input_ids[start : start + size]
        assert expected_labels[-1] == tok.eos_token_id
    assert ex.labels == expected_labels
    assert ex.input_ids.count(tok.eos_token_id) == 3
    assert ex.input_ids.count(tok.bos_token_id) == 1


def _continuation_length(tok, text: str) -> int:
    """Number of tokens ``text`` takes after a special token (so with no dummy prefix)."""
    return len(tok(tok.eos_token + text, add_special_tokens=False)["input_ids"]) - 1


def test_single_turn_is_the_one_turn_conversation(any_tokenizer) -> None:
    ex = tokenize_example(any_tokenizer, "翻译：", "apple", "苹果", max_length=64)
    assert ex == tokenize_conversation(any_tokenizer, [("翻译：apple", "苹果")], max_length=64)


def test_truncation_keeps_the_prompt_and_cuts_the_response(tokenizer) -> None:
    full = tokenize_example(tokenizer, "写一段话", "", "很长的回答。" * 50, max_length=4096)
    n_prompt = full.labels.count(IGNORE_INDEX)
    cut = tokenize_example(tokenizer, "写一段话", "", "很长的回答。" * 50, max_length=n_prompt + 3)
    assert len(cut.input_ids) == n_prompt + 3
    assert cut.labels[n_prompt:] == full.labels[n_prompt : n_prompt + 3]


def test_sample_with_no_room_for_a_response_is_dropped(any_tokenizer) -> None:
    assert tokenize_example(any_tokenizer, "问" * 100, "", "答", max_length=8) is None
    n_prompt = len(encode_prompt(any_tokenizer, "问"))
    assert tokenize_example(any_tokenizer, "问", "", "答", max_length=n_prompt) is None
    one = tokenize_example(any_tokenizer, "问", "", "答", max_length=n_prompt + 1)
    assert one is not None and one.labels[:-1] == [IGNORE_INDEX] * n_prompt
    assert one.labels[-1] == one.input_ids[-1] != IGNORE_INDEX


def test_truncation_inside_a_later_prompt_drops_its_masked_tail(any_tokenizer) -> None:
    tok = any_tokenizer
    turns = [("第一问", "第一答"), ("第二个问题比较长，" * 5, "第二答")]
    full = tokenize_conversation(tok, turns, max_length=4096)
    first_eos = full.input_ids.index(tok.eos_token_id)
    cut = tokenize_conversation(tok, turns, max_length=first_eos + 5)
    assert cut.input_ids == full.input_ids[: first_eos + 1]
    assert cut.labels == full.labels[: first_eos + 1]
    second_response = full.labels.index(IGNORE_INDEX, first_eos) + 1
    while full.labels[second_response] == IGNORE_INDEX:
        second_response += 1
    cut = tokenize_conversation(tok, turns, max_length=second_response + 1)
    assert cut.labels == full.labels[: second_response + 1] and cut.labels[-1] != IGNORE_INDEX


def test_legacy_llama_tokenizer_is_refused(sp_folder) -> None:
    legacy = load_llama_style_tokenizer(sp_folder, legacy=True)
    with pytest.raises(ValueError, match="legacy=False"):
        tokenize_example(legacy, "问", "", "答", max_length=64)


@pytest.mark.parametrize("max_length", [0, -1])
def test_bad_arguments_are_refused(tokenizer, max_length: int) -> None:
    with pytest.raises(ValueError, match="max_length"):
        tokenize_example(tokenizer, "问", "", "答", max_length=max_length)
    with pytest.raises(ValueError, match="at least one"):
        tokenize_conversation(tokenizer, [], max_length=64)


def _one_call_per_segment(tok, turns, max_length: int):
    """The reference: each segment encoded by a call of its own (the prompt as generation
    encodes it, later segments after the EOS string), concatenated and truncated."""
    anchor = tok.encode(tok.eos_token, add_special_tokens=False)
    input_ids = encode_prompt(tok, turns[0][0])
    labels = [IGNORE_INDEX] * len(input_ids)
    later = [turns[0][1]] + [t for h, a in turns[1:] for t in (format_prompt(h), a)]
    for index, text in enumerate(later):
        ids = tok.encode(tok.eos_token + text, add_special_tokens=False)[len(anchor) :]
        ids = [*ids, tok.eos_token_id] if index % 2 == 0 else ids
        input_ids += ids
        labels += ids if index % 2 == 0 else [IGNORE_INDEX] * len(ids)
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    while labels and labels[-1] == IGNORE_INDEX:
        input_ids, labels = input_ids[:-1], labels[:-1]
    return (input_ids, labels) if labels else None


def test_a_batch_is_tokenised_as_each_conversation_alone(any_tokenizer) -> None:
    conversations = [
        [("列出三种水果", "苹果、香蕉、橙子")],
        [("Say hello", " Hello, world!\n\nBye.")],
        [("你好", "你好！有什么可以帮你？"), ("再说一遍", "你好！"), (" in English?", "Hello!")],
        [("很长的问题" * 40, "答")],  # no room for a response at max length 64: None
    ]
    batched = tokenize_conversations(any_tokenizer, conversations, max_length=64)
    expected = [_one_call_per_segment(any_tokenizer, turns, 64) for turns in conversations]
    assert [None if e is None else (e.input_ids, e.labels) for e in batched] == expected
    assert batched[-1] is None and batched[0] is not None
