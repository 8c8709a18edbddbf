"""Batching (`data.batching`): how tokenised samples become micro batches, and the share of
the positions in them that are real tokens rather than padding.

- `padded`: every sequence padded to the max length. Fixed shapes, so the worst-case memory
  shows at the first step; the reference the other modes are measured against.
- `grouped` (default): random mega-batches sorted by length (transformers'
  LengthGroupedSampler), each micro batch padded to its longest sample.
- `packed`: a micro batch is concatenated into one row without padding; position ids restart
  at 0 for every sample, from which transformers' attention masks (sdpa, eager, flash) keep
  samples from attending to each other, and the label at each sample's start is IGNORE_INDEX so
  no sample is trained to predict the next one's first token. Loss and gradients equal those of
  the padded batch. Under FlashAttention-2 (`model.attn_implementation=flash_attention_2`) the
  batch also carries the samples' boundaries (`cu_seq_lens_q`/`_k`, `max_length_q`/`_k`), so
  its variable-length kernel attends within each sample with no mask and no padding, without
  recomputing the boundaries from the position ids in every layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
    PreTrainedTokenizerBase,
)
from transformers.trainer_pt_utils import get_length_grouped_indices

from lorabench.config.schema import BATCHING_MODES, FLASH_ATTENTION, Config
from lorabench.data.encoding import LENGTH_COLUMN
from lorabench.data.prompts import IGNORE_INDEX
from lorabench.errors import ConfigError

MODEL_COLUMNS = ("input_ids", "labels")
"""Dataset columns the model takes; others (`length`) are for the sampler only."""


def _check_mode(batching: str) -> None:
    if batching not in BATCHING_MODES:
        raise ConfigError(f"data.batching={batching!r}: must be one of {', '.join(BATCHING_MODES)}")


@dataclass(frozen=True)
class ModelInputsCollator:
    """Collates only the model's columns, so the `length` column can stay in the dataset for
    the Trainer's length-grouped sampler (see `trainer_arguments`)."""

    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.collate([{k: f[k] for k in MODEL_COLUMNS} for f in features])


def make_collator(
    batching: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    attn_implementation: str | None = None,
) -> ModelInputsCollator:
    """The Trainer's data collator for a batching mode (packed batches carry FlashAttention's
    variable-length arguments when the model's `attn_implementation` is FlashAttention-2)."""
    _check_mode(batching)
    if batching == "packed":
        varlen = attn_implementation == FLASH_ATTENTION
        return ModelInputsCollator(
            DataCollatorWithFlattening(separator_id=IGNORE_INDEX, return_flash_attn_kwargs=varlen)
        )
    padding: dict[str, Any] = (
        {"padding": "max_length", "max_length": max_length}
        if batching == "padded"
        else {"padding": True}
    )
    return ModelInputsCollator(
        DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, **padding)
    )


def trainer_arguments(batching: str) -> dict[str, Any]:
    """TrainingArguments fields a batching mode needs (merge them into the Trainer's)."""
    _check_mode(batching)
    return {
        "train_sampling_strategy": "group_by_length" if batching == "grouped" else "random",
        "length_column_name": LENGTH_COLUMN,
        # The Trainer would drop `length` (no forward() argument) before its sampler reads it;
        # the collator drops it instead.
        "remove_unused_columns": False,
    }


def sample_lengths(dataset: datasets.Dataset) -> np.ndarray:
    """Tokens per sample of a prepared dataset (its `length` column), without reading ids."""
    return dataset.select_columns([LENGTH_COLUMN]).with_format("numpy")[:][LENGTH_COLUMN]


def nonpad_share(
    lengths: Sequence[int] | np.ndarray,
    batching: str,
    *,
    micro_batch_size: int,
    max_length: int,
    sampler_batch_size: int | None = None,
    seed: int = 0,
) -> float:
    """Share of the positions in a batching mode's micro batches that hold real tokens.

    `grouped` orders the samples with transformers' own length grouping, seeded by `seed`;
    `sampler_batch_size` is the batch the Trainer gives that sampler (micro batch × gradient
    accumulation; default the micro batch), which sets the mega-batch size (50 of them).
    """
    _check_mode(batching)
    lengths = np.asarray(lengths, dtype=np.int64)
    tokens = int(lengths.sum())
    if batching == "padded":
        positions = len(lengths) * max_length
    elif batching == "packed":
        positions = tokens  # one concatenated row per micro batch: no padding at all
    else:
        order = get_length_grouped_indices(
            lengths.tolist(),
            sampler_batch_size or micro_batch_size,
            generator=torch.Generator().manual_seed(seed),
        )
        positions = _padded_positions(lengths[np.asarray(order)], micro_batch_size)
    return tokens / positions


def _padded_positions(ordered: np.ndarray, micro_batch_size: int) -> int:
    """Positions when consecutive micro batches are each padded to their longest sample."""
    full = len(ordered) // micro_batch_size * micro_batch_size
    batches = ordered[:full].reshape(-1, micro_batch_size)
    positions = int(batches.max(axis=1).sum()) * micro_batch_size
    if full < len(ordered):  # the last, smaller batch (the Trainer keeps it)
        positions += int(ordered[full:].max()) * (len(ordered) - full)
    return positions


def configured_nonpad_share(cfg: Config, dataset: datasets.Dataset) -> float:
    """`nonpad_share` of a prepared set under the run's batching, micro batch and sampler."""
    return nonpad_share(
        sample_lengths(dataset),
        cfg.data.batching,
        micro_batch_size=cfg.hardware.micro_batch_size,
        max_length=cfg.method.max_length,
        sampler_batch_size=cfg.hardware.micro_batch_size * cfg.gradient_accumulation_steps(),
        seed=cfg.training.seed,
    )
