"""Cheap checks before any rank starts: a run that cannot start fails once, early, in the process
the user started, with every problem found and how to fix it, instead of once per rank after
torchrun has spawned them.

Checked: the GPUs the hardware asks for are present, the kernel options' packages are installed
(`lorabench.modeling.kernels`), and the model's config and tokenizer resolve (for a chained run:
its base run's model is on this machine). Nothing is trained or prepared; a Hub model not in the
local cache is looked up as training would (offline with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig

from lorabench.config.schema import Config
from lorabench.errors import LorabenchError, ModelLoadError
from lorabench.modeling.base import build_tokenizer
from lorabench.modeling.kernels import kernel_problems

DEMO_HINT = "Or try everything offline on the CPU first: profile=demo (the tiny model)."


class PreflightError(LorabenchError):
    """A run cannot start; the message lists each problem with its fix."""


def preflight(cfg: Config) -> None:
    """Raise PreflightError naming every problem that would stop `cfg` from training here."""
    problems = [*_gpu_problems(cfg), *kernel_problems(cfg), *_model_problems(cfg)]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise PreflightError(f"cannot start on this machine:\n{listed}\n{DEMO_HINT}")


def _gpu_problems(cfg: Config) -> list[str]:
    hw = cfg.hardware
    if hw.device != "cuda":
        return []
    found = torch.cuda.device_count()
    if found >= hw.num_processes:
        return []
    asked = f"hardware={hw.name} asks for {hw.num_processes} CUDA GPUs per node"
    if found == 0:
        return [f"{asked}; this machine has none: train on the CPU with hardware=cpu"]
    return [f"{asked}; this machine has {found}: set hardware.num_processes={found}"]


def _model_problems(cfg: Config) -> list[str]:
    if cfg.base_run is not None:
        from lorabench.modeling.trained import spec_of_run

        try:
            spec_of_run(cfg.tracking, cfg.base_run, key="base_run")
        except LorabenchError as err:
            return [str(err)]
        return []  # the base run's model directory holds its config and tokenizer
    model = cfg.model
    if model.pretrained is not None:
        try:
            AutoConfig.from_pretrained(model.pretrained)
        except (OSError, ValueError) as err:
            return [_unloadable("model.pretrained", model.pretrained, err)]
    try:
        build_tokenizer(model, cfg.cache_dir)
    except ModelLoadError as err:
        key = "model.tokenizer.name_or_path" if model.tokenizer.name_or_path else "model.pretrained"
        return [_unloadable(key, model.tokenizer.name_or_path or model.pretrained, err.__cause__)]
    return []


def _unloadable(key: str, source: str | None, err: BaseException | None) -> str:
    first_line = str(err).strip().splitlines()[0] if err is not None and str(err).strip() else ""
    return (
        f"{key}={source!r} cannot be loaded ({first_line}): download it once in Hugging Face "
        f"format and point at it with {key}=/path/to/model"
    )
