"""Scale-out: grid points in parallel into one MLflow store (the joblib launcher preset), the
Slurm launcher preset (composed, rendered by submitit, and run end to end against stand-ins for
sbatch, srun and sacct: tests/helpers/fake_slurm.py), and a sqlite store shared by several
processes."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from lorabench.config import register_configs
from lorabench.config.schema import TrackingConfig
from lorabench.tracking import runs as tracking
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.fake_slurm import install_fake_slurm
from tests.helpers.runs import CONTRACT_METRICS, sweep_runs

FAST = ("training.max_steps=6", "eval.demo_per_class=1", "eval.decoding.max_new_tokens=4")


def _sweep_args(tmp_path: Path, isolated: list[str], *grid: str) -> list[str]:
    """A demo multirun with tiny settings, each point in its own output directory."""
    args = [a for a in isolated if not a.startswith("training.output_dir=")]
    return [
        "-m",
        "profile=demo",
        *grid,
        *args,
        *FAST,
        f"training.output_dir={tmp_path}/out/${{run_name}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    ]


def _compose_sweep(*overrides: str):
    register_configs()
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("sweep", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.slow
def test_three_points_run_in_parallel_into_one_store(tmp_path: Path, isolated, store) -> None:
    grid = ("method=lora", "data=0.6m,2m,math_0.25m", "hydra/launcher=local_parallel")
    result = run_cli("sweep.py", *_sweep_args(tmp_path, isolated, *grid), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Joblib.Parallel(n_jobs=3" in result.stderr + result.stdout

    parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.tags["grid_points"] == "3"
    assert sorted(r.info.run_name for r in children) == [
        "tiny+lora(0.6m)[steps=6]",
        "tiny+lora(2m)[steps=6]",
        "tiny+lora(math_0.25m)[steps=6]",
    ]
    for run in children:
        assert run.info.status == "FINISHED", run.info.run_name
        missing = (CONTRACT_METRICS | {"eval/average_score"}) - set(run.data.metrics)
        assert not missing, (run.info.run_name, missing)
        # Every logged step arrived: logging_steps=1 at demo scale.
        steps = [m.step for m in store.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6], run.info.run_name
    # Points overlapped in time: they ran in parallel, not one after another (the workers start
    # a few seconds apart, so a quick point may end before the last one starts).
    spans = sorted((r.info.start_time, r.info.end_time) for r in children)
    assert any(b[0] < a[1] for a, b in itertools.combinations(spans, 2)), spans


def test_slurm_preset_composes_into_valid_sbatch_parameters(tmp_path: Path, monkeypatch) -> None:
    cfg = _compose_sweep("hydra/launcher=slurm_gpu8", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 8)
    assert cfg.hardware.num_processes == 8  # torchrun inside the job starts the 8 ranks

    # Translate the preset as the plugin does and let submitit check and render it (submitit
    # only needs an `srun` on PATH to build a Slurm executor).
    fake_srun = tmp_path / "bin" / "srun"
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 0\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{Path(sys.executable).parent}")
    params = OmegaConf.to_container(launcher, resolve=True)
    params.pop("_target_")
    params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        folder=tmp_path / "submitit",
        cluster="slurm",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gpus-per-node=8",
        "--cpus-per-task=32",
        "--mem=400GB",
        "--partition=gpu",
        "--time=2880",
    ):
        assert f"#SBATCH {line}\n" in script


def test_local_parallel_preset_runs_three_jobs_in_processes() -> None:
    launcher = _compose_sweep("hydra/launcher=local_parallel").hydra.launcher
    assert launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert (launcher.n_jobs, launcher.backend) == (3, "loky")


@pytest.mark.slow
def test_slurm_preset_runs_each_point_as_a_job_with_torchrun_inside(
    tmp_path: Path, isolated, store
) -> None:
    env = install_fake_slurm(tmp_path / "fake-slurm")
    # A job array of two points; a 2-rank CPU job stands in for an 8-GPU one (one task per
    # job, torchrun inside).
    grid = ("method=lora,ft", "data=math_0.25m", "hydra/launcher=slurm_gpu8")
    args = _sweep_args(
        tmp_path, isolated, *grid, "hardware.num_processes=2", "hardware.micro_batch_size=8"
    )
    result = run_cli("sweep.py", *args, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == [
        "tiny+ft(math_0.25m)[steps=6]",
        "tiny+lora(math_0.25m)[steps=6]",
    ]
    for run in children:
        assert run.info.status == "FINISHED" and run.data.params["hardware.num_processes"] == "2"
        assert CONTRACT_METRICS | {"eval/average_score"} <= set(run.data.metrics)
    results = (tmp_path / "multirun" / ".submitit").glob("*_*/*_result.pkl")
    assert len(list(results)) == 2  # one Slurm array task per grid point


def _open_new_store(uri: str, barrier, results) -> None:
    barrier.wait()
    try:
        tracking.client_for(TrackingConfig(tracking_uri=uri)).search_experiments()
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        results.put(f"{type(err).__name__}: {err}"[:300])


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Without a lock MLflow's table creation races: "table experiments already exists".
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open_new_store, args=(uri, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert outcomes == ["ok"] * 3


def test_locked_calls_are_retried_and_other_errors_are_not(store_file, monkeypatch) -> None:
    monkeypatch.setattr(tracking, "LOCKED_RETRY_DELAYS", (0.0, 0.0, 0.0))
    client = tracking.client_for(TrackingConfig(tracking_uri=f"sqlite:///{store_file}"))
    calls = []
    real = MlflowClient.search_experiments

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_experiments", flaky)
    assert client.search_experiments() is not None and len(calls) == 3

    def broken(self, *args, **kwargs):
        calls.append(1)
        raise MlflowException("no such experiment")

    calls.clear()
    monkeypatch.setattr(MlflowClient, "search_experiments", broken)
    with pytest.raises(MlflowException, match="no such experiment"):
        client.search_experiments()
    assert len(calls) == 1


@pytest.mark.slow
def test_a_store_locked_past_mlflows_timeout_loses_nothing(store_file, monkeypatch) -> None:
    # MLflow waits 20 s for a lock (PRAGMA busy_timeout) and then fails; the client retries.
    monkeypatch.setattr(tracking, "LOCKED_RETRY_DELAYS", (1.0,) * 10)
    client = tracking.client_for(TrackingConfig(tracking_uri=f"sqlite:///{store_file}"))
    run_id = client.create_run(client.create_experiment("locked")).info.run_id
    locked = threading.Event()

    def hold_lock() -> None:
        con = sqlite3.connect(store_file, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(22)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait()
    started = time.monotonic()
    client.log_batch(run_id, metrics=[Metric("m", float(i), 0, i) for i in range(10)])
    holder.join()
    assert time.monotonic() - started > 20  # it did wait out MLflow's own timeout
    assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(10))
