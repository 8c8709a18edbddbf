"""The paper's prompt template and tokenisation with an exact loss mask.

One turn is ``Human: {human}\\n\\nAssistant: `` (the prompt, masked) followed by
``{assistant}</s>`` (the response and EOS, trained); a single-turn sample has
``human = instruction + input``, which gives the paper's
``Human: {instruction}{input}\\n\\nAssistant: {output}</s>``. A multi-turn conversation is its
turns one after the other, with BOS once at the very start; every assistant turn is trained.

Each segment (prompt, response, prompt, response, ...) is tokenised on its own and the ids are
concatenated, so a token boundary always falls exactly where a segment starts. BELLE's code
tokenised the whole text and masked ``len(tokenize(prompt))`` positions; with LLaMA's tokenizer
the trailing space of "Assistant: " merges with the answer's first character (``▁H``), so that
count masked the answer's first token (BELLE issue #337). Here nothing can straddle the boundary.

Segments after the first are tokenised as *continuations* (see :func:`_anchor_ids`):
without BOS and without the dummy-prefix space a SentencePiece tokenizer puts in front of a
text's start. The first prompt is tokenised exactly as generation tokenises it
(:func:`encode_prompt`), so the model sees at training time exactly the prompt ids it gets at
inference, and its targets are exactly the response's characters followed by EOS.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from lorabench.data.segments import (
    FIRST_PROMPT,
    LATER_PROMPT,
    RESPONSE,
    FlatSamples,
    Wrapping,
    assemble,
)
from lorabench.data.segments import IGNORE_INDEX as IGNORE_INDEX  # where its users import it from

Turn = tuple[str, str]
"""One exchange of a conversation: ``(human_text, assistant_text)``."""

# Per tokenizer: the ids special tokens wrap a text in, if fixed (see _special_wrapping).
_WRAPPING: weakref.WeakKeyDictionary[
    PreTrainedTokenizerBase, tuple[tuple[list[int], list[int]] | None]
] = weakref.WeakKeyDictionary()
# Per tokenizer: its EOS string and that string's ids, once checked (see _anchor_ids).
_ANCHOR_IDS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[str, list[int]]] = (
    weakref.WeakKeyDictionary()
)


def format_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt part of the template, up to and including "Assistant: "."""
    return f"Human: {instruction}{input_text}\n\nAssistant: "


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, instruction: str, input_text: str = ""
) -> list[int]:
    """Ids of a single-turn prompt, BOS first: what generation feeds the model.

    Training masks exactly these ids at the start of every sample, so the prompt the model is
    trained after and the prompt it is asked to continue at evaluation are the same ids.
    """
    return tokenizer.encode(format_prompt(instruction, input_text), add_special_tokens=True)


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids with their labels; prompt positions carry IGNORE_INDEX."""

    input_ids: list[int]
    labels: list[int]


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    input_text: str,
    output: str,
    max_length: int,
) -> TokenizedExample | None:
    """Tokenise one instruction sample: the one-turn case of :func:`tokenize_conversation`."""
    return tokenize_conversation(tokenizer, [(instruction + input_text, output)], max_length)


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, turns: Sequence[Turn], max_length: int
) -> TokenizedExample | None:
    """Tokenise a conversation of ``(human, assistant)`` turns with its exact loss mask.

    Prompts are masked; every response and the EOS closing it are trained. Truncation simply
    cuts the ids at ``max_length``, as BELLE's code did, then drops the masked positions left
    after the last trained one (a later turn's prompt cut short carries no loss). Returns None
    when no trained position survives, i.e. when the first prompt alone takes ``max_length``
    tokens or more; the caller counts such samples. The prompt is deliberately not cut from the
    left to make room for a response: an answer trained after a mutilated instruction teaches
    the model to answer questions it was not asked, prompts that long are rare at the paper's
    length of 1024, and the model would be trained on prompt ids that generation never produces.
    """
    return tokenize_conversations(tokenizer, [turns], max_length)[0]


def tokenize_conversations(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Sequence[Turn]], max_length: int
) -> list[TokenizedExample | None]:
    """:func:`tokenize_conversation` of each conversation, with one tokenizer call for them all
    (see :func:`tokenize_flat`)."""
    flat = tokenize_flat(tokenizer, conversations, max_length)
    ids, labels = flat.input_ids.tolist(), flat.labels.tolist()
    return [
        TokenizedExample(input_ids=ids[a:b], labels=labels[a:b]) if b > a else None
        for a, b in itertools.pairwise(flat.offsets.tolist())
    ]


def tokenize_flat(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Sequence[Turn]], max_length: int
) -> FlatSamples:
    """:func:`tokenize_conversation` of each conversation as flat arrays (an empty sample where
    it returns None), with one tokenizer call for them all.

    Every segment of every conversation goes into a single batched call (a fast tokenizer
    encodes a batch in one pass of its Rust code, without Python's per-call overhead); the ids
    are then assembled exactly as one conversation at a time would be, in numpy
    (`lorabench.data.segments`): preparing 2M rows spends its time in the tokenizer, not in Python.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no eos_token; responses must end with one")
    anchor, anchor_ids = tokenizer.eos_token, _anchor_ids(tokenizer)  # refuses legacy tokenizers
    special = _special_wrapping(tokenizer)
    prompts: list[str] = []
    continuations: list[str] = []
    counts: list[int] = []
    for turns in conversations:
        if not turns:
            raise ValueError("a conversation needs at least one (human, assistant) turn")
        prompts.append(format_prompt(turns[0][0]))
        texts = [turns[0][1]]
        for human, assistant in turns[1:]:
            texts += [format_prompt(human), assistant]
        continuations += [anchor + text for text in texts]
        counts.append(len(texts))
    if special is None:  # special tokens not a fixed wrapping: prompts need a call of their own
        first_ids = batch_ids(tokenizer, prompts, special_tokens=True)
        later_ids = batch_ids(tokenizer, continuations)
        prefix, suffix = [], []
    else:
        everything = batch_ids(tokenizer, [*prompts, *continuations])
        first_ids, later_ids = everything[: len(prompts)], everything[len(prompts) :]
        prefix, suffix = special
    # Segments in sample order: each first prompt, then its later segments.
    later = iter(later_ids)
    ids: list[list[int]] = []
    kinds: list[int] = []
    for first, count in zip(first_ids, counts, strict=True):
        ids.append(first)
        ids.extend(itertools.islice(later, count))
        kinds += [FIRST_PROMPT, *itertools.islice(itertools.cycle((RESPONSE, LATER_PROMPT)), count)]
    wrapping = Wrapping(prefix, suffix, eos_id, anchor_ids)
    return assemble(ids, np.asarray(kinds, dtype=np.int64), wrapping, max_length)


def batch_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, special_tokens: bool = False
) -> list[list[int]]:
    """The ids of each text, in one batched tokenizer call (ids only: no masks to convert)."""
    encoded = tokenizer(
        list(texts),
        add_special_tokens=special_tokens,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return encoded["input_ids"]


def _special_wrapping(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]] | None:
    """The ids special tokens add before and after a text (LLaMA: BOS, nothing), so a prompt
    encoded without them can be completed into exactly :func:`encode_prompt`'s ids; None when
    probes show no fixed wrapping. Cached per tokenizer."""
    cached = _WRAPPING.get(tokenizer)
    if cached is not None:
        return cached[0]
    probes = [format_prompt(text) for text in ("x", "你好 world", "")]
    pairs = [
        (
            tokenizer.encode(p, add_special_tokens=True),
            tokenizer.encode(p, add_special_tokens=False),
        )
        for p in probes
    ]
    full, bare = pairs[0]
    found = None
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            found = (full[:start], full[start + len(bare) :])
            break
    if found is not None and any(f != [*found[0], *b, *found[1]] for f, b in pairs):
        found = None
    _WRAPPING[tokenizer] = (found,)
    return found


def _anchor_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The EOS string's ids, once the tokenizer is known to continue text after it exactly.

    A LLaMA-style SentencePiece tokenizer treats every string it encodes as the start of a text
    and prepends "▁": encoded alone, the answer "Hello" becomes ``▁H el l o``. After the prompt's
    own trailing "▁" (the space of "Assistant: ") that would train a spurious second space, and
    stripping it afterwards is not possible in general because the prefix is merged into the
    first piece. Instead each later text is encoded right after the EOS token's string and the
    EOS ids are dropped (`segments`). Special tokens are split off the raw text before
    normalisation and the model, so nothing merges across them, and text after a special token
    is the continuation of a text (transformers' non-legacy LLaMA tokenizer adds no prefix
    there; byte-level BPEs never do). This asks the tokenizer itself rather than assuming its
    conventions (no hard-coded "▁", no offsets, which not every tokenizer reports faithfully),
    so it is tokenizer-agnostic; for later prompts EOS is even the token that really precedes
    them.

    Refuses a tokenizer that encodes text after a special token as if a space preceded it. The
    result is cached per tokenizer (and EOS string): the check costs three encodes.
    """
    anchor = tokenizer.eos_token
    cached = _ANCHOR_IDS.get(tokenizer)
    if cached is not None and cached[0] == anchor:
        return cached[1]
    bare, spaced = (tokenizer.encode(anchor + t, add_special_tokens=False) for t in ("x", " x"))
    if bare == spaced:
        raise ValueError(
            "the tokenizer encodes text after a special token as if a space preceded it (e.g. a "
            "LLaMA tokenizer loaded with legacy=True), so every response would be trained with a "
            "spurious leading space; load it with legacy=False"
        )
    anchor_ids = tokenizer.encode(anchor, add_special_tokens=False)
    _ANCHOR_IDS[tokenizer] = (anchor, anchor_ids)
    return anchor_ids
