"""The paper's prompt template and tokenisation with an exact loss mask.

`Human: {instruction}{input}\\n\\nAssistant: {output}</s>`; the loss covers the response and EOS
only. Prompt and response are tokenised separately and concatenated, so no token straddles the
boundary after "Assistant: " and the first response token can never be masked or merged into the
prompt (BELLE issue #337); generation tokenises the same prompt string the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (PyTorch's cross-entropy default)."""


def format_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt part of the template, up to and including "Assistant: "."""
    return f"Human: {instruction}{input_text}\n\nAssistant: "


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
    """Tokenise one sample; None when truncation leaves no response token to train on."""
    prompt_ids = tokenizer(format_prompt(instruction, input_text), add_special_tokens=True)[
        "input_ids"
    ]
    response_ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    response_ids = [*response_ids, tokenizer.eos_token_id]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return TokenizedExample(input_ids=input_ids, labels=labels)
