"""Process topology: which rank this is, and starting torchrun when the hardware asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from lorabench.config.schema import Config, ConfigError


@dataclass(frozen=True)
class DistEnv:
    """Rank and world size as set by torchrun / deepspeed (defaults: one process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environ(cls) -> DistEnv:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )

    @property
    def is_main(self) -> bool:
        """Only the main process talks to MLflow and prints summaries."""
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """Whether a distributed launcher started this process."""
        return "WORLD_SIZE" in os.environ


def needs_launcher(cfg: Config, env: DistEnv) -> bool:
    """Several processes, or DeepSpeed (MPI fallback under plain python), need torchrun."""
    wants = cfg.hardware.world_size > 1 or cfg.hardware.deepspeed is not None
    return wants and not env.launched


def check_world_size(cfg: Config, env: DistEnv) -> None:
    """The derived gradient accumulation is only right if the launch matches the hardware config."""
    if env.launched and env.world_size != cfg.hardware.world_size:
        raise ConfigError(
            f"hardware.num_processes × hardware.num_nodes = {cfg.hardware.world_size} but this "
            f"job was launched with WORLD_SIZE={env.world_size}; make them agree"
        )


def relaunch_under_torchrun(cfg: Config, argv: list[str]) -> int:
    """Run this same command again under torchrun on this node; returns its exit code.

    Multi-node jobs are started by the cluster (e.g. the Slurm launcher), one torchrun per node.
    """
    if cfg.hardware.num_nodes > 1:
        raise ConfigError(
            f"hardware.num_nodes={cfg.hardware.num_nodes}: start one torchrun per node "
            "(e.g. through the Slurm launcher); train.py only starts single-node jobs itself"
        )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={cfg.hardware.num_processes}",
        *argv,
    ]
    return subprocess.call(cmd)
