"""Hours of one grid point: the positions a step computes (tokens plus the padding its batching
adds) × the FLOPs a position costs, at an assumed share of the GPUs' peak.

Tokens per sample come from the prepared training set's measured lengths when the cache holds
it (and with them the padding of `data.batching`), else from `plan.mean_tokens_per_sample` and,
for grouped batching, `plan.grouped_nonpad_share`; a plan never downloads or prepares data.
FLOPs count the dense matmuls (the method's FLOPs per token and parameter × parameters, plus a
recomputed forward under activation checkpointing); attention's quadratic term, about 4% of
LLaMA-7B's at 1,024 tokens, is left out.

A run measures the MFU the plan assumes (`train/mfu`) with the same counting: `utilisation`
turns its tokens per second into model FLOP/s over the GPUs' peak.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from lorabench.config.schema import Config, GpuConfig
from lorabench.data import configured_nonpad_share, demo_size
from lorabench.data.cache import cached_set
from lorabench.errors import ModelLoadError
from lorabench.methods import method_for
from lorabench.modeling.base import build_tokenizer
from lorabench.planning.memory import PlanError

SECONDS_PER_HOUR = 3600
TFLOPS = 1e12


@dataclass(frozen=True)
class TokenCount:
    """The training set as a plan sees it."""

    samples: int
    mean_length: float
    """Real tokens per sample."""
    nonpad_share: float
    """Share of the computed positions that are real tokens under the run's batching."""
    source: str
    """Where the figures come from: the prepared set, or the config keys assumed."""

    @property
    def positions(self) -> float:
        """Positions an epoch computes, padding included."""
        return self.samples * self.mean_length / self.nonpad_share


def count_tokens(cfg: Config) -> TokenCount:
    """Samples, tokens per sample and padding share: measured on the prepared set if the cache
    holds it, else as configured."""
    prepared = _prepared_set(cfg)
    if prepared is not None:
        dataset, report = prepared
        share = configured_nonpad_share(cfg, dataset)
        return TokenCount(len(dataset), report.mean_length, share, "measured, prepared set")
    data, max_length = cfg.data, cfg.method.max_length
    if data.demo_fraction is not None:
        samples = demo_size(data)
    else:
        samples = data.num_samples if data.num_samples is not None else data.nominal_samples
    if samples is None:
        raise PlanError(
            f"data={data.name} takes every valid row (data.num_samples=null) and is not prepared "
            "yet: prepare it (python -m lorabench.data ...) or set data.nominal_samples"
        )
    mean = min(cfg.plan.mean_tokens_per_sample, max_length)
    assumed = "plan.mean_tokens_per_sample"
    if data.batching == "padded":
        share = mean / max_length
    elif data.batching == "grouped":
        share = cfg.plan.grouped_nonpad_share
        assumed += ", plan.grouped_nonpad_share"
    else:
        share = 1.0  # packed: no padding at all
    return TokenCount(samples, mean, share, assumed)


def _prepared_set(cfg: Config):
    """The prepared training set from the cache, if the tokenizer and the set are both here."""
    try:
        tokenizer = build_tokenizer(cfg.model, cfg.cache_dir, offline=True)
    except ModelLoadError:
        return None  # no tokenizer here, so nothing was prepared with it here either
    return cached_set(cfg.cache_dir, cfg.data, tokenizer, cfg.method.max_length)


@dataclass(frozen=True)
class TimeEstimate:
    """Hours of one grid point and what they assume."""

    tokens: TokenCount
    flops_per_position: float
    peak_flops: float
    """FLOP/s of one GPU at the run's precision."""
    mfu: float
    """The assumed MFU: `plan.mfu`'s × the kernel options' speedups."""
    world_size: int
    epochs: float
    """Epochs the run trains (fewer when `training.max_steps` stops it early)."""
    kernel_speedups: tuple[tuple[str, float], ...] = ()
    """The kernel options that scale `plan.mfu`'s figure, and by how much (none: 1)."""

    @property
    def kernels(self) -> str:
        """`kernel_speedups` as text, `1.24 flash_attention_2 × 1.2 liger_kernel` (empty: none)."""
        return _listed(self.kernel_speedups)

    @property
    def hours_per_epoch(self) -> float:
        rate = self.world_size * self.peak_flops * self.mfu
        return self.tokens.positions * self.flops_per_position / rate / SECONDS_PER_HOUR

    @property
    def hours(self) -> float:
        return self.hours_per_epoch * self.epochs

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.world_size

    def step_seconds(self, global_batch_size: int) -> float:
        """Seconds of compute of one optimiser step of `global_batch_size` samples."""
        positions = global_batch_size * self.tokens.mean_length / self.tokens.nonpad_share
        rate = self.world_size * self.peak_flops * self.mfu
        return positions * self.flops_per_position / rate


def flops_per_position(cfg: Config, total_params: int) -> float:
    """FLOPs a training step executes per position (a token or padding) of a model of
    `total_params`: the method's FLOPs per token and parameter, plus the forward pass that
    activation checkpointing recomputes."""
    checkpointing = cfg.hardware.activation_checkpointing
    return method_for(cfg.method).step_flops_per_token_per_param(checkpointing) * total_params


def peak_flops(gpu: GpuConfig, precision: str) -> float | None:
    """FLOP/s of one `gpu` at `precision`; None when `gpus.yaml` gives none for it."""
    tflops = gpu.peak_tflops.get(precision)
    return None if tflops is None else tflops * TFLOPS


@dataclass(frozen=True)
class Utilisation:
    """How a run's measured tokens per second become its MFU, counted as the plan counts."""

    flops_per_token: float
    """FLOPs per real token: the FLOPs per position ÷ the share of positions that are real
    (the padding a batch computes costs as much as a token)."""
    peak_flops: float
    """FLOP/s of all the run's GPUs together at its precision."""

    def mfu(self, tokens_per_second: float) -> float:
        """The share of the peak that `tokens_per_second` (non-padding, all GPUs) achieves."""
        return tokens_per_second * self.flops_per_token / self.peak_flops


def utilisation(cfg: Config, total_params: int, nonpad_share: float = 1.0) -> Utilisation | None:
    """The MFU counting of a run of `cfg` (a model of `total_params`, batches whose positions
    are `nonpad_share` real tokens); None where no MFU is measured: on CPU hardware, without
    `hardware.gpu`, or when `gpus.yaml` gives no peak for the run's precision (an MFU of 0
    would read as a measurement)."""
    if cfg.hardware.device != "cuda" or cfg.hardware.gpu is None:
        return None
    gpu = cfg.gpus.get(cfg.hardware.gpu)
    peak = None if gpu is None else peak_flops(gpu, cfg.precision)
    if peak is None:
        return None
    return Utilisation(
        flops_per_token=flops_per_position(cfg, total_params) / nonpad_share,
        peak_flops=cfg.hardware.world_size * peak,
    )


def estimate_time(cfg: Config, total_params: int, gpu: GpuConfig) -> TimeEstimate:
    """Hours per epoch and of the run on `gpu`s (raises PlanError when an assumption is
    missing from the config)."""
    precision, method = cfg.precision, method_for(cfg.method)
    peak = peak_flops(gpu, precision)
    if peak is None:
        raise PlanError(
            f"gpus.{cfg.hardware.gpu}.peak_tflops has no {precision} entry; add it (conf/gpus.yaml)"
        )
    speedups = _kernel_speedups(cfg)
    mfu = _assumed_mfu(cfg, method.family) * math.prod(speedups.values())
    if mfu > 1:
        raise PlanError(
            f"the assumed MFU is {mfu:.2f} (plan.mfu × {_listed(speedups.items())}), above 1: "
            "lower plan.mfu or the kernel speedups"
        )
    tokens = count_tokens(cfg)
    epochs = cfg.method.epochs
    if cfg.training.max_steps > 0:
        steps_per_epoch = math.ceil(tokens.samples / cfg.method.global_batch_size)
        epochs = min(epochs, cfg.training.max_steps / steps_per_epoch)
    return TimeEstimate(
        tokens=tokens,
        flops_per_position=flops_per_position(cfg, total_params),
        peak_flops=peak,
        mfu=mfu,
        world_size=cfg.hardware.world_size,
        epochs=epochs,
        kernel_speedups=tuple((k, v) for k, v in speedups.items() if v != 1),
    )


def _kernel_speedups(cfg: Config) -> dict[str, float]:
    """Tokens per second of the run's kernel options over the default kernels', by option
    (`plan.attention_speedup`, `plan.liger_speedup`); PlanError naming the key when the config
    gives none for an option the run uses."""
    plan, attention = cfg.plan, cfg.model.attn_implementation
    speedups = {attention: plan.attention_speedup.get(attention)}
    if speedups[attention] is None:
        raise PlanError(
            f"plan.attention_speedup has no entry for model.attn_implementation={attention}: add "
            f"+plan.attention_speedup.{attention}=<its tokens/s over sdpa's> "
            "(bench/gpu_check.py measures both)"
        )
    if cfg.training.liger_kernel:
        if plan.liger_speedup is None:
            raise PlanError(
                "plan.liger_speedup=null, and training.liger_kernel=true: set it to Liger's "
                "tokens/s over the run's without (bench/gpu_check.py measures both)"
            )
        speedups["liger_kernel"] = plan.liger_speedup
    return speedups


def _listed(speedups: Iterable[tuple[str, float]]) -> str:
    return " × ".join(f"{speedup:.3g} {option}" for option, speedup in speedups)


def _assumed_mfu(cfg: Config, family: str) -> float:
    """`plan.mfu` of the run's method at its precision; a variant without an entry of its own
    (dora, qlora, ...) takes its `family`'s."""
    name, precision, shares = cfg.method.name, cfg.precision, cfg.plan.mfu
    mfu = shares.get(name, shares.get(family, {})).get(precision)
    if mfu is None:
        raise PlanError(
            f"plan.mfu has no entry for method {name} (nor its family {family}) at {precision}"
        )
    return mfu
