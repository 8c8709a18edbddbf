"""Training data: sources → exact-size seeded sample → tokenised dataset with loss masks."""

from __future__ import annotations

from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from lorabench.config.schema import DataConfig, DataSourceConfig
from lorabench.errors import DataError
from lorabench.prompts import tokenize_example

INSTRUCTION_COLUMNS = ("instruction", "input", "output")


def demo_size(data: DataConfig) -> int:
    """Samples in the demo corpus for this scale (a fixed fraction of the paper's)."""
    assert data.demo_fraction is not None
    return max(1, round(data.num_samples * data.demo_fraction))


def _load_source(source: DataSourceConfig) -> datasets.Dataset:
    name = source.path or source.hub
    if source.format != "instruction":
        raise DataError(f"{name}: format {source.format!r} is not supported by this loader yet")
    if source.path is not None:
        if not Path(source.path).is_file():
            raise DataError(f"data source path {source.path!r} does not exist")
        ds = datasets.load_dataset("json", data_files=source.path, split="train")
    else:
        ds = datasets.load_dataset(source.hub, split=source.split)
    missing = [c for c in INSTRUCTION_COLUMNS if c not in ds.column_names]
    if missing:
        raise DataError(f"{name}: missing columns {missing}; found {ds.column_names}")
    return ds.select_columns(list(INSTRUCTION_COLUMNS))


def load_rows(data: DataConfig) -> datasets.Dataset:
    """Exactly `num_samples` instruction rows (a seeded draw), or the demo corpus at its scale."""
    if data.demo_fraction is not None:
        from lorabench.demo_corpus import generate_train_samples

        rows = generate_train_samples(demo_size(data), domain=data.domain, seed=data.seed)
        return datasets.Dataset.from_list(rows)
    pool = datasets.concatenate_datasets([_load_source(s) for s in data.sources])
    if len(pool) < data.num_samples:
        raise DataError(
            f"data.num_samples={data.num_samples} but the sources hold only {len(pool)} rows"
        )
    return pool.shuffle(seed=data.seed).select(range(data.num_samples))


def tokenize_rows(
    rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> datasets.Dataset:
    """Tokenise with the prompt template; samples left with no trainable token are dropped."""

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        for instruction, input_text, output in zip(
            batch["instruction"], batch["input"], batch["output"], strict=True
        ):
            example = tokenize_example(tokenizer, instruction, input_text, output, max_length)
            if example is not None:
                out["input_ids"].append(example.input_ids)
                out["labels"].append(example.labels)
        return out

    return rows.map(encode, batched=True, remove_columns=rows.column_names, desc="tokenising")


def build_train_dataset(
    data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> datasets.Dataset:
    """The tokenised training set for one data scale."""
    return tokenize_rows(load_rows(data), tokenizer, max_length)
