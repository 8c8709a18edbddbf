"""LoRA's variants as config: their names, their parameter counts on every base-model preset
(dry runs on the meta device, checked against counts derived from the architecture), the
errors for variants that do not apply, and the pieces each variant hands to peft."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig

from lorabench import contract
from lorabench.analysis.paper_runs import paper_values
from lorabench.config import ConfigError, compose, validate
from lorabench.config.schema import LoraConfig
from lorabench.demo.pretraining import resolved_model
from lorabench.methods import LoRA, method_for
from lorabench.modeling.base import build_model, count_parameters
from lorabench.training import dry_run, train, training_arguments
from tests.helpers.cli import parse_counts, run_cli
from tests.helpers.runs import runs_of

# ---- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name", "label"),
    [
        (["method=dora"], "llama-7b+dora(2m)", "dora"),
        (["method=rslora", "method.lora.r=256"], "llama-7b+rslora-r256(2m)", "rslora-r256"),
        (["method=pissa"], "llama-7b+pissa(2m)", "pissa"),
        (["method=loraplus"], "llama-7b+loraplus(2m)", "loraplus"),
        (["method=qlora", "model=qwen2.5-7b"], "qwen2.5-7b+qlora(2m)", "qlora"),
        (["method.lora.r=64"], "llama-7b+lora-r64(2m)", "lora-r64"),
        (["method.lora.targets=all_linear"], "llama-7b+lora(2m)[targets=all_linear]", "lora"),
        (["method.lora.use_dora=true"], "llama-7b+lora(2m)[dora=true]", "lora"),
        (
            ["method.lora.targets=null", "method.lora.target_modules=[q_proj,v_proj]"],
            "llama-7b+lora(2m)[modules=q_proj.v_proj,targets=null]",
            "lora",
        ),
        (["model=llama3.1-8b", "method=ft"], "llama3.1-8b+ft(2m)", "ft"),
    ],
)
def test_each_variant_has_a_name_of_its_own(overrides, name: str, label: str) -> None:
    cfg = validate(compose(overrides))
    assert cfg.run_name == name
    parts = contract.parse_run_name(cfg.run_name)
    assert parts["method"] == label and parts["data"] == "2m"
    assert cfg.run_name not in paper_values()  # only the paper's presets carry its rows' names


@pytest.mark.parametrize(
    ("preset", "family"),
    [
        ("lora", contract.METHOD_LORA),
        ("lora_incremental", contract.METHOD_LORA),
        ("dora", contract.METHOD_LORA),
        ("rslora", contract.METHOD_LORA),
        ("pissa", contract.METHOD_LORA),
        ("loraplus", contract.METHOD_LORA),
        ("qlora", contract.METHOD_LORA),
        ("ft", contract.METHOD_FT),
        ("ft_incremental", contract.METHOD_FT),
    ],
)
def test_each_method_preset_belongs_to_its_family(preset: str, family: str) -> None:
    assert method_for(validate(compose([f"method={preset}"])).method).family == family


def test_the_papers_preset_still_carries_the_papers_name() -> None:
    assert validate(compose(["method=lora"])).run_name in paper_values()


def test_variant_presets_differ_from_lora_only_in_their_variant() -> None:
    lora = validate(compose(["method=lora"])).method
    for variant, changed in [
        ("dora", {"use_dora": True}),
        ("rslora", {"use_rslora": True}),
        ("loraplus", {"loraplus_lr_ratio": 16.0}),
        ("qlora", {}),
    ]:
        method = validate(compose([f"method={variant}"])).method
        assert method.lora == LoraConfig(**{**lora.lora.__dict__, **changed}), variant
    qlora = validate(compose(["method=qlora"])).method
    assert (qlora.quantization.quant_type, qlora.quantization.double_quant) == ("nf4", True)
    assert qlora.learning_rate == lora.learning_rate
    pissa = validate(compose(["method=pissa", "method.lora.r=32"])).method
    assert (pissa.lora.init, pissa.lora.alpha) == ("pissa_niter_4", 32)  # alpha follows r


# ---- dry-run counts ---------------------------------------------------------------------------
# Derived from the architecture alone: a block's linear layers are q (h→h), k and v (h→kv with
# kv = num_key_value_heads × h / num_attention_heads), o (h→h), gate and up (h→i), down (i→h).
# LoRA on a Linear(in, out) adds A (r×in) and B (out×r): r·(in+out) parameters; DoRA adds a
# magnitude vector of `out` values per adapted layer. The base has the embedding (V·h) and, when
# untied, an output head of the same size, the final norm (h), and per block two norms (2h), the
# linear weights, and for Qwen2 the biases of q, k and v (h + 2kv).


def block_linears(arch: dict) -> dict[str, tuple[int, int]]:
    h, i = arch["hidden_size"], arch["intermediate_size"]
    kv = arch["num_key_value_heads"] * h // arch["num_attention_heads"]
    return {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


TARGETS = {
    "paper": ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def expected_additional(arch: dict, targets: str, r: int, dora: bool) -> int:
    linears = block_linears(arch)
    per_block = sum(
        r * (fan_in + fan_out) + (fan_out if dora else 0)
        for fan_in, fan_out in (linears[m] for m in TARGETS[targets])
    )
    return arch["num_hidden_layers"] * per_block


def expected_base(arch: dict) -> int:
    h, vocab = arch["hidden_size"], arch["vocab_size"]
    linears = block_linears(arch)
    per_block = sum(a * b for a, b in linears.values()) + 2 * h
    if arch["model_type"] == "qwen2":
        per_block += h + 2 * linears["k_proj"][1]
    heads = 1 if arch.get("tie_word_embeddings") else 2
    return heads * vocab * h + arch["num_hidden_layers"] * per_block + h


# (method preset, extra overrides, targets preset, rank, DoRA)
VARIANTS = [
    ("lora", [], "paper", 8, False),
    ("lora", ["method.lora.r=64", "method.lora.targets=attention"], "attention", 64, False),
    ("lora", ["method.lora.r=16", "method.lora.targets=all_linear"], "all_linear", 16, False),
    ("dora", [], "paper", 8, True),
    ("rslora", ["method.lora.r=32"], "paper", 32, False),
    ("pissa", [], "paper", 8, False),
    ("loraplus", [], "paper", 8, False),
    ("qlora", [], "paper", 8, False),  # counted as the weights the 4-bit ones stand for
]
MODELS = ["llama-7b", "llama-13b", "llama2-7b", "llama2-13b", "llama3.1-8b", "qwen2.5-7b"]
FAST_MODEL = "qwen2.5-7b"  # grouped-query attention and q/k/v biases: the least LLaMA-1-like


def check_counts(model: str, method: str, extra: list[str], targets: str, r: int, dora: bool):
    cfg = validate(compose([f"model={model}", f"method={method}", *extra]))
    arch = dict(cfg.model.architecture)
    counts = dry_run(cfg)
    additional = expected_additional(arch, targets, r, dora)
    assert counts.additional == counts.trainable == additional
    assert counts.total == expected_base(arch) + additional


@pytest.mark.parametrize(("method", "extra", "targets", "r", "dora"), VARIANTS)
def test_variant_counts_match_the_architecture(method, extra, targets, r, dora) -> None:
    check_counts(FAST_MODEL, method, extra, targets, r, dora)


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in MODELS if m != FAST_MODEL])
@pytest.mark.parametrize(("method", "extra", "targets", "r", "dora"), VARIANTS[:4])
def test_variant_counts_on_every_preset(model, method, extra, targets, r, dora) -> None:
    check_counts(model, method, extra, targets, r, dora)


@pytest.mark.parametrize(
    ("model", "additional", "total"),
    [
        # The paper's LoRA preset (r=8, paper targets), worked through by hand:
        # LLaMA-3.1-8B block: q 8·(4096+4096) + k, v 8·(4096+1024) each + gate, up
        # 8·(4096+14336) each + down the same = 65,536 + 81,920 + 442,368 = 589,824; × 32.
        ("llama3.1-8b", 18_874_368, 8_030_261_248 + 18_874_368),
        # Qwen2.5-7B block: 57,344 + 2 × 32,768 + 3 × 180,224 = 663,552; × 28.
        ("qwen2.5-7b", 18_579_456, 7_615_616_512 + 18_579_456),
        # LLaMA-2-7B has LLaMA-1-7B's shape: the paper's 17.9M.
        ("llama2-7b", 17_891_328, 6_738_415_616 + 17_891_328),
    ],
)
def test_worked_examples_of_the_papers_preset(model: str, additional: int, total: int) -> None:
    counts = dry_run(validate(compose([f"model={model}", "method=lora"])))
    assert (counts.additional, counts.total) == (additional, total)


@pytest.mark.parametrize("model", [*MODELS, "llama3.1-70b"])
def test_full_fine_tuning_of_every_preset_trains_the_whole_base(model: str) -> None:
    cfg = validate(compose([f"model={model}", "method=ft"]))
    counts = dry_run(cfg)
    assert counts.additional == 0
    assert counts.trainable == counts.total == expected_base(dict(cfg.model.architecture))


def test_dry_run_of_a_new_preset_prints_the_counts_offline(tmp_path: Path) -> None:
    # run_cli sets HF_HUB_OFFLINE=1: the preset's architecture is all the dry run reads.
    result = run_cli(
        "train.py",
        "model=qwen2.5-7b",
        "method=lora",
        "method.lora.r=64",
        "dry_run=true",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    counts = parse_counts(result.stdout)
    arch = dict(validate(compose(["model=qwen2.5-7b"])).model.architecture)
    assert counts["additional_params"] == expected_additional(arch, "paper", 64, False)
    assert counts["total_params"] == expected_base(arch) + counts["additional_params"]


def test_pissa_dry_run_runs_no_svd(monkeypatch: pytest.MonkeyPatch, demo_config) -> None:
    import peft.tuners.lora.layer as lora_layer

    def no_svd(*args, **kwargs):
        raise AssertionError("an SVD ran")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    monkeypatch.setattr(lora_layer, "svd_lowrank", no_svd)
    cfg = validate(compose(["method=pissa", "method.lora.init=pissa"]))
    assert dry_run(cfg).additional == 17_891_328
    # The same method on real weights does decompose them (so the patch above would catch it).
    tiny = demo_config("method=pissa", "method.lora.init=pissa")  # its outputs in tmp_path
    with pytest.raises(AssertionError, match="an SVD ran"):
        method_for(tiny.method).wrap(build_model(resolved_model(tiny), None))


# ---- variants that do not apply ---------------------------------------------------------------


def test_missing_target_modules_are_named_with_the_models_linear_layers(
    demo_config, store, tmp_path
):
    cfg = demo_config(
        "method.lora.targets=null",
        "method.lora.target_modules=[q_proj,c_attn,wqkv]",
        f"pretrained_dir={tmp_path}/no-bases-yet",
    )
    with pytest.raises(ConfigError, match="c_attn, wqkv are not in the llama model") as err:
        train(cfg)
    assert "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in str(
        err.value
    )
    # Refused before the demo base was pretrained, the training data or any weights were
    # built, and before a run opened (an input error, like a missing base run).
    assert not (tmp_path / "no-bases-yet").exists()
    assert not (Path(cfg.cache_dir) / "data").exists()
    assert not list(Path(cfg.training.output_dir).glob("checkpoint-*"))
    assert runs_of(store) == []


def test_target_presets_are_refused_for_an_architecture_without_them() -> None:
    cfg = validate(compose(["profile=demo", "model.architecture.model_type=mistral"]))
    with pytest.raises(ConfigError, match="no target presets for model_type 'mistral'") as err:
        dry_run(cfg)
    assert "q_proj" in str(err.value) and "method.lora.targets=null" in str(err.value)


class WithMultiheadAttention(nn.Module):
    """A layer type peft adapts with LoRA but not with DoRA."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)
        self.proj = nn.Linear(8, 8)
        self.config = LlamaConfig()  # model_type, as a transformers model has


def test_dora_on_an_unsupported_layer_type_is_refused() -> None:
    lora = LoraConfig(target_modules=["attn", "proj"])
    LoRA(lora).check(WithMultiheadAttention())  # plain LoRA adapts MultiheadAttention
    with pytest.raises(ConfigError, match="DoRA cannot adapt layers of type MultiheadAttention"):
        LoRA(LoraConfig(target_modules=["attn", "proj"], use_dora=True)).check(
            WithMultiheadAttention()
        )


def test_lora_on_a_layer_type_peft_cannot_wrap_is_refused() -> None:
    cfg = validate(
        compose(["profile=demo", "method.lora.targets=null", "method.lora.target_modules=[norm]"])
    )
    with pytest.raises(ConfigError, match="LoRA cannot adapt layers of type LlamaRMSNorm"):
        dry_run(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=qlora", "method.lora=null"], "cannot be fine-tuned in full"),
        (["method=qlora", "method.lora.init=pissa"], "peft cannot initialise it on a 4-bit base"),
        (["method.lora.target_modules=[q_proj]"], "add method.lora.targets=null"),
        (["method.lora.targets=mlp"], "method.lora.targets='mlp': must be one of"),
        (["method.lora.init=pissa_niter_0"], "pissa_niter_<N>"),
        (["method=loraplus", "method.lora.loraplus_lr_ratio=0.5"], "must be >= 1"),
        (["method=qlora", "method.quantization.quant_type=int3"], "must be one of nf4, fp4"),
        (["method.usual_learning_rates.high=1e-5"], "must be > low"),
    ],
)
def test_variant_settings_that_cannot_work_are_refused(overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate(compose(overrides))


# ---- what each variant hands to peft ----------------------------------------------------------


def test_loraplus_trains_b_at_its_ratio_of_the_learning_rate(demo_config) -> None:
    cfg = demo_config("method=loraplus")
    method = method_for(cfg.method)
    model = method.wrap(build_model(resolved_model(cfg), None))
    optimizer = method.optimizer(model, training_arguments(cfg))
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            rates[names[id(param)].split(".lora_")[-1].split(".")[0]] = group["lr"]
    assert rates == {"A": cfg.method.learning_rate, "B": 16 * cfg.method.learning_rate}
    assert method_for(demo_config("method=lora").method).optimizer(model, None) is None


def test_qlora_counts_4bit_weights_as_the_weights_they_stand_for(demo_config) -> None:
    pytest.importorskip("bitsandbytes")
    cfg = demo_config("method=qlora")
    method = method_for(cfg.method)
    quantised = build_model(
        resolved_model(cfg),
        None,
        quantization=method.quantization_config(torch.float32),
        device_map={"": "cpu"},
    )
    assert type(quantised.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    plain = AutoModelForCausalLM.from_config(quantised.config)
    assert count_parameters(method.wrap(quantised), method) == count_parameters(
        method.wrap(plain), method
    )
