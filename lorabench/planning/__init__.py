"""Planning a grid point before it runs (`sweep.plan=true`): memory per GPU against the GPU's
(and the setting that would make it fit), and hours, each with what it assumes.

What a plan cannot measure it takes from the `plan` config section.

    estimate = estimate_point(cfg)      # nothing is downloaded, prepared or trained
    estimate.memory.fits, estimate.fix, estimate.time.hours_per_epoch
    print(estimate.describe())

`memory` explains the memory model (model states by ZeRO stage and offload, activations measured
on the meta device), `timing` the time model (measured or assumed tokens, padding, MFU),
`network` a multi-node point's collectives between nodes against its compute. A point
whose FINISHED run measured its MFU (`train/mfu`, counted as the plan counts) shows it beside the
assumed one (`PointEstimate.measured_mfu`, which the sweep fills in).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.config.schema import Config
from lorabench.planning.anatomy import AnatomyEstimate, estimate_anatomy
from lorabench.planning.benchmarks import BenchmarkEstimate, estimate_benchmarks
from lorabench.planning.memory import (
    GIB,
    Fix,
    MemoryEstimate,
    ModelProfile,
    PlanError,
    Setting,
    estimate_memory,
    find_fix,
    model_states,
    profile_model,
)
from lorabench.planning.network import NetworkEstimate, estimate_network
from lorabench.planning.timing import (
    TimeEstimate,
    TokenCount,
    Utilisation,
    count_tokens,
    estimate_time,
    flops_per_position,
    peak_flops,
    utilisation,
)

__all__ = [
    "GIB",
    "Fix",
    "MemoryEstimate",
    "ModelProfile",
    "NetworkEstimate",
    "PlanError",
    "PointEstimate",
    "Setting",
    "TimeEstimate",
    "TokenCount",
    "Utilisation",
    "count_tokens",
    "estimate_memory",
    "estimate_network",
    "estimate_point",
    "estimate_time",
    "find_fix",
    "flops_per_position",
    "model_states",
    "peak_flops",
    "profile_model",
    "utilisation",
]


@dataclass(frozen=True)
class PointEstimate:
    """A grid point's plan: memory per GPU, a fix when it does not fit, hours."""

    gpu: str | None
    """`hardware.gpu`; None on CPU hardware, where neither memory nor time is checked."""
    memory: MemoryEstimate
    fix: Fix | None
    """When it does not fit: the cheapest setting found that makes it fit (None: none does)."""
    time: TimeEstimate | None
    checkpointing: bool
    anatomy: AnatomyEstimate | None = None
    """With `sweep.anatomy`: the weight-update measurement after the point's evaluation."""
    network: NetworkEstimate | None = None
    """A multi-node point with a GPU type: its inter-node collectives against its compute."""
    benchmarks: BenchmarkEstimate | None = None
    """With `eval.benchmarks`: the benchmark stage after the point's judged evaluation."""
    measured_mfu: float | None = None
    """The MFU the point's FINISHED run measured (`train/mfu`), shown beside the assumed one;
    None: no such run, or one that measured none (CPU hardware)."""

    def describe(self) -> str:
        """The plan line's figures: memory, hours, verdict, assumptions (and the anatomy's)."""
        anatomy = "" if self.anatomy is None else f" | {self.anatomy.describe()}"
        bench = "" if self.benchmarks is None else f" | {self.benchmarks.describe()}"
        return self._training() + anatomy + bench

    def _training(self) -> str:
        m = self.memory
        parts = (
            f"weights {_gib(m.states.weights)}, gradients {_gib(m.states.gradients)}, "
            f"optimizer {_gib(m.states.optimizer)}, activations {_gib(m.activations)}, "
            f"overhead {_gib(m.overhead)}"
        )
        if m.available is None:
            return (
                f"{_gib(m.total)} GiB per process ({parts}); memory and hours not checked: "
                "no GPU type (hardware.gpu=null)"
            )
        t = self.time
        assert t is not None  # a GPU type gives both
        memory = f"{_gib(m.total)}/{_gib(m.available)} GiB per GPU ({parts})"
        hours = (
            f"{t.hours_per_epoch:.3g} h/epoch, {t.hours:.3g} h, {t.gpu_hours:.3g} GPU hours "
            f"on {t.world_size}×{self.gpu}"
        )
        network = "" if self.network is None else f" | {self.network.describe()}"
        return f"{memory} | {hours} | {self.verdict()}{network} | assumes {self._assumptions()}"

    def verdict(self) -> str:
        """`fits`, or what would make it fit."""
        if self.memory.fits is not False:
            return "fits"
        if self.fix is None:
            return (
                "DOES NOT FIT, and no setting tried fits (activation checkpointing, a smaller "
                "micro batch, the DeepSpeed presets up to ZeRO-3 with offload)"
            )
        overrides = " ".join(self.fix.overrides)
        return f"DOES NOT FIT; fits with {overrides} ({_gib(self.fix.memory.total)} GiB)"

    def _assumptions(self) -> str:
        t = self.time
        assert t is not None
        tokens = t.tokens
        recompute = " with the recomputed forward" if self.checkpointing else ""
        return (
            f"{tokens.samples:,} samples × {tokens.mean_length:.0f} tokens, "
            f"{tokens.nonpad_share:.0%} of positions real ({tokens.source}), "
            f"{t.flops_per_position / 1e9:.3g} GFLOP/position{recompute}, "
            f"MFU {t.mfu:.2f}{self._kernels()}{self._measured()} × "
            f"{t.peak_flops / 1e12:.4g} TFLOP/s"
        )

    def _kernels(self) -> str:
        # The kernel options' share of the assumed MFU: plan.mfu's figure is the default's.
        kernels = self.time.kernels if self.time is not None else ""
        return f" (plan.mfu × {kernels})" if kernels else ""

    def _measured(self) -> str:
        # Beside the assumption it checks: an assumed MFU far from the measured one skews hours.
        if self.measured_mfu is None:
            return ""
        return f" (measured {self.measured_mfu:.2f} by the finished run)"


def _gib(size: float) -> str:
    # Tenths of a GiB for GPU-sized figures; two significant digits for the demo's tiny ones.
    gib = size / GIB
    return f"{gib:.1f}" if gib >= 1 or gib == 0 else f"{gib:.2g}"


def estimate_point(cfg: Config) -> PointEstimate:
    """Memory, a fix when it does not fit, and hours of one grid point.

    Raises PlanError (its message naming what to set) when the point cannot be planned: its
    architecture cannot be read offline, or an assumption is missing from the config.
    """
    profile = profile_model(cfg)
    gpu = cfg.gpus[cfg.hardware.gpu] if cfg.hardware.gpu is not None else None
    available = None if gpu is None else gpu.memory_gib * GIB
    memory = estimate_memory(cfg, profile, Setting.of(cfg), available)
    fix = find_fix(cfg, profile, available) if memory.fits is False else None
    time = None if gpu is None else estimate_time(cfg, profile.counts.total, gpu)
    network = None
    if time is not None:
        step = time.step_seconds(cfg.method.global_batch_size)
        network = estimate_network(cfg, profile.counts, Setting.of(cfg).zero, step)
    anatomy = None
    if cfg.sweep.anatomy:
        anatomy = estimate_anatomy(cfg, profile.linear_shapes, profile.model_type)
    checkpointing = cfg.hardware.activation_checkpointing
    bench = estimate_benchmarks(cfg, profile.counts.total, gpu)
    return PointEstimate(
        cfg.hardware.gpu,
        memory,
        fix,
        time,
        checkpointing,
        anatomy,
        network=network,
        benchmarks=bench,
    )
