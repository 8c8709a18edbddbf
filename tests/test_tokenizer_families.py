"""The exact loss mask with the tokenizers of the newer base-model presets (LLaMA-3.1, Qwen2.5).

Their tokenizers cannot be downloaded here, so each family is rebuilt locally
(`tests.helpers.local_tokenizers.write_byte_level_family`): a byte-level BPE trained on the demo
corpus with the family's pre-tokenisation pattern and special-token conventions, loaded as
transformers loads the real checkpoint. LLaMA-3 prepends <|begin_of_text|> and has no pad token;
Qwen2 adds no BOS at all and pads with its EOS. Both are tested with the base model's EOS and
with the Instruct model's end-of-turn token as EOS. The presets train with the paper's template
(no chat template), which is what is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lorabench.config.schema import ModelConfig, TokenizerConfig
from lorabench.data import make_collator
from lorabench.data.prompts import IGNORE_INDEX, encode_prompt, tokenize_conversation
from lorabench.modeling.base import build_tokenizer
from tests.helpers.local_tokenizers import assert_exact_mask, write_byte_level_family

FAMILY_EOS = [
    ("llama3", "<|end_of_text|>"),
    ("llama3", "<|eot_id|>"),
    ("qwen2", "<|endoftext|>"),
    ("qwen2", "<|im_end|>"),
]
CONVERSATIONS = [
    [("列出三种水果", "苹果、香蕉、橙子")],
    [("计算 12+345=", "357")],
    [("Say hello", " Hello, world!\n\nBye.")],
    [("你好", "你好！有什么可以帮你？"), ("再说一遍", "你好！"), (" and in English?", "Hello!")],
]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("families")
    return {f: write_byte_level_family(base / f, f) for f in ("llama3", "qwen2")}


def family_tokenizer(family_dirs: dict[str, Path], family: str, eos: str):
    """The family's tokenizer as training builds it (pad filled in), with `eos` as EOS."""
    model = ModelConfig(
        name=family, pretrained=str(family_dirs[family]), tokenizer=TokenizerConfig()
    )
    tokenizer = build_tokenizer(model, cache_dir="unused")
    tokenizer.eos_token = eos
    return tokenizer


@pytest.mark.parametrize(("family", "eos"), FAMILY_EOS)
@pytest.mark.parametrize("turns", CONVERSATIONS, ids=lambda t: f"{len(t)}turns:{t[0][1][:4]}")
def test_every_response_and_only_responses_are_trained(family_dirs, family, eos, turns) -> None:
    tokenizer = family_tokenizer(family_dirs, family, eos)
    example = tokenize_conversation(tokenizer, turns, max_length=512)
    assert_exact_mask(tokenizer, example, turns)
    # Training masks exactly the prompt that generation feeds the model.
    prompt = encode_prompt(tokenizer, turns[0][0])
    assert example.input_ids[: len(prompt)] == prompt
    assert example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)


def test_families_follow_their_bos_conventions(family_dirs) -> None:
    llama3 = family_tokenizer(family_dirs, "llama3", "<|end_of_text|>")
    qwen2 = family_tokenizer(family_dirs, "qwen2", "<|endoftext|>")
    assert llama3.decode(encode_prompt(llama3, "x")[:1]) == "<|begin_of_text|>"
    assert qwen2.bos_token_id is None
    assert encode_prompt(qwen2, "x") == qwen2.encode("Human: x\n\nAssistant: ")
    # Neither ships a pad token distinct from EOS: training pads with EOS.
    assert llama3.pad_token_id == llama3.eos_token_id
    assert qwen2.pad_token_id == qwen2.eos_token_id


@pytest.mark.parametrize("batching", ["padded", "grouped"])
@pytest.mark.parametrize(("family", "eos"), FAMILY_EOS[::2])
def test_padding_with_eos_keeps_the_trained_eos(family_dirs, family, eos, batching) -> None:
    # Pad and EOS are one id here: padding must be masked by position, never by id, or the
    # response's closing EOS would drop out of the loss.
    tokenizer = family_tokenizer(family_dirs, family, eos)
    short, long = (
        tokenize_conversation(tokenizer, [(h, a)], max_length=64)
        for h, a in [("hi", "ok"), ("列出三种水果", "苹果、香蕉、橙子")]
    )
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in (short, long)]
    batch = make_collator(batching, tokenizer, 64)(rows)
    labels = batch["labels"][0].tolist()
    n = len(short.labels)
    assert labels[:n] == short.labels and labels[n - 1] == tokenizer.eos_token_id
    assert set(labels[n:]) == {IGNORE_INDEX}
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(labels) - n)
