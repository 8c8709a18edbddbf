"""Multi-node points (`hardware.num_nodes` > 1): each node's place from Slurm, torchrun's c10d
rendezvous on the first node, the shared output directory, a rendezvous that times out, and the
Slurm job the multi-node launcher preset submits (against tests/helpers/fake_slurm.py).

The two-launcher test is the real thing on one machine: two `train.py` processes with Slurm's
variables of nodes 0 and 1, one rank each, meet on 127.0.0.1 and train with DeepSpeed ZeRO-2.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench.config import compose, validate
from lorabench.errors import ConfigError
from lorabench.launching.nodes import (
    NodePlacement,
    NodesError,
    check_shared_output,
    placement_of,
)
from lorabench.launching.topology import launch_command
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.fake_slurm import install_fake_slurm
from tests.helpers.runs import runs_of

SLURM_JOB = "4242"
# Demo global batch 16 = micro batch 2 × 2 ranks × gradient accumulation 4, as in
# tests/test_distributed.py, whose one-node run this is compared with.
ZERO2_LORA = [
    "profile=demo",
    "method=lora",
    "data=math_0.25m",
    "hardware.deepspeed=zero2",
    "hardware.micro_batch_size=2",
    "training.max_steps=3",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm(node: int, nodes: int = 2, nodelist: str = "127.0.0.1,127.0.0.1") -> dict[str, str]:
    """The variables Slurm gives the task on `node`."""
    return {
        "SLURM_JOB_ID": SLURM_JOB,
        "SLURM_NODEID": str(node),
        "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_JOB_NODELIST": nodelist,
    }


def test_a_node_takes_its_rank_and_the_rendezvous_host_from_slurm(monkeypatch) -> None:
    for name, value in _slurm(1, nodelist="gpu[07-08]").items():
        monkeypatch.setenv(name, value)
    cfg = validate(
        compose(
            [
                "hardware.num_nodes=2",
                "hardware.rendezvous_port=29555",
                "hardware.rendezvous_timeout=90",
            ]
        )
    )
    node = placement_of(cfg.hardware)
    assert node == NodePlacement(rank=1, count=2, host="gpu07", job_id=SLURM_JOB)
    command = launch_command(cfg, "train.py", ["method=ft"], node)
    assert command[-2:] == ["train.py", "method=ft"]
    for argument in (
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu07:29555",
        f"--rdzv_id={SLURM_JOB}",
        "--rdzv_conf=join_timeout=90,read_timeout=90,is_host=false",
    ):
        assert argument in command
    assert "--standalone" not in command


def test_several_nodes_outside_slurm_or_on_another_count_stop_naming_why(monkeypatch) -> None:
    for name in _slurm(0):
        monkeypatch.delenv(name, raising=False)
    cfg = validate(compose(["hardware.num_nodes=2"]))
    with pytest.raises(ConfigError, match="SLURM_NODEID.*hydra/launcher=slurm_multinode"):
        placement_of(cfg.hardware)
    for name, value in _slurm(0, nodes=4).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="hardware.num_nodes=2 .*SLURM_JOB_NUM_NODES=4"):
        placement_of(cfg.hardware)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("hardware.launcher=deepspeed", "hardware.launcher"),
        ("hardware.rendezvous_port=0", "hardware.rendezvous_port"),
        ("hardware.rendezvous_timeout=0", "hardware.rendezvous_timeout"),
        ("hardware.shared_path_timeout=-1", "hardware.shared_path_timeout"),
    ],
)
def test_multi_node_settings_are_validated(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(compose(["hardware.num_nodes=2", override]))


def test_an_output_directory_the_other_node_does_not_see_stops_it_naming_the_path(
    tmp_path: Path,
) -> None:
    first = NodePlacement(rank=0, count=2, host="127.0.0.1", job_id=SLURM_JOB)
    second = NodePlacement(rank=1, count=2, host="127.0.0.1", job_id=SLURM_JOB)
    shared = tmp_path / "shared" / "run"
    check_shared_output(shared, first, timeout=1)
    check_shared_output(shared, second, timeout=1)  # node 0's marker is there: passes at once
    local = tmp_path / "node1-local" / "run"  # the same path as node 1 would mount it: empty
    with pytest.raises(
        NodesError, match=f"node 1 of 2 .*training.output_dir={local} is not shared"
    ):
        check_shared_output(local, second, timeout=0.5)


def _train_on_node(node: int, overrides: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **_slurm(node)}
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *overrides],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _losses(store) -> list[float]:
    (run,) = runs_of(store)
    assert run.info.status == "FINISHED"
    history = store.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3]
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.slow
def test_two_nodes_train_to_the_loss_of_one_node_with_two_processes(
    tmp_path: Path, isolated: list[str], store
) -> None:
    from mlflow.tracking import MlflowClient

    # One node, two processes (torchrun --standalone), into a store and directory of its own.
    one = tmp_path / "one-node"
    one.mkdir()
    single = [*ZERO2_LORA, "hardware.num_processes=2"]
    single += [o.replace(str(tmp_path), str(one)) for o in isolated]
    proc = run_cli("train.py", *single, cwd=one, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    expected = _losses(MlflowClient(f"sqlite:///{one}/mlflow.db"))

    # Two nodes of one rank each, meeting on 127.0.0.1 (node 0 hosts the rendezvous).
    nodes = [*ZERO2_LORA, "hardware.num_processes=1", "hardware.num_nodes=2", *isolated]
    nodes += [f"hardware.rendezvous_port={_free_port()}", "hardware.rendezvous_timeout=300"]
    procs = [_train_on_node(node, nodes, tmp_path) for node in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-5000:]
    runs = runs_of(store)
    assert len(runs) == 1, "only global rank 0 opens a run"
    assert runs[0].data.params["hardware.num_nodes"] == "2"
    assert _losses(store) == pytest.approx(expected, rel=1e-5)
    assert any((tmp_path / "out").glob(".nodes-share-*")), "node 0 marked the output directory"


@pytest.mark.slow
def test_a_rendezvous_that_times_out_fails_the_point_and_the_sweep_goes_on(
    tmp_path: Path, isolated: list[str], store
) -> None:
    # Only node 0 starts: no other node ever joins its rendezvous.
    port = _free_port()
    args = [a for a in isolated if not a.startswith("training.output_dir=")]
    proc = run_cli(
        "sweep.py",
        "-m",
        "data=0.6m,math_0.25m",
        *ZERO2_LORA[:2],
        *ZERO2_LORA[3:],
        *args,
        "hardware.num_processes=1",
        "hardware.num_nodes=2",
        f"hardware.rendezvous_port={port}",
        "hardware.rendezvous_timeout=3",
        f"training.output_dir={tmp_path}/out/${{run_name}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        cwd=tmp_path,
        env=_slurm(0),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    # Both points were tried and failed; each says why in the sweep's log.
    log = "\n".join(p.read_text() for p in (tmp_path / "multirun").rglob("*.log"))
    errors = re.findall(r"node 0 of 2 \(.*?\): the 2 nodes did not meet at the rendezvous", log)
    assert len(errors) == 2, log[-3000:]
    assert f"127.0.0.1:{port} within 3 s" in log
    assert "failed" in proc.stdout and "tiny+lora(math_0.25m)" in proc.stdout
    (parent,) = runs_of(store)  # no point opened a run: no rank ever started
    assert parent.info.status == "FAILED"


@pytest.mark.slow
def test_the_multinode_preset_submits_one_task_a_node(tmp_path: Path, isolated: list[str]) -> None:
    env = install_fake_slurm(tmp_path / "fake-slurm")
    args = [a for a in isolated if not a.startswith("training.output_dir=")]
    # A plan: each node's task runs the grid point without GPUs, quickly.
    proc = run_cli(
        "sweep.py",
        "-m",
        "method=lora",
        "hardware=gpu8x4",
        "hardware.num_nodes=2",
        "sweep.plan=true",
        "hydra/launcher=slurm_multinode",
        "hydra.launcher.partition=gpu",
        *args,
        f"training.output_dir={tmp_path}/out/${{run_name}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (script,) = (tmp_path / "slurm-state").glob("*.sbatch")
    text = script.read_text()
    for line in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=8",
        "--partition=gpu",
        "--requeue",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}\n" in text, text
    command = text.strip().splitlines()[-1]
    assert command.startswith("srun --unbuffered --output")
    assert command.endswith(
        f"{sys.executable} -u -m submitit.core._submit {tmp_path}/multirun/.submitit/%j"
    )
    # One task a node ran the point; node 0 alone recorded its outcome.
    results = sorted(p.name for p in (tmp_path / "multirun" / ".submitit").rglob("*_result.pkl"))
    assert [r.split("_")[-2] for r in results] == ["0", "1"]
    assert len(list((tmp_path / "multirun" / "point_outcomes").glob("*.json"))) == 1
    assert "1 grid point: 1 train" in proc.stdout
    logs = sorted((tmp_path / "multirun" / ".submitit").rglob("*_log.out"))
    assert [log.name.split("_")[-2] for log in logs] == ["0", "1"]
    for log in logs:  # every node planned the point on the job's 2 × 8 GPUs
        assert "llama-7b+lora(2m): train" in log.read_text()
        assert "on 16×h100-80gb" in log.read_text()
