"""Process topology: which rank this is, and starting the launcher the hardware names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from lorabench.config.schema import Config, HardwareConfig
from lorabench.errors import ConfigError
from lorabench.launching.nodes import (
    NodePlacement,
    check_shared_output,
    placement_of,
    run_node,
    torchrun_node_arguments,
)


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


def set_cpu_threads(hardware: HardwareConfig) -> None:
    """Apply `hardware.cpu_threads` to this process (None keeps PyTorch's default)."""
    if hardware.cpu_threads is not None:
        torch.set_num_threads(hardware.cpu_threads)


def needs_launcher(cfg: Config, env: DistEnv) -> bool:
    """Several processes, or DeepSpeed (MPI fallback under plain python), need a launcher."""
    wants = cfg.hardware.world_size > 1 or cfg.hardware.deepspeed is not None
    return wants and not env.launched


def check_world_size(cfg: Config, env: DistEnv) -> None:
    """The derived gradient accumulation is only right if the launch matches the hardware config."""
    if env.launched and env.world_size != cfg.hardware.world_size:
        raise ConfigError(
            f"hardware.num_processes × hardware.num_nodes = {cfg.hardware.world_size} but this "
            f"job was launched with WORLD_SIZE={env.world_size}; make them agree"
        )


def launch_command(
    cfg: Config, script: str, overrides: list[str], node: NodePlacement | None = None
) -> list[str]:
    """The command that runs `script` with these Hydra overrides under the hardware's launcher:
    this node's part of a multi-node job when `node` is given (torchrun only: validation
    refuses another launcher with several nodes)."""
    hw = cfg.hardware
    if hw.launcher == "deepspeed":
        # --no_local_rank: Hydra would reject the --local_rank argument deepspeed adds.
        return [
            "deepspeed",
            "--no_local_rank",
            f"--num_gpus={hw.num_processes}",
            script,
            *overrides,
        ]
    # Validation allows only torchrun here (plain python cannot run several processes).
    where = ["--standalone"] if node is None else torchrun_node_arguments(hw, node)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        f"--nproc_per_node={hw.num_processes}",
        script,
        *overrides,
    ]


def launch_ranks(cfg: Config, script: str, overrides: list[str]) -> int:
    """Run the training script `script` with these Hydra overrides under the hardware's
    launcher, one process a rank of this node; returns the launcher's exit code.

    A demo base the ranks load is pretrained here first, once, rather than by every rank. On
    several nodes (`hardware.num_nodes`), this node's place comes from Slurm, the output
    directory must be shared (`check_shared_output`) and a rendezvous that fails raises
    NodesError.
    """
    from lorabench.demo.pretraining import resolved_model  # it trains: only when launching

    node = placement_of(cfg.hardware)
    resolved_model(cfg)
    if node is None:
        return subprocess.call(launch_command(cfg, script, overrides))
    check_shared_output(Path(cfg.training.output_dir), node, cfg.hardware.shared_path_timeout)
    return run_node(launch_command(cfg, script, overrides, node), node, cfg.hardware)


def is_first_node(hardware: HardwareConfig) -> bool:
    """Whether this launching process is a one-node job's or node 0 of a multi-node job (the
    one that evaluates a trained point and records its outcome)."""
    try:
        node = placement_of(hardware)
    except ConfigError:
        return True  # outside Slurm this process is the only one (its point failed saying so)
    return node is None or node.is_first


def _terminate_as_interrupt(signum, frame):
    # torchrun sends SIGTERM to every rank when one fails; turning it into KeyboardInterrupt lets
    # the tracked run close as KILLED instead of staying RUNNING.
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def training_process(cfg: Config) -> Iterator[None]:
    """Process-wide state a training needs, restored afterwards (the next point of an
    in-process sweep starts from a clean process): SIGTERM as an interrupt, and DeepSpeed's
    accelerator pinned to the CPU for a CPU config."""
    previous_handler = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    previous_accelerator = os.environ.get("DS_ACCELERATOR")
    if cfg.hardware.deepspeed is not None and cfg.hardware.device == "cpu":
        # DeepSpeed picks its accelerator once, by probing the machine: a CPU config on a box
        # with a CUDA build of torch would get the CUDA one while the Trainer keeps the model on
        # the CPU. Nothing has asked DeepSpeed yet at this point (the Trainer does).
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if previous_accelerator is None:
            os.environ.pop("DS_ACCELERATOR", None)
        else:
            os.environ["DS_ACCELERATOR"] = previous_accelerator
