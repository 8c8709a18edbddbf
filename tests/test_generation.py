"""Answer generation counts the answers that `max_new_tokens` cut (they may be incomplete)."""

from __future__ import annotations

import pytest
import torch

from lorabench.config.schema import DecodingConfig
from lorabench.demo.pretraining import resolved_model
from lorabench.evaluation.generation import generate_answers
from lorabench.modeling.base import build_model, build_tokenizer


def forced(demo_config, token_id: int):
    """The tiny model with a head that always prefers `token_id` (a real model, a known
    output)."""
    cfg = demo_config()
    model_cfg = resolved_model(cfg)
    tokenizer = build_tokenizer(model_cfg, cfg.cache_dir)
    model = build_model(model_cfg, tokenizer, seed=0)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 100.0
    model.lm_head = head
    return model, tokenizer


@pytest.mark.parametrize("stops", [True, False])
def test_an_answer_is_truncated_exactly_when_it_hits_the_limit(demo_config, stops: bool) -> None:
    cfg = demo_config()
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    token = tokenizer.eos_token_id if stops else tokenizer.convert_tokens_to_ids("a")
    assert token != tokenizer.unk_token_id
    model, tokenizer = forced(demo_config, token)
    decoding = DecodingConfig(max_new_tokens=4)

    answers = list(
        generate_answers(model, tokenizer, ["你好", "写一首诗"], decoding, progress=False)
    )

    assert sorted(a.index for a in answers) == [0, 1]
    assert all(a.truncated is (not stops) for a in answers)
    if stops:
        assert all(a.text == "" for a in answers)
    else:
        assert all(len(tokenizer(a.text, add_special_tokens=False).input_ids) >= 1 for a in answers)
