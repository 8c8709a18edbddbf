"""Property tests of the loss mask over random instructions and responses, for both tokenizers.

For any conversation: every prompt position is masked, the trained positions are exactly each
response followed by EOS (they decode to the response's text, in context), BOS comes once, and
truncation keeps a prefix of the full example that ends on a trained position or drops it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorabench.data.prompts import IGNORE_INDEX, tokenize_conversation, tokenize_example
from tests.helpers.local_tokenizers import assert_exact_mask, tiny_tokenizer

SPECIAL_TOKEN_TEXTS = ("<s>", "</s>", "<unk>", "<pad>")

_COMMON = list(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \n\t\r.,!?:;'\"()[]<>/-+=*#%_，。！？：；、（）《》“”…—～"
) + ["😀", "é", "ñ", "\u00a0", "\u3000", "龘", "𠀀"]

_CHARACTERS = st.one_of(
    st.sampled_from(_COMMON),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK ideographs
    # Anything else UTF-8 can carry, except: surrogates (not encodable) and U+2581 "▁", which a
    # SentencePiece tokenizer uses for the space and so decodes to " " by construction.
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\u2581"),
)


def _texts(min_size: int) -> st.SearchStrategy[str]:
    # A special token's text inside data is encoded as that special token (so it cannot decode
    # back as text); data validation is where such rows belong, not the mask.
    return st.text(_CHARACTERS, min_size=min_size, max_size=40).filter(
        lambda text: not any(special in text for special in SPECIAL_TOKEN_TEXTS)
    )


HUMAN = _texts(min_size=0)
RESPONSE = _texts(min_size=1)
TURNS = st.lists(st.tuples(HUMAN, RESPONSE), min_size=1, max_size=3)


@pytest.fixture(scope="module", params=["tiny", "sentencepiece"])
def tokenizer(request: pytest.FixtureRequest):
    if request.param == "tiny":
        return tiny_tokenizer()
    return request.getfixturevalue("sp_tokenizer")  # tests/conftest.py's


@settings(max_examples=150, deadline=None)
@given(instruction=HUMAN, input_text=HUMAN, response=RESPONSE)
def test_single_turn_mask_is_exact(tokenizer, instruction, input_text, response) -> None:
    ex = tokenize_example(tokenizer, instruction, input_text, response, max_length=100_000)
    assert_exact_mask(tokenizer, ex, [(instruction + input_text, response)])


@settings(max_examples=80, deadline=None)
@given(turns=TURNS)
def test_multi_turn_mask_is_exact(tokenizer, turns) -> None:
    ex = tokenize_conversation(tokenizer, turns, max_length=100_000)
    assert_exact_mask(tokenizer, ex, turns)


@settings(max_examples=80, deadline=None)
@given(turns=TURNS, max_length=st.integers(min_value=1, max_value=120))
def test_truncation_keeps_a_prefix_ending_on_a_trained_token(tokenizer, turns, max_length) -> None:
    full = tokenize_conversation(tokenizer, turns, max_length=100_000)
    cut = tokenize_conversation(tokenizer, turns, max_length=max_length)
    window = full.labels[:max_length]
    if cut is None:
        assert all(label == IGNORE_INDEX for label in window)
        return
    n = len(cut.input_ids)
    assert n <= max_length and len(cut.labels) == n
    assert cut.input_ids == full.input_ids[:n] and cut.labels == full.labels[:n]
    assert cut.labels[-1] != IGNORE_INDEX
    assert all(label == IGNORE_INDEX for label in window[n:])
