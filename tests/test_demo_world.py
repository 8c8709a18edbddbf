"""The demo world's plain text (lorabench.demo.world): what the tiny bases are pretrained on."""

from __future__ import annotations

import pytest

from lorabench.demo.world import (
    ALL,
    CAPITALS,
    DICTIONARY,
    DOCUMENT_KINDS,
    TAUGHT,
    tokenizer_training_texts,
    world_documents,
)


def test_documents_are_deterministic_and_extend_each_other() -> None:
    docs = world_documents(300)
    assert docs == world_documents(300)
    assert world_documents(500)[:300] == docs
    assert docs != world_documents(300, seed=1)


def test_the_held_out_split_is_another_stream() -> None:
    train = set(world_documents(3000))
    heldout = world_documents(300, split="heldout")
    # Random combinations of the same facts: the few that recur are short (a code snippet).
    assert len(set(heldout) - train) > 0.75 * len(heldout)
    assert heldout != world_documents(300)


def test_documents_are_plain_text_stating_the_world() -> None:
    docs = world_documents(4000)
    text = "\n".join(docs)
    assert "Assistant: " not in text and "\n\nAssistant" not in text  # no instruction format
    assert not any(doc.rstrip().endswith(("?", "？")) for doc in docs)  # statements, no questions
    for country_zh, capital_zh, country_en, capital_en in CAPITALS:
        assert capital_zh in text and capital_en in text
        assert country_zh in text and country_en in text
    for zh, en in DICTIONARY:
        assert f"“{zh}”的英文是{en}" in text or f"The English word for {zh} is {en}" in text


def test_every_kind_is_drawn_in_its_share() -> None:
    cycle = sum(weight for _, weight in DOCUMENT_KINDS.values())
    cycles = 50
    docs = world_documents(cycle * cycles)
    # Each shuffled cycle holds every kind its weight's times; code documents hold a `def`.
    assert sum("\ndef " in doc for doc in docs) == DOCUMENT_KINDS["code"][1] * cycles
    assert DOCUMENT_KINDS["capitals"][1] > DOCUMENT_KINDS["person"][1]  # facts to remember


def test_instruction_data_knows_less_than_the_world() -> None:
    assert set(TAUGHT.capitals) < set(ALL.capitals)
    assert set(TAUGHT.dictionary) < set(ALL.dictionary)
    assert len(TAUGHT.facts) == len(ALL.facts) - len(ALL.facts) // 3


def test_the_tokenizer_learns_from_world_text() -> None:
    texts = list(tokenizer_training_texts(seed=0, n=50))
    assert texts == world_documents(50)


@pytest.mark.parametrize(
    ("kwargs", "argument"), [({"n": -1}, "n"), ({"n": 3, "split": "x"}, "split")]
)
def test_bad_arguments_are_refused(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        world_documents(**kwargs)
