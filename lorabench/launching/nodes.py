"""Multi-node jobs (`hardware.num_nodes` > 1): which node this process runs on, where the nodes
meet, and the checks before their ranks start.

One launching process runs on every node (a Slurm task: `hydra/launcher=slurm_multinode` starts
one a node); each starts torchrun for its node's `hardware.num_processes` ranks, and the
torchruns of all nodes meet in a c10d rendezvous hosted by node 0, on the job's first host. The
node comes from Slurm's variables of the task (`SLURM_NODEID`, `SLURM_JOB_NUM_NODES`,
`SLURM_JOB_NODELIST`, `SLURM_JOB_ID`), parsed as submitit parses them.

Before torchrun, node 0 writes a marker into the run's output directory and every other node
waits (`hardware.shared_path_timeout`) to see it: an output directory that is not shared stops
each node before training, naming the path. A rendezvous that does not complete within
`hardware.rendezvous_timeout` ends each node's torchrun, and each node says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from submitit.slurm.slurm import SlurmJobEnvironment

from lorabench.config.schema import HardwareConfig
from lorabench.errors import ConfigError, LorabenchError

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_NODEID", "SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST")
"""What a Slurm task's environment tells a node about its job."""
MARKER_PREFIX = ".nodes-share-"
"""Node 0's marker in the output directory, one per rendezvous (`<prefix><job id>`)."""
MARKER_POLL_SECONDS = 1.0
RENDEZVOUS_FAILURES = ("RendezvousTimeoutError", "RendezvousConnectionError")
"""What torchrun's elastic agent raises when the nodes do not all meet."""


class NodesError(LorabenchError):
    """The nodes of a multi-node job cannot train together (the message says which node)."""


@dataclass(frozen=True)
class NodePlacement:
    """This node's place in a multi-node job."""

    rank: int
    """0 for the first node, which hosts the rendezvous."""
    count: int
    host: str
    """The rendezvous host: the job's first node."""
    job_id: str
    """The rendezvous id: the Slurm job (one array task's own id)."""

    @classmethod
    def from_slurm(cls, hardware: HardwareConfig) -> NodePlacement:
        """The placement Slurm gives this task (its environment); raises ConfigError outside a
        Slurm task of `hardware.num_nodes` nodes."""
        missing = [name for name in SLURM_VARIABLES if not os.environ.get(name)]
        if missing:
            raise ConfigError(
                f"hardware.num_nodes={hardware.num_nodes}: each node's rank and the rendezvous "
                f"host come from Slurm, and {', '.join(missing)} is not set; submit through "
                "hydra/launcher=slurm_multinode (one task a node), or start torchrun on each "
                "node yourself (docs/scale.md)"
            )
        job = SlurmJobEnvironment()
        if job.num_nodes != hardware.num_nodes:
            raise ConfigError(
                f"hardware.num_nodes={hardware.num_nodes} but this Slurm job has "
                f"SLURM_JOB_NUM_NODES={job.num_nodes}; make them agree"
            )
        return cls(job.node, job.num_nodes, job.hostnames[0], job.job_id)

    @property
    def is_first(self) -> bool:
        """Node 0: it checks the shared output directory, evaluates, and records the outcome."""
        return self.rank == 0

    def describe(self) -> str:
        """`node 1 of 2 (host)`, for errors."""
        return f"node {self.rank} of {self.count} ({socket.gethostname()})"


def placement_of(hardware: HardwareConfig) -> NodePlacement | None:
    """This process's node in a multi-node job; None for a one-node job."""
    if hardware.num_nodes == 1:
        return None
    return NodePlacement.from_slurm(hardware)


def torchrun_node_arguments(hardware: HardwareConfig, node: NodePlacement) -> list[str]:
    """torchrun's arguments for this node's part of a c10d rendezvous: node 0 hosts its store,
    every node waits `hardware.rendezvous_timeout` for the others to join."""
    timeout = int(hardware.rendezvous_timeout)
    host = "true" if node.is_first else "false"
    return [
        f"--nnodes={node.count}",
        f"--node_rank={node.rank}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={node.host}:{hardware.rendezvous_port}",
        f"--rdzv_id={node.job_id}",
        # read_timeout: how long a node waits for node 0's store to answer at all.
        f"--rdzv_conf=join_timeout={timeout},read_timeout={timeout},is_host={host}",
    ]


def check_shared_output(output_dir: Path, node: NodePlacement, timeout: float) -> None:
    """Node 0 writes a marker into `output_dir`; every other node waits up to `timeout` seconds
    to see it, else raises NodesError naming the path (checkpoints, the run id and the model are
    written there by whichever node holds global rank 0)."""
    marker = output_dir / f"{MARKER_PREFIX}{node.job_id}"
    if node.is_first:
        output_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{socket.gethostname()}\n")
        return
    deadline = time.monotonic() + timeout
    while not marker.is_file():
        if time.monotonic() > deadline:
            raise NodesError(
                f"{node.describe()}: training.output_dir={output_dir} is not shared between the "
                f"nodes: node 0's marker {marker.name} did not appear there within {timeout:g} s "
                "(hardware.shared_path_timeout); put training.output_dir on a filesystem every "
                "node mounts"
            )
        time.sleep(MARKER_POLL_SECONDS)


def run_node(command: Sequence[str], node: NodePlacement, hardware: HardwareConfig) -> int:
    """Run this node's torchrun; its output passes through as it comes. Raises NodesError when
    the nodes did not meet (the rendezvous timed out or its host never answered); else returns
    torchrun's exit code."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    seen: list[str] = []
    copier = threading.Thread(target=_copy_watching, args=(proc.stderr, sys.stderr, seen))
    copier.start()
    code = proc.wait()
    copier.join()
    if code and seen:
        endpoint = f"{node.host}:{hardware.rendezvous_port}"
        raise NodesError(
            f"{node.describe()}: the {node.count} nodes did not meet at the rendezvous "
            f"{endpoint} within {hardware.rendezvous_timeout:g} s ({seen[0]}; "
            "hardware.rendezvous_timeout): check that every node of the job started and can "
            f"reach {endpoint}"
        )
    return code


def _copy_watching(source: IO[bytes], sink: IO[str], seen: list[str]) -> None:
    """Copy `source` to `sink` chunk by chunk (progress bars stay live), noting a rendezvous
    failure's name in `seen`."""
    tail = ""
    for chunk in iter(lambda: source.read1(65536), b""):
        text = chunk.decode(errors="replace")
        sink.write(text)
        sink.flush()
        window = tail + text  # a name may straddle two chunks
        seen.extend(name for name in RENDEZVOUS_FAILURES if name in window and name not in seen)
        tail = window[-64:]
