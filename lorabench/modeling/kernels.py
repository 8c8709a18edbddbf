"""Kernel options of a training run, and whether this machine can run them: the attention
implementation (`model.attn_implementation`) and Liger's fused kernels (`training.liger_kernel`).

What the options need of the run (CUDA, half precision for FlashAttention-2) is checked with the
config (`lorabench.config.schema`); whether the packages are here is checked by transformers' own
tests, which are what would fail later, before any rank starts (`lorabench.launching.preflight`),
with the command that installs what is missing. Neither package is an extra of the project:
flash-attn compiles against the installed torch and CUDA, and Liger brings Triton, which only the
CUDA builds of torch ship with.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from transformers.utils import is_flash_attn_2_available, is_liger_kernel_available

from lorabench.config.schema import FLASH_ATTENTION, Config, ModelConfig, TrainingConfig

FLASH_ATTN_INSTALL = "pip install flash-attn --no-build-isolation"
"""Builds against the installed torch (prebuilt wheels: the flash-attn GitHub releases)."""
LIGER_INSTALL = "pip install 'liger-kernel>=0.5'"


def attention_unavailable(attention: str) -> str | None:
    """Why this machine cannot train with the attention implementation `attention`, with the
    fix; None when it can (`eager` and `sdpa` are torch's own)."""
    if attention != FLASH_ATTENTION or is_flash_attn_2_available():
        return None
    if importlib.util.find_spec("flash_attn") is None:
        found = "the flash-attn package is not installed"
    else:
        found = "flash-attn is installed but unusable here (it needs a CUDA GPU and version 2.3.3+)"
    return (
        f"model.attn_implementation={attention}: {found}; install it on a CUDA machine with "
        f"`{FLASH_ATTN_INSTALL}`, or set model.attn_implementation=sdpa"
    )


def liger_unavailable() -> str | None:
    """Why this machine cannot train with Liger's kernels, with the fix; None when it can."""
    if is_liger_kernel_available():
        return None
    return (
        "training.liger_kernel=true: the liger-kernel package (0.3+) is not installed; install "
        f"it with `{LIGER_INSTALL}`, or set training.liger_kernel=false"
    )


def kernel_problems(cfg: Config) -> list[str]:
    """One line per kernel option of `cfg` this machine cannot run, naming its key and fix."""
    problems = [attention_unavailable(cfg.model.attn_implementation)]
    if cfg.training.liger_kernel:
        problems.append(liger_unavailable())
    return [p for p in problems if p is not None]


def _kernel_params(
    model: ModelConfig | type[ModelConfig], training: TrainingConfig | type[TrainingConfig]
) -> dict[str, str]:
    # As a run's MLflow params hold them (the flattened config, values as text).
    return {
        "model.attn_implementation": str(model.attn_implementation),
        "training.liger_kernel": str(training.liger_kernel),
    }


def same_kernels(cfg: Config, params: Mapping[str, str]) -> bool:
    """Whether the run whose MLflow params are `params` trained with `cfg`'s kernel options (a
    run logged before the options existed trained with their defaults: sdpa, no Liger)."""
    # The dataclasses' class attributes are their fields' defaults.
    defaults = _kernel_params(ModelConfig, TrainingConfig)
    wanted = _kernel_params(cfg.model, cfg.training)
    return all(params.get(key, defaults[key]) == value for key, value in wanted.items())
