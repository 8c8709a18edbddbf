"""The tiny model a demo config trains from, a fixed batch's loss to compare it before and
after training, and a LoRA adapter trained a few steps for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import torch

from lorabench.config import Config, compose, validate
from lorabench.data import build_train_dataset, make_collator
from lorabench.demo.pretraining import resolved_model
from lorabench.modeling.base import build_model, build_tokenizer


def fixed_batch_loss(model: torch.nn.Module, cfg: Config) -> float:
    """Mean loss on the first 8 training samples, the same batch before and after training."""
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    rows = build_train_dataset(cfg.data, tokenizer, cfg.method.max_length).select(range(8))
    batch = make_collator("padded", tokenizer, cfg.method.max_length)(list(rows))
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def base_model(cfg: Config) -> torch.nn.Module:
    """A fresh copy of the base `cfg` trains from: the pretrained tiny base for the demo."""
    model_cfg = resolved_model(cfg)  # the pretrained tiny base training starts from
    tokenizer = build_tokenizer(model_cfg, cfg.cache_dir)
    return build_model(model_cfg, tokenizer, seed=cfg.training.seed)


def untracked_adapter(root: Path, *overrides: str, steps: int = 2) -> Path:
    """A demo LoRA adapter trained `steps` steps on the math data under `root`, without
    tracking (a module's fixture: the evaluation tests' model)."""
    from lorabench.training import train

    cfg = [
        "profile=demo",
        *overrides,
        "data=math_0.25m",
        f"training.max_steps={steps}",
        f"training.output_dir={root}/out",
        f"cache_dir={root}/cache",
        "tracking.enabled=false",
        "training.progress_bar=false",
    ]
    return train(validate(compose(cfg))).model_path
