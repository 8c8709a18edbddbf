"""Kernel options (`model.attn_implementation`, `training.liger_kernel`): refused before any
compute where they cannot run, naming the key and the install command; training the tiny model
with each gives the default's (sdpa's) losses. eager runs here; FlashAttention-2 and Liger run
on a CUDA machine that has their packages, and skip elsewhere saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lorabench.config import Config, compose, validate
from lorabench.errors import ConfigError
from lorabench.launching.preflight import PreflightError, preflight
from lorabench.modeling.kernels import FLASH_ATTN_INSTALL, LIGER_INSTALL, kernel_problems
from lorabench.modeling.trained import ModelSpec
from lorabench.training.recipe import TrainingRecipe
from tests.helpers.cli import run_cli
from tests.helpers.runs import runs_of

FLASH = "model.attn_implementation=flash_attention_2"
LIGER = "training.liger_kernel=true"
SHORT = ("method=lora", "data=math_0.25m", "training.max_steps=4", "tracking.enabled=false")
"""Four optimiser steps of the tiny model's LoRA, untracked: the losses are what is compared."""
ON_A_GPU = ("hardware.device=cuda", "hardware.precision=bf16")
"""The demo's one process on the first CUDA GPU, in the half precision FlashAttention needs."""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.attn_implementation=flash"], "must be one of eager, sdpa, flash_attention_2"),
        (["hardware=cpu", FLASH], "runs on CUDA GPUs only, not hardware.device=cpu"),
        ([FLASH, "hardware.precision=fp32"], "computes in fp16 or bf16 only, not fp32"),
        (["hardware=cpu", LIGER], "training.liger_kernel=True: Liger's Triton kernels run on CUDA"),
        (["plan.attention_speedup.sdpa=0"], "plan.attention_speedup.sdpa=0"),
        (["+plan.attention_speedup.flash=1.1"], "plan.attention_speedup key='flash'"),
        (["plan.liger_speedup=-1"], "plan.liger_speedup=-1"),
    ],
)
def test_a_kernel_option_the_run_cannot_use_is_refused_naming_the_key(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(compose(overrides))


@pytest.mark.parametrize(
    ("option", "install"),
    [(FLASH, FLASH_ATTN_INSTALL), (LIGER, LIGER_INSTALL)],
    ids=["flash", "liger"],
)
def test_a_missing_kernel_package_is_refused_before_any_rank_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch, isolated: list[str], option: str, install: str
) -> None:
    cfg = validate(compose(["model=tiny", "hardware=gpu8", option, *isolated]))
    if not kernel_problems(cfg):
        pytest.skip(f"{option} can run on this machine: nothing to refuse")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)  # only the package is missing
    with pytest.raises(PreflightError) as caught:
        preflight(cfg)
    message = str(caught.value)
    assert f"{option.partition('=')[0]}=" in message and f"`{install}`" in message
    assert message.count("\n  - ") == 1  # the one problem, nothing about GPUs or the model


def test_train_py_refuses_a_missing_kernel_before_building_anything(
    tmp_path: Path, isolated: list[str], store
) -> None:
    cfg = validate(compose(["profile=demo", *isolated, *ON_A_GPU, FLASH]))
    if not (problems := kernel_problems(cfg)):
        pytest.skip("flash-attn can run on this machine: nothing to refuse")
    result = run_cli("train.py", "profile=demo", *isolated, *ON_A_GPU, FLASH, cwd=tmp_path)
    assert result.returncode == 1
    assert problems[0] in result.stderr
    assert not (tmp_path / "out").exists() and runs_of(store, "lorabench-demo") == []


def test_kept_answers_do_not_depend_on_the_training_kernels(demo_config) -> None:
    # Generation keys hash the weights' spec; the attention kernels are no part of the weights.
    specs = [
        ModelSpec(base=demo_config(f"model.attn_implementation={a}").model)
        for a in ("sdpa", "eager")
    ]
    assert specs[0].base != specs[1].base
    assert specs[0].fingerprint() == specs[1].fingerprint()


def trained(cfg: Config) -> tuple[list[float], torch.nn.Module]:
    """The loss of each optimiser step of training `cfg`, and the base model it trained."""
    recipe = TrainingRecipe(cfg)
    with recipe.claim(), recipe.open_run() as run:
        recipe.build(run)
        recipe.fit()
    losses = [entry["loss"] for entry in recipe.trainer.state.log_history if "loss" in entry]
    assert len(losses) == cfg.training.max_steps
    return losses, recipe.trainer.model.get_base_model()


def losses_with(demo_config, tmp_path: Path, option: str, *overrides: str) -> list[float]:
    """The losses of the short run with the kernel option `option` (checked to be the one the
    model ran), in a directory of its own (the kernels are no part of a run's identity: one
    directory would be resumed)."""
    cfg = demo_config(
        *SHORT, *overrides, option, f"training.output_dir={tmp_path / option.replace('=', '-')}"
    )
    losses, model = trained(cfg)
    assert model.config._attn_implementation == cfg.model.attn_implementation
    # Liger patches modules in place; their names say so (`repr` shows `LigerRMSNorm`).
    liger = {m._get_name() for m in model.modules() if m._get_name().startswith("Liger")}
    assert bool(liger) == cfg.training.liger_kernel, liger
    return losses


def skip_unless_runnable(cfg: Config) -> None:
    """Skip, saying why, where this machine cannot train `cfg`'s kernel options (the reasons
    train.py's preflight gives, and no GPU)."""
    reasons = [] if torch.cuda.is_available() else ["no CUDA GPU on this machine"]
    if reasons := [*reasons, *kernel_problems(cfg)]:
        pytest.skip("; ".join(reasons))


def test_eager_attention_trains_to_sdpas_losses(demo_config, tmp_path: Path) -> None:
    sdpa = losses_with(demo_config, tmp_path, "model.attn_implementation=sdpa")
    eager = losses_with(demo_config, tmp_path, "model.attn_implementation=eager")
    assert eager == pytest.approx(sdpa, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["grouped", "packed"])
def test_flash_attention_trains_to_sdpas_losses(demo_config, tmp_path: Path, batching: str) -> None:
    # packed: padding-free, through FlashAttention's variable-length kernel.
    on_gpu = (*ON_A_GPU, f"data.batching={batching}")
    skip_unless_runnable(demo_config(*SHORT, *on_gpu, FLASH))
    sdpa = losses_with(demo_config, tmp_path, "model.attn_implementation=sdpa", *on_gpu)
    flash = losses_with(demo_config, tmp_path, FLASH, *on_gpu)
    assert flash == pytest.approx(sdpa, rel=2e-2)  # bf16 both, kernels that sum differently


@pytest.mark.slow
def test_liger_kernels_train_to_the_defaults_losses(demo_config, tmp_path: Path) -> None:
    on_gpu = ("hardware.device=cuda",)  # fp32, as the demo: Liger's kernels run in it too
    skip_unless_runnable(demo_config(*SHORT, *on_gpu, LIGER))
    default = losses_with(demo_config, tmp_path, "training.liger_kernel=false", *on_gpu)
    liger = losses_with(demo_config, tmp_path, LIGER, *on_gpu)
    assert liger == pytest.approx(default, rel=5e-3)
