"""Batched answer generation with the paper's decoding settings.

Prompts are left-padded so every row of a batch ends where generation starts, and sorted by
length so batches waste little on padding (the longest first: an out-of-memory batch shows up at
once, not at the end).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from lorabench.config.schema import DecodingConfig
from lorabench.data.prompts import encode_prompt


class Answer(NamedTuple):
    """One generated answer."""

    index: int
    """Position of the question in the input."""
    text: str
    truncated: bool
    """Generation stopped at `max_new_tokens`, not at EOS: the answer may be cut."""


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    decoding: DecodingConfig,
    *,
    batch_size: int = 8,
    seed: int = 42,
    progress: bool = True,
    desc: str = "generating",
) -> Iterator[Answer]:
    """Yield each question's `Answer` as its batch finishes, in length order (a progress bar
    labelled `desc` counts them)."""
    set_seed(seed)
    encoded = [encode_prompt(tokenizer, q) for q in questions]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    model.eval()
    bar = tqdm(total=len(order), desc=desc, unit="answer", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids = encoded[i]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention_mask.to(model.device),
                do_sample=decoding.do_sample,
                temperature=decoding.temperature,
                top_k=decoding.top_k,
                top_p=decoding.top_p,
                repetition_penalty=decoding.repetition_penalty,
                max_new_tokens=decoding.max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=pad_id,
            )
        for row, i in enumerate(batch):
            generated = output[row, width:]
            truncated = len(generated) >= decoding.max_new_tokens and not bool(
                (generated == tokenizer.eos_token_id).any()
            )
            text = tokenizer.decode(generated, skip_special_tokens=True)
            yield Answer(i, text.strip(), truncated)
        bar.update(len(batch))
    bar.close()
