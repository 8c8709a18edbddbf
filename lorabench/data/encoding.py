"""Tokenising checked rows through the prompt template (`lorabench.data.prompts`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from lorabench.data.prompts import tokenize_flat
from lorabench.data.readers import worker_count

LENGTH_COLUMN = "length"
"""Tokens per sample; the Trainer's length-grouped sampler reads it instead of the ids."""

TOKENIZED_FEATURES = datasets.Features(
    {
        # int32: half the disk and page cache of int64, and every vocabulary fits.
        "input_ids": datasets.List(datasets.Value("int32")),
        "labels": datasets.List(datasets.Value("int32")),
        LENGTH_COLUMN: datasets.Value("int32"),
    }
)


def encode_batch(
    batch: dict[str, list[list[str]]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> pa.Table:
    """Tokenise a batch of checked rows (one tokenizer call for the batch); rows with no
    trainable token are left out.

    A `datasets.map` function that returns fewer rows than it got: the caller counts the
    difference (`no_trainable_token`).
    """
    conversations = [
        list(zip(human, assistant, strict=True))
        for human, assistant in zip(batch["human"], batch["assistant"], strict=True)
    ]
    flat = tokenize_flat(tokenizer, conversations, max_length)
    lengths = flat.lengths
    lengths = lengths[lengths > 0]  # an empty sample holds no ids: only its offset goes
    # Arrow arrays straight from the flat buffers: datasets would convert nested Python lists
    # element by element.
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    offsets = pa.array(offsets)
    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(flat.input_ids)),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(flat.labels)),
            LENGTH_COLUMN: pa.array(lengths.astype(np.int32)),
        }
    )


def tokenize_rows(
    rows: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    out: Path,
    num_proc: int | None,
) -> datasets.Dataset:
    """Tokenise checked rows (`human`, `assistant`) into the Arrow file(s) `out`."""
    procs = worker_count(len(rows), num_proc)
    return rows.map(
        encode_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        remove_columns=rows.column_names,
        features=TOKENIZED_FEATURES,
        num_proc=procs if procs > 1 else None,
        cache_file_name=str(out),
        # Explicit, so datasets does not hash the tokenizer to name the file.
        new_fingerprint=hashlib.sha256(str(out).encode()).hexdigest()[:32],
        load_from_cache_file=False,
        desc="tokenising",
    )
