"""The network between the nodes of a multi-node grid point: the bytes its collectives move out
of a node per optimiser step, against the compute of a step.

The hours (`timing`) assume the collectives hide under compute. Across nodes they run at the
network's bandwidth (`plan.internode_gbit_per_s` per node), not NVLink's, so the plan line of a
multi-node point shows both times and warns when the collectives would take longer.

Per micro batch, ZeRO-3 gathers every 16-bit weight twice (forward and backward) and
reduce-scatters the trainable gradients; ZeRO-2 reduce-scatters the gradients each micro batch
and gathers the updated weights once a step; without partitioning (ZeRO-0/1, DDP) the gradients
are all-reduced once a step (twice their size). A ring collective over all ranks moves
(ranks − 1) / ranks of the data out of every node, spread over its links.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.config.schema import Config
from lorabench.modeling.base import ParameterCounts
from lorabench.planning.memory import FP32_BYTES, HALF_BYTES, ZeroSettings

BITS_PER_BYTE = 8
GIGA = 1e9


@dataclass(frozen=True)
class NetworkEstimate:
    """Seconds per optimiser step of the inter-node collectives and of the compute."""

    bytes_per_step: float
    """Bytes each node sends to the others per optimiser step."""
    gbit_per_s: float
    compute_seconds: float
    nodes: int

    @property
    def seconds(self) -> float:
        return self.bytes_per_step * BITS_PER_BYTE / (self.gbit_per_s * GIGA)

    @property
    def bound(self) -> bool:
        """Whether the collectives outlast the compute (the hours are then too low)."""
        return self.seconds > self.compute_seconds

    def describe(self) -> str:
        """The plan line's network part."""
        figures = (
            f"{self.nodes} nodes: {self.bytes_per_step / GIGA:.3g} GB a step out of each node, "
            f"{self.seconds:.3g} s at plan.internode_gbit_per_s={self.gbit_per_s:g} against "
            f"{self.compute_seconds:.3g} s of compute"
        )
        if not self.bound:
            return figures
        return (
            f"{figures}; WARNING: the network, not the GPUs, sets the pace and the hours are "
            "too low (a faster network, or more tokens a micro batch: "
            "hardware.micro_batch_size with a larger method.global_batch_size)"
        )


def step_bytes(
    counts: ParameterCounts, zero: ZeroSettings, precision: str, accumulation: int
) -> float:
    """Bytes of the collectives of one optimiser step (before the ring's share)."""
    word = FP32_BYTES if precision == "fp32" else HALF_BYTES
    trainable = counts.trainable * word
    if zero.deepspeed and zero.stage >= 3:
        return accumulation * (2 * counts.total * word + trainable)
    if zero.deepspeed and zero.stage == 2:
        return accumulation * trainable + trainable
    return 2 * trainable


def estimate_network(
    cfg: Config, counts: ParameterCounts, zero: ZeroSettings, compute_seconds: float
) -> NetworkEstimate | None:
    """The inter-node collectives of a step of `cfg` (None on one node)."""
    hw = cfg.hardware
    if hw.num_nodes == 1:
        return None
    ranks = hw.world_size
    total = step_bytes(counts, zero, cfg.precision, cfg.gradient_accumulation_steps())
    return NetworkEstimate(
        bytes_per_step=total * (ranks - 1) / ranks,
        gbit_per_s=cfg.plan.internode_gbit_per_s,
        compute_seconds=compute_seconds,
        nodes=hw.num_nodes,
    )
