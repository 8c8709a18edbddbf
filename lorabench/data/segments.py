"""Assembling tokenised segments into training samples as flat arrays (numpy, no per-token
Python): the array side of `lorabench.data.prompts.tokenize_conversations`.

A batch of conversations arrives as the tokenizer returned it: one id list per segment, in
order (each conversation's first prompt, then its later segments, which start with the EOS
anchor `lorabench.data.prompts` encodes them after). Each segment becomes ``prefix + ids[drop:] +
suffix`` (a first prompt: the special tokens' wrapping; a continuation: the anchor dropped, a
response closed by EOS); a response's positions are trained, a prompt's masked. Each sample is
then cut at ``max_length`` and its masked tail after the last trained position dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (PyTorch's cross-entropy default)."""

FIRST_PROMPT, RESPONSE, LATER_PROMPT = 0, 1, 2
"""Segment kinds: a conversation is FIRST_PROMPT, then RESPONSE / LATER_PROMPT alternating."""


@dataclass(frozen=True)
class FlatSamples:
    """Samples as flat int32 arrays: sample i is ``[offsets[i], offsets[i + 1])`` of both.
    A sample with no trained position left is empty (offsets equal)."""

    input_ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sample (0: no trained position)."""
        return np.diff(self.offsets)


@dataclass(frozen=True)
class Wrapping:
    """Ids added around segments: the first prompt's special tokens, EOS after a response, and
    the anchor ids every continuation starts with."""

    prompt_prefix: Sequence[int]
    prompt_suffix: Sequence[int]
    eos_id: int
    anchor_ids: Sequence[int]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concat(arange(s, s + n) for s, n in zip(starts, lengths))``, vectorised."""
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def assemble(
    ids: Sequence[Sequence[int]], kinds: np.ndarray, wrapping: Wrapping, max_length: int
) -> FlatSamples:
    """The samples of segments `ids` of kinds `kinds`, in order: each FIRST_PROMPT starts the
    next sample.

    Raises ValueError when a continuation does not start with the anchor ids (the tokenizer
    merged the anchor with the text after it)."""
    first = kinds == FIRST_PROMPT
    sample_of = np.cumsum(first) - 1
    samples = int(first.sum())
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    raw = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=lengths.sum())
    raw_starts = np.cumsum(lengths) - lengths
    _check_anchor(raw, raw_starts[~first], lengths[~first], wrapping)

    # The source of every output token: the raw ids, then the few fixed ids segments add.
    prefix, suffix = list(wrapping.prompt_prefix), list(wrapping.prompt_suffix)
    extra = np.array([*prefix, *suffix, wrapping.eos_id], dtype=np.int32)
    source = np.concatenate([raw, extra])
    at_prefix, at_suffix, at_eos = len(raw), len(raw) + len(prefix), len(raw) + len(extra) - 1
    response = kinds == RESPONSE
    drop = np.where(first, 0, len(wrapping.anchor_ids))
    # Three pieces per segment (prefix, body, suffix) as (start in source, length).
    starts = np.stack(
        [
            np.full(len(ids), at_prefix),
            raw_starts + drop,
            np.where(first, at_suffix, at_eos),
        ],
        axis=1,
    ).ravel()
    sizes = np.stack(
        [
            np.where(first, len(prefix), 0),
            lengths - drop,
            np.where(first, len(suffix), response.astype(np.int64)),
        ],
        axis=1,
    ).ravel()
    tokens = source[_ranges(starts, sizes)]
    per_segment = sizes.reshape(-1, 3).sum(axis=1)
    trained = np.repeat(response, per_segment)
    sample = np.repeat(sample_of, per_segment)
    labels = np.where(trained, tokens, np.int32(IGNORE_INDEX)).astype(np.int32)
    return _truncate(tokens, labels, trained, sample, samples, max_length)


def _check_anchor(
    raw: np.ndarray, starts: np.ndarray, lengths: np.ndarray, wrapping: Wrapping
) -> None:
    anchor = np.asarray(wrapping.anchor_ids, dtype=np.int32)
    if len(anchor) == 0:
        return
    ok = lengths >= len(anchor)
    if ok.all():
        heads = raw[_ranges(starts, np.full(len(starts), len(anchor)))].reshape(-1, len(anchor))
        ok = (heads == anchor).all(axis=1)
    if not ok.all():
        raise ValueError(
            "the tokenizer does not keep its eos_token apart from the text that follows it, so "
            "response boundaries cannot be made exact"
        )


def _truncate(
    tokens: np.ndarray,
    labels: np.ndarray,
    trained: np.ndarray,
    sample: np.ndarray,
    samples: int,
    max_length: int,
) -> FlatSamples:
    """Cut each sample at `max_length`, then drop its masked positions after the last trained
    one (a sample with none left becomes empty)."""
    per_sample = np.bincount(sample, minlength=samples)
    position = np.arange(len(tokens)) - np.repeat(np.cumsum(per_sample) - per_sample, per_sample)
    counted = trained & (position < max_length)
    end = np.zeros(samples, dtype=np.int64)
    np.maximum.at(end, sample[counted], position[counted] + 1)
    keep = position < end[sample]
    offsets = np.zeros(samples + 1, dtype=np.int64)
    np.cumsum(end, out=offsets[1:])
    return FlatSamples(tokens[keep], labels[keep], offsets)
