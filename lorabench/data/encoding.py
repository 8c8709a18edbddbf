"""Tokenising checked rows through the prompt template (`lorabench.prompts`)."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from lorabench.data.readers import worker_count
from lorabench.prompts import tokenize_conversations

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
    out: dict[str, list] = {"input_ids": [], "labels": [], LENGTH_COLUMN: []}
    conversations = [
        list(zip(human, assistant, strict=True))
        for human, assistant in zip(batch["human"], batch["assistant"], strict=True)
    ]
    for example in tokenize_conversations(tokenizer, conversations, max_length):
        if example is None:
            continue
        out["input_ids"].append(example.input_ids)
        out["labels"].append(example.labels)
        out[LENGTH_COLUMN].append(len(example.input_ids))
    # Arrow arrays built from flat numpy buffers: datasets would convert the nested Python
    # lists element by element, which costs a fifth of the tokenizer's own time.
    lengths = out[LENGTH_COLUMN]
    return pa.table(
        {
            "input_ids": _int32_lists(out["input_ids"], lengths),
            "labels": _int32_lists(out["labels"], lengths),
            LENGTH_COLUMN: pa.array(lengths, pa.int32()),
        }
    )


def _int32_lists(rows: list[list[int]], lengths: list[int]) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=offsets[-1])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


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
