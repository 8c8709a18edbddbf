"""Every LoRA variant trains the tiny model on a CPU: the loss falls, and the saved adapter
reloads with PeftModel.from_pretrained on the original base (PiSSA's converted to plain LoRA).
QLoRA's CUDA path is tested where a GPU is present."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest
import torch
from peft import PeftModel

from lorabench.training import train
from tests.test_training import base_model, fixed_batch_loss

NO_BITSANDBYTES = pytest.mark.skipif(
    find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes (pip install .[qlora])"
)
# A few steps at the demo learning rate from the first (no warmup: 6 steps would barely reach
# its peak); tracking off: the MLflow contract is test_training.py's.
SHORT = (
    "data=math_0.25m",
    "training.max_steps=6",
    "method.warmup_steps=0",
    "tracking.enabled=false",
)


def trains_and_reloads(cfg) -> dict:
    """Train `cfg`; assert the loss fell and the adapter reloads on the original base; return
    the adapter's config."""
    before = fixed_batch_loss(base_model(cfg), cfg)
    result = train(cfg)
    reloaded = PeftModel.from_pretrained(base_model(cfg), str(result.model_path))
    after = fixed_batch_loss(reloaded, cfg)
    assert after < before - 0.05, (before, after)
    assert result.counts.additional == result.counts.trainable > 0
    return json.loads((result.model_path / "adapter_config.json").read_text())


@pytest.mark.parametrize(
    ("variant", "adapter_key", "value"),
    [
        ("dora", "use_dora", True),
        pytest.param("rslora", "use_rslora", True, marks=pytest.mark.slow),
        pytest.param("loraplus", "r", 8, marks=pytest.mark.slow),
        pytest.param("qlora", "r", 8, marks=NO_BITSANDBYTES),
    ],
)
def test_variant_trains_and_its_adapter_reloads(demo_config, variant, adapter_key, value) -> None:
    adapter = trains_and_reloads(demo_config(f"method={variant}", *SHORT))
    assert adapter[adapter_key] == value


def test_pissa_adapter_is_converted_to_lora_on_the_original_base(demo_config) -> None:
    # Trained on the residual base, saved as a rank-2r LoRA adapter for the untouched base: if
    # it were saved unconverted, reloading it there would add the principal components twice.
    cfg = demo_config("method=pissa", *SHORT)
    adapter = trains_and_reloads(cfg)
    assert adapter["r"] == 2 * cfg.method.lora.r and adapter["init_lora_weights"] is True


@pytest.mark.slow
def test_lora_on_all_linear_layers_at_another_rank_trains(demo_config) -> None:
    cfg = demo_config("method.lora.targets=all_linear", "method.lora.r=16", *SHORT)
    adapter = trains_and_reloads(cfg)
    assert adapter["r"] == 16
    assert set(adapter["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


@NO_BITSANDBYTES
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA's CUDA kernels need a GPU")
def test_qlora_trains_on_a_gpu(demo_config) -> None:
    cfg = demo_config("method=qlora", "hardware.device=cuda", "hardware.precision=bf16", *SHORT)
    adapter = trains_and_reloads(cfg)
    assert adapter["r"] == cfg.method.lora.r
