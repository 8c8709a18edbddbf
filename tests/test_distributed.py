"""The real distributed path on CPU: `train.py` under torchrun, two processes, DeepSpeed ZeRO-2.

Everything a run writes goes under the test's tmp_path, with one exception: DeepSpeed compiles
its CPU shared-memory comm op on first use (about a minute) into torch's extension cache
(TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions). The tests leave that cache where it
is on purpose: it is the one a real `train.py` run uses, so the compile is paid once per machine
rather than once per test, and it holds nothing but the compiled op.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from lorabench.config import compose, validate
from lorabench.demo.pretraining import resolved_model
from lorabench.methods import method_for
from lorabench.modeling.base import build_model, build_tokenizer
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.runs import CONTRACT_METRICS, runs_of

# Demo global batch 16 = micro batch 2 × 2 processes × gradient accumulation 4.
ZERO2_LORA = [
    "profile=demo",
    "method=lora",
    "data=math_0.25m",
    "hardware.num_processes=2",
    "hardware.deepspeed=zero2",
    "hardware.micro_batch_size=2",
    "training.max_steps=3",
]


def _torchrun(nproc: int, overrides: list[str], cwd: Path, timeout: int):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(REPO_ROOT / "train.py"),
        *overrides,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_torchrun_zero2_lora_logs_one_run_and_a_loadable_adapter(
    tmp_path: Path, isolated: list[str], store
) -> None:
    overrides = [*ZERO2_LORA, *isolated]
    cfg = validate(compose(overrides))
    # Ranks started by torchrun itself load the pretrained base and never make it: make it
    # first, as `python -m lorabench.demo.pretraining` does for a user (the session shares it).
    model_cfg = resolved_model(cfg)
    # 30 s warm; up to ~100 s when DeepSpeed's comm op is compiled first.
    proc = _torchrun(2, overrides, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    client = store
    runs = runs_of(client)
    assert len(runs) == 1, "only rank 0 may open a run"
    run = runs[0]
    assert run.info.run_name == "tiny+lora(math_0.25m)[steps=3]"
    assert run.info.status == "FINISHED"
    missing = [m for m in CONTRACT_METRICS if m not in run.data.metrics]
    assert not missing, f"metrics not logged: {missing}"
    metrics = run.data.metrics
    assert metrics["model/additional_params"] > 0
    assert metrics["model/trainable_params"] == metrics["model/additional_params"]
    assert metrics["model/total_params"] > metrics["model/trainable_params"]
    # One value per optimiser step: a second rank logging would duplicate them.
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts

    # The adapter saved under ZeRO-2 loads onto a fresh tiny base and holds trained weights:
    # lora_B starts at zero, so an all-zero lora_B means the gathered weights were lost.
    base = build_model(model_cfg, build_tokenizer(model_cfg, cfg.cache_dir))
    model = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter")
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    targets = method_for(cfg.method).target_modules(base)  # the paper's preset, resolved
    assert len(lora_b) == 2 * len(targets) == 2 * 6  # 2 layers in the tiny model
    assert all(torch.count_nonzero(p) > 0 for p in lora_b.values())


def test_world_size_mismatch_fails_before_building_anything(
    tmp_path: Path, isolated: list[str], store
) -> None:
    proc = _torchrun(1, [*ZERO2_LORA, *isolated], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "hardware.num_processes" in proc.stderr
    assert "WORLD_SIZE=1" in proc.stderr
    # No run was opened and no tokenizer was built.
    assert runs_of(store) == [] and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_plain_python_relaunches_itself_under_torchrun(
    tmp_path: Path, isolated: list[str], store
) -> None:
    # A two-point multirun: each job must relaunch with its own overrides, not the whole sweep.
    overrides = [
        "profile=demo",
        "data=math_0.25m",
        "hardware.num_processes=2",
        "hardware.micro_batch_size=2",
        "training.max_steps=2",
        *isolated,
    ]
    overrides = [o for o in overrides if not o.startswith("training.output_dir=")]
    proc = run_cli(
        "train.py",
        "-m",
        "method=lora,ft",
        *overrides,
        f"training.output_dir={tmp_path}/out/${{method.name}}",
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    runs = runs_of(store)
    assert sorted(r.info.run_name for r in runs) == [
        "tiny+ft(math_0.25m)[steps=2]",
        "tiny+lora(math_0.25m)[steps=2]",
    ]
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        steps = [m.step for m in store.get_metric_history(run.info.run_id, "train/loss")]
        assert steps == [1, 2]
