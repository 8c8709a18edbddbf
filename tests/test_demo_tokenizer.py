"""Tests for the tiny byte-level BPE tokenizer built from the demo world's text."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lorabench.demo import tokenizer as tiny_tokenizer
from lorabench.demo import world as demo_world
from lorabench.demo.tokenizer import (
    SPECIAL_TOKENS,
    build_tiny_tokenizer,
    load_or_build_tiny_tokenizer,
)

PROMPT = "Human: 计算 37 加 45 等于多少？\n\nAssistant: 82"
ROUND_TRIP_TEXTS = [
    PROMPT,
    "Human: Translate the word into Chinese.apple\n\nAssistant: 苹果",
    "  leading spaces, trailing spaces  ",
    "mixed 中文 and English\nnew line\n\n\ttab\r\nwindows line",
    "rare characters: 龘 鱻 emoji 😀🚀 accents é ñ nbsp\u00a0here",
    "def square(x):\n    return x * x\n",
    "",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_decode_encode_round_trips_exactly(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_unseen_characters_never_become_unk(tokenizer) -> None:
    ids = tokenizer("😀龘𠀀", add_special_tokens=False)["input_ids"]
    assert ids and tokenizer.unk_token_id not in ids


def test_special_tokens_are_distinct_and_named(tokenizer) -> None:
    for attribute, token in SPECIAL_TOKENS.items():
        assert getattr(tokenizer, attribute) == token
    ids = [tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id]
    ids.append(tokenizer.pad_token_id)
    assert len(set(ids)) == 4
    assert tokenizer.eos_token == "</s>"
    assert tokenizer.convert_tokens_to_ids("</s>") == tokenizer.eos_token_id


def test_bos_prepended_only_with_special_tokens(tokenizer) -> None:
    plain = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    with_special = tokenizer(PROMPT, add_special_tokens=True)["input_ids"]
    assert with_special == [tokenizer.bos_token_id, *plain]
    assert tokenizer.bos_token_id not in plain and tokenizer.eos_token_id not in with_special
    assert tokenizer.add_bos_token and not tokenizer.add_eos_token


def test_literal_eos_in_text_maps_to_the_eos_id(tokenizer) -> None:
    ids = tokenizer(PROMPT + "</s>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT


def test_digits_are_split_one_per_token(tokenizer) -> None:
    ids = tokenizer("12345", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == list("12345")


def test_pads_on_the_right_with_pad_token(tokenizer) -> None:
    batch = tokenizer(["你好", "Human: hello world"], padding=True)
    short_ids, short_mask = batch["input_ids"][0], batch["attention_mask"][0]
    assert tokenizer.padding_side == "right"
    assert short_ids[-1] == tokenizer.pad_token_id and short_mask[-1] == 0
    assert short_ids[0] == tokenizer.bos_token_id
    assert tokenizer.model_max_length >= 4096


def test_vocab_size_is_respected(tokenizer) -> None:
    assert len(tokenizer) <= 2048
    assert len(build_tiny_tokenizer(512)) <= 512


def test_build_is_deterministic(tokenizer) -> None:
    # Ranks that build concurrently must end up with the same vocabulary.
    assert build_tiny_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_vocab_size_too_small_is_rejected() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_tiny_tokenizer(100)


def test_cache_builds_once_then_loads(tmp_path, monkeypatch, tokenizer) -> None:
    first = load_or_build_tiny_tokenizer(tmp_path)
    saved = tmp_path / tiny_tokenizer.cache_name(2048, 0)
    assert (saved / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [saved.name]  # no staging dir left behind

    def fail(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded, not rebuilt")

    monkeypatch.setattr(tiny_tokenizer, "build_tiny_tokenizer", fail)
    second = load_or_build_tiny_tokenizer(tmp_path)
    for text in ROUND_TRIP_TEXTS:
        expected = tokenizer(text)["input_ids"]
        assert first(text)["input_ids"] == second(text)["input_ids"] == expected
    assert second.pad_token == "<pad>" and second.padding_side == "right"
    assert second.add_bos_token and not second.add_eos_token


def test_cache_key_includes_vocab_size_and_seed(tmp_path) -> None:
    load_or_build_tiny_tokenizer(tmp_path, 512, seed=1)
    assert (tmp_path / tiny_tokenizer.cache_name(512, 1) / "tokenizer.json").is_file()
    assert tiny_tokenizer.cache_name(512, 1).startswith("tiny-bpe-512-s1-")


def test_cache_key_changes_with_the_code_that_builds_it(tmp_path, monkeypatch) -> None:
    """A tokenizer cached by other code (another corpus, other rules) is never loaded."""
    before = tiny_tokenizer.cache_name(512, 0)
    edited = tmp_path / "demo_world.py"
    edited.write_bytes(Path(demo_world.__file__).read_bytes() + b"# edited\n")
    monkeypatch.setattr(tiny_tokenizer, "_CONTENT_FILES", (Path(tiny_tokenizer.__file__), edited))
    assert tiny_tokenizer.cache_name(512, 0) != before


def test_concurrent_builders_agree_and_leave_one_directory(tmp_path) -> None:
    # Two "ranks" start together on an empty cache: both build, one rename wins.
    barrier = threading.Barrier(2)

    def rank(_: int):
        barrier.wait()
        return load_or_build_tiny_tokenizer(tmp_path, 512)

    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(rank, range(2))
    assert a(PROMPT)["input_ids"] == b(PROMPT)["input_ids"]
    assert [p.name for p in tmp_path.iterdir()] == [tiny_tokenizer.cache_name(512, 0)]
