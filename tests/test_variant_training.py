"""Every LoRA variant trains the tiny model on a CPU: the loss falls, and the saved adapter
reloads with PeftModel.from_pretrained on the original base (PiSSA's converted to plain LoRA).
A QLoRA adapter is evaluated on the 4-bit base it was trained on. QLoRA's CUDA path is tested
where a GPU is present."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest
import torch
from peft import PeftModel

from lorabench.config import Config
from lorabench.data import build_train_dataset, make_collator
from lorabench.demo.pretraining import resolved_model
from lorabench.errors import ConfigError
from lorabench.evaluation.backends import check_backend
from lorabench.evaluation.targets import resolve_target
from lorabench.methods import method_for
from lorabench.modeling.base import build_model, build_tokenizer
from lorabench.training import train
from tests.helpers.models import base_model, fixed_batch_loss

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


QLORA_LOGITS_ATOL = 1e-4
"""How far the evaluated QLoRA model's fp32 logits may be from the 4-bit base's with the adapter
unmerged: float rounding only (the merge sums the update into the weight before the matmul,
the unmerged adapter after it)."""


def fixed_batch_logits(model: torch.nn.Module, cfg: Config) -> torch.Tensor:
    """Logits on the first 8 training samples, at the non-padded positions."""
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    rows = build_train_dataset(cfg.data, tokenizer, cfg.method.max_length).select(range(8))
    batch = make_collator("padded", tokenizer, cfg.method.max_length)(list(rows))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[batch["attention_mask"].bool()].float()


@NO_BITSANDBYTES
def test_qlora_is_evaluated_on_the_4bit_base_it_was_trained_on(demo_config) -> None:
    import bitsandbytes as bnb  # an optional dependency

    cfg = demo_config("method=qlora", *SHORT)
    result = train(cfg)
    target = resolve_target(demo_config(f"model_path={result.model_path}"))
    evaluated, _ = target.spec.load(cfg.cache_dir)  # what eval.backend=hf generates with
    four_bit = build_model(
        resolved_model(cfg),
        None,
        quantization=method_for(cfg.method).quantization_config(torch.float32),
        device_map={"": "cpu"},
    )
    for module in four_bit.modules():
        # bitsandbytes' CPU inference repacks 4-bit weights for an AVX512-BF16 kernel: another
        # computation than training's (which refuses widths not divisible by 32, as the tiny
        # model's MLP). The reference is the forward QLoRA trained with.
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    as_trained = fixed_batch_logits(PeftModel.from_pretrained(four_bit, result.model_path), cfg)
    on_full_base = PeftModel.from_pretrained(base_model(cfg), result.model_path)

    gap = (fixed_batch_logits(evaluated, cfg) - as_trained).abs().max().item()
    wrong_base = (fixed_batch_logits(on_full_base, cfg) - as_trained).abs().max().item()
    assert gap <= QLORA_LOGITS_ATOL, gap
    assert wrong_base > 100 * QLORA_LOGITS_ATOL, wrong_base  # the test tells the bases apart
    # A server would apply the adapter to the full-precision base: refused before generating.
    for backend in ("eval.backend=vllm", "eval.backend=server"):
        served = demo_config(
            f"model_path={result.model_path}", backend, "eval.server.url=http://127.0.0.1:9/v1"
        )
        with pytest.raises(ConfigError, match="QLoRA adapter.*eval.backend=hf"):
            check_backend(served, target)


@NO_BITSANDBYTES
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA's CUDA kernels need a GPU")
def test_qlora_trains_on_a_gpu(demo_config) -> None:
    cfg = demo_config("method=qlora", "hardware.device=cuda", "hardware.precision=bf16", *SHORT)
    adapter = trains_and_reloads(cfg)
    assert adapter["r"] == cfg.method.lora.r
