"""The perplexity of a demo base's held-out world text (the pretraining's held-out split), per run:
forgetting in loss terms. Each document is scored as pretraining saw one, between `<s>` and
`</s>`: the summed negative log-likelihood (nats) of every token after `<s>`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lorabench.config.schema import Config
from lorabench.demo.world import world_documents
from lorabench.errors import ConfigError


def heldout_documents(cfg: Config) -> list[str]:
    """The held-out world documents the model's pretraining measured itself on."""
    pretrain = cfg.model.pretrain
    if pretrain is None:
        raise ConfigError(
            f"eval.world_perplexity=true: model={cfg.model.name} has no pretraining "
            "(model.pretrain), so no held-out world text; set eval.world_perplexity=false"
        )
    return world_documents(pretrain.heldout_documents, split="heldout", seed=pretrain.corpus_seed)


def document_losses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[str],
    batch_size: int,
) -> list[dict[str, float | int | str]]:
    """`{"item", "nll", "tokens"}` per document (`item`: `heldout-<index>`)."""
    encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    rows = []
    model.eval()
    for start in range(0, len(encoded), batch_size):
        batch = [
            [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
            for ids in encoded[start : start + batch_size]
        ]
        for offset, (nll, tokens) in enumerate(_batch_losses(model, batch)):
            rows.append({"item": f"heldout-{start + offset}", "nll": nll, "tokens": tokens})
    return rows


def _batch_losses(model: PreTrainedModel, batch: list[list[int]]) -> list[tuple[float, int]]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)
        ).logits.float()
    targets = input_ids[:, 1:].to(logits.device)
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), targets, reduction="none"
    )
    losses = losses * mask[:, 1:].to(losses.device)
    return [(float(losses[r].sum()), len(ids) - 1) for r, ids in enumerate(batch)]


def perplexity(rows: Sequence[dict]) -> float:
    """exp(total nll / total tokens) over the documents."""
    return math.exp(sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows))
