"""Preflight: a run that cannot start here fails once, in the process the user started, naming
the fix, before any rank is launched; a sweep whose points failed exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lorabench.config import compose, validate
from lorabench.launching.preflight import PreflightError, preflight
from tests.helpers.cli import run_cli
from tests.helpers.runs import runs_of, sweep_runs

RANK_TRACES = ("Traceback", "torch.distributed", "ChildFailedError", "torchrun")


def test_train_on_a_gpu_preset_without_gpus_fails_once_before_any_rank(
    tmp_path: Path, isolated: list[str], store
) -> None:
    # The defaults: hardware=gpu8 (torchrun, 8 ranks) and LLaMA-7B from the Hub, offline here.
    result = run_cli("train.py", "method=lora", "data=0.6m", *isolated, cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert output.count("cannot start on this machine") == 1
    assert "hardware=cpu" in output and "profile=demo" in output
    assert "model.pretrained=/path/to/model" in output
    assert not [trace for trace in RANK_TRACES if trace in output], output[-3000:]
    assert not (tmp_path / "out").exists() and runs_of(store, "lorabench") == []


def test_missing_gpus_name_the_fix(monkeypatch: pytest.MonkeyPatch, isolated: list[str]) -> None:
    cfg = validate(compose(["model=tiny", "hardware=gpu8", *isolated]))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PreflightError, match="has 2: set hardware.num_processes=2"):
        preflight(cfg)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    preflight(cfg)  # the tiny model's tokenizer builds offline: nothing else to fix


def test_an_unloadable_model_names_the_fix(isolated: list[str]) -> None:
    cfg = validate(compose(["hardware=cpu", "model.pretrained=/nowhere/llama", *isolated]))
    with pytest.raises(PreflightError) as caught:
        preflight(cfg)
    message = str(caught.value)
    assert "model.pretrained='/nowhere/llama' cannot be loaded" in message
    assert "model.pretrained=/path/to/model" in message and "profile=demo" in message
    assert "CUDA" not in message  # hardware=cpu asks for no GPU


def test_a_chained_run_needs_its_base_run(demo_config) -> None:
    with pytest.raises(PreflightError, match="base_run"):
        preflight(demo_config("base_run=nowhere"))


@pytest.mark.slow
def test_a_sweep_whose_points_cannot_start_exits_non_zero(
    tmp_path: Path, isolated: list[str], store
) -> None:
    args = [*isolated, f"hydra.sweep.dir={tmp_path}/multirun"]
    result = run_cli("sweep.py", "-m", "method=lora", "data=0.6m", *args, cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert output.count("cannot start on this machine") == 1
    assert "failed: llama-7b+lora(0.6m)" in result.stdout
    assert not [trace for trace in RANK_TRACES if trace in output], output[-3000:]
    (parent,) = runs_of(store, "lorabench")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["unfinished_points"] == "llama-7b+lora(0.6m)"
    assert parent.data.tags["grid_points"] == "1"


@pytest.mark.slow
def test_a_failed_point_does_not_stop_the_others(
    tmp_path: Path, isolated: list[str], store
) -> None:
    args = [a for a in isolated if not a.startswith("training.output_dir=")]
    result = run_cli(
        "sweep.py",
        "-m",
        "profile=demo",
        "data=math_0.25m",
        # The first point asks for a GPU this machine lacks; the second trains on the CPU.
        "hardware.device=cuda,cpu",
        "training.max_steps=2",
        "sweep.evaluate=false",
        *args,
        f"training.output_dir={tmp_path}/out/${{hydra:job.num}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "2 grid points: 1 failed, 1 trained" in result.stdout
    parent, (child,) = sweep_runs(store)
    assert child.info.status == "FINISHED" and parent.info.status == "FAILED"
