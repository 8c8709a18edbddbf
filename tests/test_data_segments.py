"""The array assembly of segments into samples, against a plain list-by-list reference of what
a sample is: prompt masked, each response plus EOS trained, cut at max length, the masked tail
after the last trained position dropped, nothing left meaning no sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorabench.data.segments import (
    FIRST_PROMPT,
    IGNORE_INDEX,
    LATER_PROMPT,
    RESPONSE,
    Wrapping,
    assemble,
)

EOS = 2
ANCHOR = [2, 7]  # an anchor of two ids (a byte-level EOS string can be several)
IDS = st.lists(st.integers(10, 99), max_size=6)
CONVERSATIONS = st.lists(st.lists(IDS, min_size=2, max_size=5), min_size=0, max_size=6)
WRAPPINGS = st.sampled_from([((1,), ()), ((), ()), ((1, 3), (4,))])


def _reference(segments: list[list[int]], prefix, suffix, max_length: int):
    """(ids, labels) of one conversation, or None: built token by token."""
    ids = [*prefix, *segments[0], *suffix]
    labels = [IGNORE_INDEX] * len(ids)
    for index, body in enumerate(segments[1:]):
        if index % 2 == 0:
            ids += [*body, EOS]
            labels += [*body, EOS]
        else:
            ids += body
            labels += [IGNORE_INDEX] * len(body)
    ids, labels = ids[:max_length], labels[:max_length]
    while labels and labels[-1] == IGNORE_INDEX:
        ids, labels = ids[:-1], labels[:-1]
    return (ids, labels) if labels else None


@settings(max_examples=300, deadline=None)
@given(CONVERSATIONS, WRAPPINGS, st.integers(1, 30))
def test_assembly_equals_the_reference(conversations, wrapping, max_length) -> None:
    prefix, suffix = wrapping
    ids, kinds = [], []
    for segments in conversations:
        for j, body in enumerate(segments):
            ids.append(body if j == 0 else [*ANCHOR, *body])  # continuations carry the anchor
            kinds.append(FIRST_PROMPT if j == 0 else (RESPONSE if j % 2 else LATER_PROMPT))
    flat = assemble(
        ids, np.asarray(kinds, dtype=np.int64), Wrapping(prefix, suffix, EOS, ANCHOR), max_length
    )
    assert flat.input_ids.dtype == flat.labels.dtype == np.int32
    bounds = flat.offsets.tolist()
    got = [
        (flat.input_ids[a:b].tolist(), flat.labels[a:b].tolist()) if b > a else None
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    assert got == [_reference(s, prefix, suffix, max_length) for s in conversations]


def test_a_continuation_without_the_anchor_is_refused() -> None:
    # The tokenizer merged the anchor with the text after it: boundaries would be wrong.
    ids = [[5, 6], [2, 70, 11]]
    with pytest.raises(ValueError, match="eos_token apart"):
        assemble(ids, np.array([FIRST_PROMPT, RESPONSE]), Wrapping((1,), (), EOS, ANCHOR), 64)
