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

Segments after the first are tokenised as *continuations* (see :func:`_continuation`):
without BOS and without the dummy-prefix space a SentencePiece tokenizer puts in front of a
text's start. The first prompt is tokenised exactly as generation tokenises it
(:func:`encode_prompt`), so the model sees at training time exactly the prompt ids it gets at
inference, and its targets are exactly the response's characters followed by EOS.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (PyTorch's cross-entropy default)."""

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
    """:func:`tokenize_conversation` of each conversation, with one tokenizer call for them all.

    Every segment of every conversation goes into a single batched call (a fast tokenizer
    encodes a batch in one pass of its Rust code, without Python's per-call overhead); the ids
    are then split and assembled exactly as one conversation at a time would be.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no eos_token; responses must end with one")
    if not conversations:
        return []
    anchor, anchor_ids = tokenizer.eos_token, _anchor_ids(tokenizer)  # refuses legacy tokenizers
    wrapping = _special_wrapping(tokenizer)
    prompts: list[str] = []
    later: list[list[str]] = []
    for turns in conversations:
        if not turns:
            raise ValueError("a conversation needs at least one (human, assistant) turn")
        prompts.append(format_prompt(turns[0][0]))
        texts = [turns[0][1]]
        for human, assistant in turns[1:]:
            texts += [format_prompt(human), assistant]
        later.append(texts)
    continuations = [anchor + text for texts in later for text in texts]
    if wrapping is None:  # special tokens not a fixed wrapping: prompts need a call of their own
        first_ids = batch_ids(tokenizer, prompts, special_tokens=True)
        ids = iter(batch_ids(tokenizer, continuations))
    else:
        everything = iter(batch_ids(tokenizer, [*prompts, *continuations]))
        first_ids = [[*wrapping[0], *next(everything), *wrapping[1]] for _ in prompts]
        ids = everything
    return [
        _assemble(
            prompt_ids,
            [_continuation(next(ids), anchor_ids, anchor) for _ in texts],
            eos_id,
            max_length,
        )
        for prompt_ids, texts in zip(first_ids, later, strict=True)
    ]


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


def _assemble(
    prompt_ids: list[int], later_ids: list[list[int]], eos_id: int, max_length: int
) -> TokenizedExample | None:
    """Concatenate the segments' ids with their labels, truncate (see tokenize_conversation)."""
    input_ids = list(prompt_ids)
    labels = [IGNORE_INDEX] * len(input_ids)
    for index, ids in enumerate(later_ids):
        if index % 2 == 0:  # a response, closed by EOS: trained
            ids = [*ids, eos_id]
            labels += ids
        else:  # the next turn's prompt: masked
            labels += [IGNORE_INDEX] * len(ids)
        input_ids += ids

    input_ids, labels = input_ids[:max_length], labels[:max_length]
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    if end == 0:
        return None
    return TokenizedExample(input_ids=input_ids[:end], labels=labels[:end])


def _continuation(ids: list[int], anchor_ids: list[int], anchor: str) -> list[int]:
    """Ids of a text as it continues earlier text: no BOS and no dummy-prefix space.

    A LLaMA-style SentencePiece tokenizer treats every string it encodes as the start of a text
    and prepends "▁": encoded alone, the answer "Hello" becomes ``▁H el l o``. After the prompt's
    own trailing "▁" (the space of "Assistant: ") that would train a spurious second space, and
    stripping it afterwards is not possible in general because the prefix is merged into the
    first piece. Instead each text is encoded right after the EOS token's string (`ids` are
    those of ``anchor + text``) and the EOS ids are dropped. Special tokens are split off the
    raw text before normalisation and the model, so nothing merges across them, and text after
    a special token is the continuation of a text (transformers' non-legacy LLaMA tokenizer adds
    no prefix there; byte-level BPEs never do). This asks the tokenizer itself rather than
    assuming its conventions (no hard-coded "▁", no offsets, which not every tokenizer reports
    faithfully), so it is tokenizer-agnostic; for later prompts EOS is even the token that
    really precedes them. Tokenizers that do prepend a space after special tokens (LLaMA loaded
    with ``legacy=True``) are refused, not patched.
    """
    n = len(anchor_ids)
    if ids[:n] != anchor_ids:
        raise ValueError(
            f"the tokenizer does not keep its eos_token {anchor!r} apart from the text that "
            "follows it, so response boundaries cannot be made exact"
        )
    return ids[n:]


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
