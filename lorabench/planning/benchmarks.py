"""The benchmark stage's time in a plan line (`eval.benchmarks`): the forward FLOPs of its items
(`plan.benchmark_items` × `plan.benchmark_tokens_per_item` × 2 × the model's parameters) at
`plan.benchmark_mfu` of one GPU's peak, the stage running in the sweep's one process."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.config.schema import Config, GpuConfig
from lorabench.console import format_seconds
from lorabench.planning.timing import peak_flops

FORWARD_FLOPS_PER_PARAM = 2
"""FLOPs per token and parameter of a forward pass."""


@dataclass(frozen=True)
class BenchmarkEstimate:
    """A point's benchmark stage: its items and, on a GPU type, its time."""

    tasks: tuple[str, ...]
    items: int
    unsized: tuple[str, ...]
    """Tasks `plan.benchmark_items` has no size for (left out of `items`)."""
    seconds: float | None
    """None without a GPU type (`hardware.gpu`)."""

    def describe(self) -> str:
        """The plan line's part: `benchmarks ceval-valid+cmmlu 12,928 items ≈ 6m on 1 GPU`."""
        head = f"benchmarks {'+'.join(self.tasks)} {self.items:,} items"
        if self.seconds is not None:
            head += f" ≈ {format_seconds(self.seconds)} on 1 GPU (forward FLOPs; generation slower)"
        if self.unsized:
            head += f"; not sized: {', '.join(self.unsized)} (plan.benchmark_items)"
        return head


def estimate_benchmarks(
    cfg: Config, total_params: int, gpu: GpuConfig | None
) -> BenchmarkEstimate | None:
    """The benchmark stage of a point that evaluates with `eval.benchmarks`; else None."""
    tasks = tuple(cfg.eval.benchmarks)
    if not tasks or not cfg.sweep.evaluate:
        return None
    sizes = cfg.plan.benchmark_items
    items = sum(sizes.get(t, 0) for t in tasks)
    unsized = tuple(t for t in tasks if t not in sizes)
    peak = None if gpu is None else peak_flops(gpu, "bf16")  # evaluation loads bf16 on a GPU
    seconds = None
    if peak is not None:
        work = items * cfg.plan.benchmark_tokens_per_item * FORWARD_FLOPS_PER_PARAM * total_params
        seconds = work / (peak * cfg.plan.benchmark_mfu)
    return BenchmarkEstimate(tasks, items, unsized, seconds)
