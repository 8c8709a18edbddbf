"""A real `mlflow server` (the README's team set-up): two sweeps at once deliver every run,
step and artifact; a server that goes away fails the run clearly; one that is not there stops
training before it starts."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Dataset, DatasetInput
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.config.schema import TrackingConfig
from lorabench.errors import ConfigError
from lorabench.tracking.runs import client_for
from lorabench.training import train
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.mlflow_server import free_port, running_server
from tests.helpers.runs import runs_of


def readme_server_command() -> list[str]:
    """The README's `mlflow server` command, as written there."""
    text = (REPO_ROOT / "README.md").read_text()
    (line,) = re.findall(r"^mlflow server --backend-store-uri sqlite:.*$", text, re.MULTILINE)
    return shlex.split(line)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """The README's server, run in tmp_path (its relative store and artifact paths land there),
    on 127.0.0.1 and a free port instead of 0.0.0.0:5000; its URI and process."""
    port = free_port()
    command = readme_server_command()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    command[0] = str(Path(sys.executable).with_name("mlflow"))
    root = tmp_path / "server"
    root.mkdir()
    with running_server(command, root, f"http://127.0.0.1:{port}") as running:
        yield running


def _args(tmp_path: Path, isolated: list[str], *extra: str) -> list[str]:
    kept = [a for a in isolated if not a.startswith(("tracking.", "training.output_dir="))]
    return [*kept, f"training.output_dir={tmp_path}/out/${{run_name}}", *extra]


@pytest.mark.slow
def test_two_sweeps_at_once_against_a_server(tmp_path: Path, isolated, server) -> None:
    uri, _ = server
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": uri}
    steps = 3
    common = _args(
        tmp_path,
        isolated,
        f"training.max_steps={steps}",
        "eval.demo_per_class=1",
        "eval.decoding.max_new_tokens=4",
    )
    sweeps = []
    for method in ("lora", "ft"):
        log = (tmp_path / f"{method}.log").open("w")
        command = [sys.executable, str(REPO_ROOT / "sweep.py"), "-m", "profile=demo"]
        command += [f"method={method}", "data=math_0.25m", *common]
        sweeps.append(
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    for method, proc in zip(("lora", "ft"), sweeps, strict=True):
        assert proc.wait(timeout=900) == 0, (tmp_path / f"{method}.log").read_text()[-4000:]

    client = MlflowClient(uri)
    runs = runs_of(client)
    parents = [r for r in runs if r.data.tags.get("sweep") == "true"]
    points = {r.data.tags["method"]: r for r in runs if "sweep" not in r.data.tags}
    assert len(parents) == 2 and set(points) == {"lora", "ft"}
    unfinished = {r.info.run_name: r.info.status for r in runs if r.info.status != "FINISHED"}
    assert not unfinished, unfinished
    for method, run in points.items():
        for key in contract.STEP_METRICS.values():
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, steps + 1)), (method, key)
        assert "eval/average_score" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config", "eval"} <= artifacts
        assert ("adapter" in artifacts) == (method == "lora")
        assert client.list_artifacts(run.info.run_id, "eval")  # uploaded, not just listed
    experiment = client.get_experiment_by_name("lorabench-demo")
    assert experiment.tags[contract.TAG_EXPERIMENT_KIND] == contract.EXPERIMENT_KIND_TRAINING


def _log_one_new_dataset_at_once(uri: str, writers: int = 8, rounds: int = 6) -> None:
    """Runs log the same new dataset at once, as grid points of two sweeps do: MLflow's
    look-up-then-insert races on the server's store, and every run must still get its input."""
    tracking = TrackingConfig(tracking_uri=uri)
    client = client_for(tracking)
    experiment = client.create_experiment(f"race-{uuid.uuid4().hex[:8]}")
    runs = [
        [client.create_run(experiment).info.run_id for _ in range(writers)] for _ in range(rounds)
    ]
    failures: list[Exception] = []

    def log(run_id: str, dataset: Dataset, start: threading.Barrier) -> None:
        start.wait()
        try:
            client_for(tracking).log_inputs(run_id, [DatasetInput(dataset)])
        except Exception as err:  # noqa: BLE001 - reported below, with the others
            failures.append(err)

    for round_runs in runs:
        dataset = Dataset(name="d", digest=uuid.uuid4().hex[:16], source_type="demo", source="{}")
        start = threading.Barrier(writers)
        threads = [threading.Thread(target=log, args=(r, dataset, start)) for r in round_runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    for round_runs in runs:
        linked = [
            [i.dataset.digest for i in client.get_run(r).inputs.dataset_inputs] for r in round_runs
        ]
        assert all(len(d) == 1 for d in linked) and len({d[0] for d in linked}) == 1, linked


@pytest.mark.slow
def test_runs_logging_one_new_dataset_at_once_each_get_it(server) -> None:
    uri, _ = server
    _log_one_new_dataset_at_once(uri)


@pytest.mark.slow
def test_a_server_that_goes_away_fails_the_run_clearly(tmp_path: Path, isolated, server) -> None:
    uri, proc = server
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": uri,
        # Retried, quickly: the default retries for minutes.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    }
    every = 5
    command = [sys.executable, str(REPO_ROOT / "train.py"), "profile=demo", "data=math_0.25m"]
    command += [*_args(tmp_path, isolated), "training.max_steps=60", f"training.save_steps={every}"]
    log_path = tmp_path / "train.log"
    training = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    out = next(iter((tmp_path / "out").glob("*")), None)
    deadline = time.monotonic() + 300
    while out is None or not (out / f"checkpoint-{every}" / "trainer_state.json").is_file():
        assert training.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
        out = next(iter((tmp_path / "out").glob("*")), None)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert training.wait(timeout=600) == 1
    text = log_path.read_text()
    assert f"error: the MLflow store {uri} did not take the step metrics of steps" in text
    assert not (out / contract.COMPLETE_MARKER).exists()


def test_an_unreachable_store_stops_before_training(demo_config, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = demo_config("training.max_steps=2", f"tracking.tracking_uri={uri}")
    with pytest.raises(ConfigError, match=re.escape(f"tracking.tracking_uri={uri}")):
        train(cfg)
    assert not list((tmp_path / "out").glob("checkpoint-*"))
    assert not (tmp_path / "cache").exists()  # no data prepared, no model built


def readme_postgres_command() -> list[str]:
    """The README's `mlflow server` command on PostgreSQL (continuation lines joined)."""
    text = (REPO_ROOT / "README.md").read_text().replace("\\\n", " ")
    (line,) = re.findall(r"^mlflow server --backend-store-uri postgresql.*$", text, re.MULTILINE)
    return shlex.split(line)


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of Debian's packages, started as the `postgres` user (it refuses to
    run as root) on 127.0.0.1 and a free port, with a database `mlflow`; its SQLAlchemy URI."""
    pg_bin = _postgres_bin()
    if pg_bin is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's postgresql package and root (to run it as `postgres`)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="lorabench-pg-"))  # pytest's tmp is root's alone
    shutil.chown(root, "postgres")
    port = str(free_port())

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    data = root / "data"
    as_postgres(str(pg_bin / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    options = f"-p {port} -h 127.0.0.1 -k {root}"
    as_postgres(
        str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", f"{root}/log", "-w", "start"
    )
    try:
        as_postgres(str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", port, "mlflow")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        as_postgres(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_against_a_server_on_postgresql(tmp_path: Path, isolated, postgres) -> None:
    port = free_port()
    command = readme_postgres_command()
    command[0] = str(Path(sys.executable).with_name("mlflow"))
    command[command.index("--backend-store-uri") + 1] = postgres
    command[command.index("--artifacts-destination") + 1] = str(tmp_path / "artifacts")
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    with running_server(command, tmp_path, f"http://127.0.0.1:{port}") as (uri, _):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": uri}
        args = _args(tmp_path, isolated, "training.max_steps=2", "eval.demo_per_class=1")
        sweep = [sys.executable, str(REPO_ROOT / "sweep.py"), "-m", "profile=demo"]
        sweep += ["method=lora", "data=math_0.25m", *args, "eval.decoding.max_new_tokens=4"]
        done = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-4000:]
        runs = runs_of(MlflowClient(uri))
        _log_one_new_dataset_at_once(uri)  # PostgreSQL words the race differently from sqlite
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    (point,) = [r for r in runs if "sweep" not in r.data.tags]
    assert "eval/average_score" in point.data.metrics and "train/loss" in point.data.metrics
