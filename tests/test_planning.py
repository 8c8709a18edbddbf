"""The plan's estimates: model states agree with DeepSpeed's own estimators, activations are
measured from the model's forward pass, the known cases on the paper's hardware come out as they
did for the paper and BELLE's users, tokens are measured once the data is prepared, and hours per
epoch are compared with Table 4."""

from __future__ import annotations

import pytest

from lorabench.analysis.reference import table4
from lorabench.config import compose, validate
from lorabench.console import format_seconds
from lorabench.contract import METHOD_FT
from lorabench.data import configured_nonpad_share, demo_size, prepare_train_data
from lorabench.methods import method_for
from lorabench.modeling.base import build_tokenizer
from lorabench.planning import (
    GIB,
    PlanError,
    count_tokens,
    estimate_point,
    estimate_time,
    model_states,
    profile_model,
)
from lorabench.planning.memory import QuantisedBase, ZeroSettings, largest_layer_params
from lorabench.training import dry_run, meta_model

A100_40GB = 39.4 * GIB
FLASH = "model.attn_implementation=flash_attention_2"


def plan_of(*overrides: str):
    return estimate_point(validate(compose(list(overrides))))


@pytest.mark.parametrize(
    ("stage", "offload_optimizer", "offload_param"),
    [(2, False, False), (2, True, False), (3, False, False), (3, True, False), (3, True, True)],
)
@pytest.mark.parametrize("gpus", [1, 8])
def test_full_fine_tuning_model_states_agree_with_deepspeeds_estimators(
    stage: int, offload_optimizer: bool, offload_param: bool, gpus: int
) -> None:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    cfg = validate(compose(["model=llama-7b", "method=ft"]))
    counts = dry_run(cfg)
    largest = largest_layer_params(meta_model(cfg))
    zero = ZeroSettings(True, stage, offload_optimizer, offload_param)
    ours = model_states(counts, largest, "bf16", zero, world_size=gpus).total
    if stage == 2:
        _, theirs = estimate_zero2_model_states_mem_needs(
            counts.total, num_gpus_per_node=gpus, cpu_offload=offload_optimizer
        )
    else:
        _, theirs, _ = estimate_zero3_model_states_mem_needs(
            counts.total,
            largest,
            num_gpus_per_node=gpus,
            cpu_offload=offload_optimizer,
            cpu_offload_params=offload_param,
        )
    assert ours == pytest.approx(theirs, abs=8)  # DeepSpeed rounds its partitions to bytes


def test_largest_layer_is_deepspeeds() -> None:
    from deepspeed.runtime.zero.stage3 import model_to_params

    model = meta_model(validate(compose(["model=llama-7b", "method=lora"])))
    _, theirs = model_to_params(model)
    assert largest_layer_params(model) == theirs == 32000 * 4096  # the embedding (and LM head)


def test_lora_keeps_a_16_bit_frozen_base_and_full_state_only_for_its_adapters() -> None:
    cfg = validate(compose(["model=llama-7b", "method=lora"]))
    counts = dry_run(cfg)
    states = model_states(counts, 0, "fp16", ZeroSettings.of(cfg.deepspeed_config_path()), 8)
    assert states.weights == 2 * counts.total
    assert states.gradients + states.optimizer == 18 * counts.trainable / 8
    plain = model_states(counts, 0, "fp16", ZeroSettings(deepspeed=False), 1)
    # AMP trains fp32 adapters (weights, gradients, Adam: 16 bytes each) on a 16-bit base.
    assert plain.total == 2 * (counts.total - counts.trainable) + 16 * counts.trainable


@pytest.mark.parametrize(
    # Each architecture's numbers (conf/model/): vocabulary, hidden, layers, intermediate,
    # k/v width (kv heads × head dim 128), q/k/v biases.
    ("model", "vocab", "hidden", "layers", "intermediate", "kv", "qkv_bias"),
    [
        ("qwen2.5-7b", 152064, 3584, 28, 18944, 4 * 128, True),
        ("llama-7b", 32000, 4096, 32, 11008, 4096, False),
    ],
)
def test_qlora_holds_linear_layers_in_4_bits_and_the_rest_of_its_base_in_fp32(
    model: str,
    vocab: int,
    hidden: int,
    layers: int,
    intermediate: int,
    kv: int,
    qkv_bias: bool,
) -> None:
    cfg = validate(compose([f"model={model}", "method=qlora"]))
    profile = profile_model(cfg)
    # By hand: bitsandbytes quantises the blocks' linear layers (q, o: hidden²; k, v: hidden ×
    # kv; the MLP's three: hidden × intermediate); the untied embeddings and LM head, the norms
    # (two a layer and the final one) and the biases stay floating point.
    linear = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * intermediate
    quantised = layers * linear
    rest = 2 * vocab * hidden + (2 * layers + 1) * hidden + qkv_bias * layers * (hidden + 2 * kv)
    # The paper preset's adapters (r=8 on q, k, v and the MLP): r × (in + out) each.
    r = cfg.method.lora.r
    adapters = layers * r * (2 * hidden + 2 * (hidden + kv) + 3 * (hidden + intermediate))
    assert profile.quantisable == quantised
    assert profile.counts.trainable == adapters
    assert profile.counts.total == quantised + rest + adapters
    # NF4 with double quantisation: half a byte, an 8-bit absmax per 64 weights and an fp32
    # absmax per 256 of those.
    four_bit = quantised * (1 / 2 + 1 / 64 + 4 / (64 * 256))
    base = QuantisedBase(profile.quantisable, double_quant=True)
    plain = model_states(profile.counts, 0, "fp16", ZeroSettings(deepspeed=False), 1, base)
    # AMP: fp32 adapters; the rest of the base upcast to fp32 by prepare_model_for_kbit_training.
    assert plain.weights == pytest.approx(four_bit + 4 * rest + 4 * adapters, abs=1)
    zero2 = ZeroSettings.of(cfg.deepspeed_config_path())
    deepspeed = model_states(profile.counts, 0, "fp16", zero2, 8, base)
    # DeepSpeed casts every floating-point parameter to the training dtype.
    assert deepspeed.weights == pytest.approx(four_bit + 2 * rest + 2 * adapters, abs=1)
    planned = plan_of(f"model={model}", "method=qlora", "method.precision=fp16")
    assert planned.memory.states == deepspeed
    single = QuantisedBase(profile.quantisable, double_quant=False)  # an fp32 absmax per 64
    assert single.bytes() == pytest.approx(quantised * (1 / 2 + 4 / 64), abs=1)


def test_activations_are_measured_per_layer_and_checkpointing_keeps_only_layer_inputs() -> None:
    cfg = validate(compose(["model=llama-7b", "method=ft"]))
    acts = profile_model(cfg).activations
    layers, length, hidden, head_dim = 32, 1024, 4096, 128
    # Checkpointing keeps each decoder layer's input (and the shared rotary cos/sin).
    assert acts.layer_inputs == layers * length * hidden * 2 + 2 * length * head_dim * 2
    assert acts.largest_layer * layers == pytest.approx(acts.layers, rel=0.01)
    # A LLaMA decoder layer keeps about 24·hidden + 8·intermediate bytes a token in 16-bit
    # training (RMSNorms' fp32 inputs and outputs, q/k/v/attention output and projection inputs,
    # the MLP's four intermediate-size tensors), and no heads × length² attention scores.
    assert acts.largest_layer == pytest.approx(length * (24 * hidden + 8 * 11008), rel=0.02)
    assert acts.largest_tensor == length * 32000 * 4  # the fp32 logits of the loss
    assert acts.peak(4, checkpointing=False) == 4 * acts.peak(1, checkpointing=False)
    assert acts.peak(4, checkpointing=True) < acts.peak(4, checkpointing=False) / 5


def test_the_papers_runs_fit_8_a100_40gb_with_its_settings() -> None:
    # Table 4's rows differ in data, which does not change memory: one row per model × method.
    for overrides in (
        ["model=llama-7b", "method=lora"],
        ["model=llama-13b", "method=lora"],
        ["model=llama-7b", "method=ft"],
    ):
        plan = plan_of(*overrides, "hardware=gpu8")
        assert plan.memory.available == A100_40GB
        assert plan.memory.fits, (overrides, plan.describe())


def test_7b_full_fine_tuning_at_1024_without_zero3_does_not_fit_40gb() -> None:
    # BELLE's users: micro batch 2 at 1,024 tokens, no activation checkpointing, ZeRO-2.
    belle = ["method=ft", "hardware.micro_batch_size=2", "hardware.activation_checkpointing=false"]
    zero2 = plan_of(*belle, "hardware.deepspeed=zero2")
    assert not zero2.memory.fits
    assert zero2.memory.total > 40 * GIB
    assert plan_of(*belle, "hardware.deepspeed=zero3").memory.fits

    four = plan_of(
        "method=ft", "hardware.deepspeed=zero2", "hardware.activation_checkpointing=false"
    )
    assert not four.memory.fits
    assert four.fix.overrides == ["hardware.activation_checkpointing=true"]
    assert "DOES NOT FIT; fits with hardware.activation_checkpointing=true" in four.describe()
    # Activation checkpointing is what makes ZeRO-2 fit at micro batch 4 (gpu8's default).
    assert plan_of("method=ft", "hardware.deepspeed=zero2").memory.fits


def test_70b_full_fine_tuning_fits_4_nodes_of_h100_and_needs_offload_on_a100_40gb() -> None:
    h100 = plan_of("model=llama3.1-70b", "method=ft", "hardware=gpu8x4")
    assert h100.memory.fits, h100.describe()
    assert h100.time.world_size == 32  # hours and ZeRO-3's partitions over all the nodes' GPUs
    assert (
        h100.memory.total
        < 0.9
        * plan_of(
            "model=llama3.1-70b",
            "method=ft",
            "hardware=gpu8x4",
            "hardware.num_nodes=2",
            "method.global_batch_size=16",
        ).memory.total
    )
    a100 = plan_of("model=llama3.1-70b", "method=ft", "hardware=gpu8x4", "hardware.gpu=a100-40gb")
    assert not a100.memory.fits
    assert a100.fix.overrides == ["hardware.deepspeed=zero3_offload"]
    # ZeRO-3 gathers 141 GB of 16-bit weights twice a micro batch: more than one 400 Gbit/s link
    # a node carries in the compute of a step; with 8 of them (DGX H100) it comes close.
    network = h100.network
    assert network.bytes_per_step == pytest.approx(3 * 2 * 70.6e9 * 31 / 32, rel=0.01)
    assert network.bound and "WARNING: the network" in h100.describe()
    fast = plan_of(
        "model=llama3.1-70b", "method=ft", "hardware=gpu8x4", "plan.internode_gbit_per_s=3200"
    ).network
    assert fast.seconds == pytest.approx(network.seconds / 8)
    assert plan_of("model=llama3.1-70b", "method=ft").network is None  # one node


def test_a_point_that_fits_nothing_tried_says_so() -> None:
    # At 64k tokens one sample's activations alone outgrow a 40 GB card.
    plan = plan_of("method=ft", "method.max_length=65536")
    assert not plan.memory.fits and plan.fix is None
    assert "no setting tried fits" in plan.describe()


def test_a_smaller_micro_batch_is_suggested_only_if_it_keeps_the_global_batch() -> None:
    plan = plan_of("model=llama-13b", "method=lora", "hardware.micro_batch_size=16")
    assert not plan.memory.fits
    (override,) = plan.fix.overrides  # before ZeRO-3 or offload, which cost step time
    key, micro = override.split("=")
    assert key == "hardware.micro_batch_size"
    assert 1 < int(micro) < 16 and 128 % (int(micro) * 8) == 0
    assert plan.fix.memory.fits


def test_a_model_whose_architecture_cannot_be_read_offline_is_a_plan_error() -> None:
    cfg = validate(
        compose(["model=causal-lm", "model.name=mine", "model.pretrained=/nowhere/mine"])
    )
    with pytest.raises(PlanError, match="model.architecture"):
        estimate_point(cfg)


def test_tokens_are_measured_once_the_data_is_prepared(demo_config) -> None:
    cfg = demo_config("data=0.6m", "data.batching=packed")
    assumed = count_tokens(cfg)
    assert assumed.source == "plan.mean_tokens_per_sample"
    assert (assumed.samples, assumed.nonpad_share) == (demo_size(cfg.data), 1.0)

    prepared = prepare_train_data(
        cfg.data, build_tokenizer(cfg.model, cfg.cache_dir), cfg.method.max_length, cfg.cache_dir
    )
    measured = count_tokens(cfg)
    assert measured.source.startswith("measured")
    assert measured.samples == prepared.report.rows_kept
    assert measured.mean_length == pytest.approx(prepared.report.mean_length)
    grouped = count_tokens(demo_config("data=0.6m", "data.batching=grouped"))
    assert grouped.nonpad_share == pytest.approx(
        configured_nonpad_share(demo_config("data=0.6m"), prepared.dataset)
    )
    padded = count_tokens(demo_config("data=0.6m", "data.batching=padded"))
    assert padded.nonpad_share == pytest.approx(measured.mean_length / cfg.method.max_length)


def test_hours_follow_flops_padding_and_the_assumed_mfu() -> None:
    cfg = validate(compose(["method=ft", "data=2m", "data.batching=padded"]))
    time = estimate_time(cfg, dry_run(cfg).total, cfg.gpus["a100-40gb"])
    positions = 2_000_000 * 1024  # padded: every sample to the max length
    flops = positions * (6 + 2) * dry_run(cfg).total  # + the recomputed forward
    assert time.hours_per_epoch == pytest.approx(flops / (8 * 312e12 * 0.4) / 3600)
    h100 = estimate_time(cfg, dry_run(cfg).total, cfg.gpus["h100-80gb"])
    assert h100.hours_per_epoch == pytest.approx(time.hours_per_epoch * 312 / 989)


def test_a_variant_takes_its_familys_mfu_unless_it_has_its_own() -> None:
    dora = validate(compose(["method=dora"]))
    gpu, precision = dora.gpus["a100-40gb"], dora.precision
    assert estimate_time(dora, 1, gpu).mfu == dora.plan.mfu["lora"][precision]
    own = validate(compose(["method=dora", f"+plan.mfu.dora={{{precision}:0.2}}"]))
    assert estimate_time(own, 1, gpu).mfu == 0.2
    none = validate(compose(["method=dora", "~plan.mfu.lora"]))
    with pytest.raises(PlanError, match="plan.mfu has no entry for method dora .*family lora"):
        estimate_time(none, 1, gpu)


def test_a_kernel_option_scales_the_assumed_mfu_by_its_speedup() -> None:
    def time_of(*overrides: str):
        cfg = validate(compose(["method=lora", *overrides]))
        return estimate_time(cfg, dry_run(cfg).total, cfg.gpus["a100-40gb"])

    sdpa = time_of()
    assert sdpa.mfu == 0.35 and sdpa.kernels == ""  # plan.mfu's figure is the default kernels'
    flash = time_of(FLASH)
    assert flash.mfu == pytest.approx(0.35 * 1.235)  # LLaMA-Factory's 2,954 / 2,392 tokens/s
    assert flash.hours == pytest.approx(sdpa.hours / 1.235)
    both = time_of(FLASH, "training.liger_kernel=true")
    assert both.mfu == pytest.approx(0.35 * 1.235 * 0.706)  # Liger measured slower on an H200
    assert both.kernels == "1.24 flash_attention_2 × 0.706 liger_kernel"
    assert time_of("model.attn_implementation=eager").hours == pytest.approx(sdpa.hours / 0.651)
    with pytest.raises(PlanError, match=r"\+plan\.attention_speedup\.eager=<its tokens/s"):
        time_of("model.attn_implementation=eager", "~plan.attention_speedup.eager")
    with pytest.raises(PlanError, match="plan.liger_speedup=null"):
        time_of("training.liger_kernel=true", "plan.liger_speedup=null")
    with pytest.raises(PlanError, match="the assumed MFU is 1.19 .*above 1"):
        time_of("plan.attention_speedup.eager=3.4", "model.attn_implementation=eager")


def test_the_plan_line_shows_what_the_kernels_add_to_the_mfu() -> None:
    line = plan_of(FLASH).describe()
    assert "MFU 0.43 (plan.mfu × 1.24 flash_attention_2) × 312 TFLOP/s" in line


@pytest.mark.slow
def test_hours_per_epoch_against_table_4(isolated: list[str]) -> None:
    """Table 4's FT hours are those of padding every sample to 1,024 tokens (BELLE's scripts);
    its LoRA hours are those of unpadded batches (padded, they would need an MFU above 0.8)."""
    rows = compose(["experiment=paper_table4"]).sweep.rows
    paper = {r["run"]: float(r["train_hours_per_epoch"]) for r in table4()}
    ratios = {}
    for row in rows:
        # A chained row looks its base run up: in the test's own store.
        row = [*row, *isolated]
        cfg = validate(compose(row))
        batching = "padded" if method_for(cfg.method).family == METHOD_FT else "grouped"
        cfg = validate(compose([*row, f"data.batching={batching}"]))
        time = estimate_time(cfg, profile_model(cfg).counts.total, cfg.gpus["a100-40gb"])
        name = validate(compose(row)).run_name
        ratios[name] = time.hours_per_epoch / paper[name]
    assert sorted(ratios) == sorted(paper)
    assert all(0.5 < r < 2 for r in ratios.values()), ratios


def test_the_anatomys_time_follows_llama_7bs_matrix_shapes() -> None:
    # LLaMA-7B, the paper's LoRA modules: per layer q, k, v (4096×4096: one reference SVD
    # each) and gate, up, down (11008×4096 or 4096×11008: 11008/4096 of one each); 32 layers,
    # three decompositions a matrix, 2 s a reference SVD on the GPU.
    per_layer = 3 + 3 * 11008 / 4096
    expected = 32 * per_layer * 3 * 2.0

    plan = plan_of("sweep.anatomy=true", "+plan.anatomy_svd_seconds.gpu=2.0")

    assert plan.anatomy.matrices == 32 * 6
    assert plan.anatomy.device == "gpu"
    assert plan.anatomy.seconds == pytest.approx(expected)
    assert f"anatomy 192 matrices ≈ {format_seconds(expected)} on gpu" in plan.describe()


def test_an_anatomy_without_a_measured_svd_time_says_so() -> None:
    plan = plan_of("sweep.anatomy=true", "anatomy.targets=all_linear", "anatomy.device=cpu")

    assert plan.anatomy.matrices == 32 * 7  # LLaMA-7B's 224 linear matrices
    assert plan.anatomy.seconds is not None  # the CPU's measured time is configured
    no_time = plan_of("sweep.anatomy=true", "plan.anatomy_svd_seconds={}")
    assert "time not estimated (plan.anatomy_svd_seconds.gpu unset" in no_time.describe()
    assert plan_of().anatomy is None  # sweep.anatomy=false: no anatomy in the plan


def test_a_finished_runs_measured_mfu_shows_beside_the_assumed_one(isolated, store, capsys):
    from lorabench import contract
    from lorabench.modeling.trained import training_hash
    from lorabench.sweeping.points import print_plan

    cfg = validate(compose(["method=ft", "sweep.evaluate=false", *isolated]))
    print_plan(cfg)
    assert "measured" not in capsys.readouterr().out  # no run yet: the assumption alone

    experiment = store.create_experiment(cfg.tracking.experiment_name)
    tags = {contract.TAG_CONFIG_HASH: training_hash(cfg)}
    run_id = store.create_run(experiment, tags=tags, run_name=cfg.run_name).info.run_id
    store.set_terminated(run_id, "FINISHED")
    print_plan(cfg)
    assert "measured" not in capsys.readouterr().out  # finished without one (a CPU run)

    store.log_metric(run_id, contract.TRAIN_MFU, 0.31)
    outcome = print_plan(cfg)
    line = capsys.readouterr().out
    assert outcome.status == "skip"
    assert "MFU 0.40 (measured 0.31 by the finished run) × 312 TFLOP/s" in line

    # Planned with FlashAttention-2: the run (logged before the option: sdpa) measured another
    # kernel's MFU, so none is shown; a run that ran the planned kernels shows its own.
    flash = validate(compose(["method=ft", "sweep.evaluate=false", *isolated, FLASH]))
    print_plan(flash)
    line = capsys.readouterr().out
    assert "MFU 0.49 (plan.mfu × 1.24 flash_attention_2) × 312" in line and "measured" not in line
    store.log_param(run_id, "model.attn_implementation", "flash_attention_2")
    print_plan(flash)
    assert "flash_attention_2) (measured 0.31 by the finished run)" in capsys.readouterr().out
