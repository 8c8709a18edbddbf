"""The pretraining corpus as token blocks: world documents, each between `<s>` and `</s>`,
concatenated and cut into fixed-length blocks (the last, partial block is dropped), as causal LMs
such as LLaMA are pretrained."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
from transformers import PreTrainedTokenizerBase


def token_blocks(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerBase, block_size: int
) -> datasets.Dataset:
    """`input_ids` and `labels` (the same ids: the model shifts them) of `block_size` tokens.

    Raises ValueError when the documents do not fill one block.
    """
    encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for ids in encoded:
        stream += [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    count = len(stream) // block_size
    if count == 0:
        raise ValueError(
            f"{len(documents)} documents hold {len(stream)} tokens, fewer than one block of "
            f"{block_size}"
        )
    blocks = [stream[i * block_size : (i + 1) * block_size] for i in range(count)]
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})
