"""sweep.py under Hydra's Optuna sweeper: a learning-rate search whose trials are the grid points
of one sweep (MLflow runs nested under its parent run), each returning its dev loss to the study."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lorabench import contract
from tests.helpers.cli import run_cli
from tests.helpers.runs import sweep_runs


@pytest.mark.slow
def test_optuna_searches_the_demo_learning_rate_in_one_sweep(
    tmp_path: Path, isolated, store
) -> None:
    args = [a for a in isolated if not a.startswith("training.output_dir=")]
    result = run_cli(
        "sweep.py",
        "-m",
        "experiment=lr_search_optuna_demo",
        "profile=demo",
        "hydra.sweeper.n_trials=4",
        "training.max_steps=2",
        f"training.output_dir={tmp_path}/out/${{run_name}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
        *args,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "4 grid points: 4 trained" in result.stdout

    parent, trials = sweep_runs(store)
    assert parent.info.status == "FINISHED" and len(trials) == 4
    dev_loss = {
        float(r.data.params["method.learning_rate"]): r.data.metrics[contract.DEV_LOSS]
        for r in trials
    }
    assert len(dev_loss) == 4  # four learning rates, each trained once
    lowest = min(dev_loss, key=dev_loss.__getitem__)
    best = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")
    assert best.best_value == dev_loss[lowest]
    assert best.best_params["method.learning_rate"] == pytest.approx(lowest)
    assert f"learning rate {lowest:g} " in parent.data.tags[contract.TAG_SWEEP_LR_PICKS]
