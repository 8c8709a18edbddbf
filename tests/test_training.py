"""Training the tiny model for real: the loss falls, the MLflow run holds the contract, the
saved adapter / checkpoint loads, failures are recorded, and interrupted runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, LlamaConfig, Trainer

from lorabench import contract
from lorabench.training import train
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.local_tokenizers import tiny_tokenizer
from tests.helpers.models import base_model, fixed_batch_loss
from tests.helpers.runs import CONTRACT_METRICS, runs_of

SHORT_RUN = ("data=math_0.25m", "training.max_steps=12", "training.save_steps=6")


@pytest.mark.parametrize("method", ["lora", "ft"])
def test_training_lowers_loss_and_logs_the_contract(demo_config, store, method: str) -> None:
    cfg = demo_config(f"method={method}", *SHORT_RUN)
    before = fixed_batch_loss(base_model(cfg), cfg)

    result = train(cfg)

    if method == "lora":
        assert result.model_path.name == "adapter"
        trained = PeftModel.from_pretrained(base_model(cfg), str(result.model_path))
    else:
        assert result.model_path.name == "model"
        trained = AutoModelForCausalLM.from_pretrained(str(result.model_path))
    after = fixed_batch_loss(trained, cfg)
    assert after < before - 0.1, (before, after)

    (run,) = runs_of(store)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"tiny+{method}(math_0.25m)[steps=12]"
    assert CONTRACT_METRICS <= set(run.data.metrics)
    metrics = run.data.metrics
    assert metrics["model/total_params"] >= metrics["model/trainable_params"] > 0
    if method == "lora":
        assert metrics["model/additional_params"] == metrics["model/trainable_params"]
    else:
        assert metrics["model/additional_params"] == 0
        assert metrics["model/trainable_params"] == metrics["model/total_params"]
    assert metrics["train/tokens_per_second"] > 0 and metrics["train/hours_per_epoch"] > 0
    loss_steps = [m.step for m in store.get_metric_history(run.info.run_id, "train/loss")]
    assert loss_steps[0] == 1 and loss_steps[-1] == 12  # per-step, logging_steps=1 in demo

    params = run.data.params
    assert params["method.name"] == method and params["model.name"] == "tiny"
    assert float(params["method.learning_rate"]) == cfg.method.learning_rate
    tags = run.data.tags
    assert len(tags["config_hash"]) == 16 and tags["profile"] == "demo" and tags["git_commit"]
    assert Path(tags["model_path"]) == result.model_path.resolve()

    artifacts = {a.path for a in store.list_artifacts(run.info.run_id)}
    assert "config" in artifacts and ("adapter" in artifacts) == (method == "lora")
    resolved_yaml = Path(store.download_artifacts(run.info.run_id, "config/resolved.yaml"))
    assert yaml.safe_load(resolved_yaml.read_text())["method"]["name"] == method


def test_missing_local_weights_fail_the_run_with_a_hint(
    tmp_path: Path, isolated: list[str], store
) -> None:
    # Config and tokenizer are there (the preflight passes), the weights are not.
    model_dir = tmp_path / "no-weights"
    LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    result = run_cli(
        "train.py",
        "profile=demo",
        *isolated,
        "model=causal-lm",
        "model.name=mine",
        f"model.pretrained={model_dir}",
        "method=ft",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "no-weights" in result.stderr and "model.pretrained=/path/to/model" in result.stderr
    (run,) = runs_of(store)
    assert run.info.status == "FAILED"
    assert "no-weights" in run.data.tags["error"]


def test_offline_hub_model_says_how_to_use_local_weights(tmp_path: Path, isolated) -> None:
    result = run_cli(
        "train.py", *isolated, "model=llama-7b", "hardware=cpu", "method=ft", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "huggyllama/llama-7b" in result.stderr
    assert "model.pretrained=/path/to/model" in result.stderr


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for a checkpoint")
        time.sleep(0.2)


def test_interrupted_run_resumes_from_its_checkpoint_into_the_same_run(
    tmp_path: Path, isolated: list[str], store
) -> None:
    total_steps, save_every = 40, 5
    args = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "profile=demo",
        *isolated,
        "data=math_0.25m",
        f"training.max_steps={total_steps}",
        f"training.save_steps={save_every}",
    ]
    out = tmp_path / "out"
    with open(tmp_path / "first.log", "w") as log:  # a file: a full pipe would stall training
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        # Complete: the Trainer writes its state last (a cut checkpoint is not resumed from).
        state = out / f"checkpoint-{save_every}" / "trainer_state.json"
        _wait_for(state.is_file, 240, proc)
        proc.send_signal(signal.SIGTERM)  # what torchrun and Slurm send
        proc.wait(timeout=60)

    (killed,) = runs_of(store)
    assert killed.info.status == "KILLED"
    logged_before = len(store.get_metric_history(killed.info.run_id, "train/learning_rate"))
    resumed_from = max(
        int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json")
    )
    assert resumed_from < total_steps

    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    (run,) = runs_of(store)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    history = store.get_metric_history(run.info.run_id, "train/learning_rate")
    # The second session logged the steps after those the first one flushed: each step once.
    assert sorted(m.step for m in history) == list(range(1, total_steps + 1))
    assert logged_before >= resumed_from


def test_rerunning_a_finished_training_does_nothing(demo_config, store) -> None:
    cfg = demo_config("method=lora", "data=math_0.25m", "training.max_steps=3")
    first = train(cfg)
    steps = [m.step for m in store.get_metric_history(first.run_id, "train/loss")]
    again = train(cfg)
    assert again.run_id == first.run_id and again.metrics == first.metrics
    assert [m.step for m in store.get_metric_history(first.run_id, "train/loss")] == steps
    (run,) = runs_of(store)
    assert run.info.status == "FINISHED"


def test_checkpoint_time_is_kept_out_of_hours_per_epoch(demo_config, monkeypatch) -> None:
    """A run that saves every step, each save slowed by a known pause: the pauses land in
    train/checkpoint_hours, and hours per epoch × epochs is the rest of the session."""
    pause = 0.4
    original = Trainer._save_checkpoint

    def slow_save(self, *args, **kwargs):
        time.sleep(pause)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_save_checkpoint", slow_save)
    cfg = demo_config("method=lora", "data=math_0.25m", "training.max_steps=5")
    cfg = replace(cfg, training=replace(cfg.training, save_steps=1, save_total_limit=1))

    metrics = train(cfg).metrics

    epochs = json.loads(
        (Path(cfg.training.output_dir) / "checkpoint-5" / "trainer_state.json").read_text()
    )["epoch"]
    checkpoint_seconds = metrics[contract.TRAIN_CHECKPOINT_HOURS] * 3600
    session_seconds = metrics[contract.TRAIN_GPU_HOURS] * 3600  # one process, one session
    training_seconds = metrics[contract.TRAIN_HOURS_PER_EPOCH] * epochs * 3600
    assert checkpoint_seconds >= 5 * pause
    assert training_seconds == pytest.approx(session_seconds - checkpoint_seconds, abs=0.05)
    assert training_seconds < session_seconds - 5 * pause


def test_saves_scale_with_the_run_when_save_steps_is_null(demo_config) -> None:
    from lorabench.training.arguments import training_arguments

    cfg = demo_config("method=ft")
    cfg = replace(cfg, training=replace(cfg.training, save_steps=None, saves_per_epoch=10))
    args = training_arguments(cfg)
    # A ratio of the total steps: transformers saves every ceil(total × ratio) steps.
    assert args.save_steps == pytest.approx(1 / (10 * cfg.method.epochs))


def test_process_wide_state_is_restored_for_the_next_point(demo_config, monkeypatch) -> None:
    """An in-process sweep trains point after point: each gets the training's SIGTERM handler
    and DeepSpeed accelerator, and leaves the process as it found it."""
    from lorabench.launching.topology import training_process

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    before = signal.getsignal(signal.SIGTERM)
    cfg = demo_config(
        "hardware.deepspeed=zero2", "hardware.num_processes=2", "hardware.micro_batch_size=8"
    )
    with training_process(cfg):
        assert signal.getsignal(signal.SIGTERM) is not before
        assert os.environ["DS_ACCELERATOR"] == "cpu"
    assert signal.getsignal(signal.SIGTERM) is before
    assert "DS_ACCELERATOR" not in os.environ


def test_a_run_without_tracking_opens_no_store(demo_config, tmp_path) -> None:
    unused = tmp_path / "never" / "mlflow.db"
    cfg = demo_config(
        "data=math_0.25m",
        "training.max_steps=1",
        "tracking.enabled=false",
        f"tracking.tracking_uri=sqlite:///{unused}",
    )
    assert train(cfg).run_id is None
    assert not unused.parent.exists()  # not even an empty store: it is the user's to make
