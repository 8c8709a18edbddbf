"""Pretraining the demo's tiny bases, before any instruction tuning: a causal LM trained with the
HF Trainer on the demo world's plain text (`lorabench.demo.world`), cached by its config
(`model.pretrain`) under `pretrained_dir`, and tracked as an MLflow run of its own (tag
`run_kind=pretraining`, left out of the study's tables).

    base = ensure_pretrained(cfg)       # the cached base of cfg.model, pretrained now if missing
    model_cfg = resolved_model(cfg)     # cfg.model pointing at it (model.pretrained)

`python -m lorabench.demo.pretraining profile=demo model=tiny` makes a base ahead of time.
"""

from lorabench.demo.pretraining.base import (
    PretrainedBase,
    cached_base,
    ensure_pretrained,
    pretrain_tags,
    resolved_model,
)

__all__ = ["PretrainedBase", "cached_base", "ensure_pretrained", "pretrain_tags", "resolved_model"]
