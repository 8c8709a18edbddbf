"""Pretraining the demo's tiny bases before any instruction tuning: a causal LM on the demo
world's plain text, cached by its config and tracked as an MLflow run of its own.

The HF Trainer pretrains it on `lorabench.demo.world`'s text; the base is cached by
`model.pretrain` under `pretrained_dir`; its run is tagged `run_kind=pretraining` and left out of
the study's tables.

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
