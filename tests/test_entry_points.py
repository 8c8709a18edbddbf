"""One way to start and to fail: every entry point is a Hydra app whose task ends a user's error
with `error: <message>` and exit code 1; train.py and sweep.py return the configured objective
(`optimized_metric`) of the run they trained, for a sweeper that optimises it."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lorabench import cli, contract
from lorabench.config import compose, validate
from lorabench.errors import ConfigError, exits_on_user_error
from tests.helpers.cli import module_cli
from tests.helpers.runs import runs_of

# ---- failing -----------------------------------------------------------------------------------


@exits_on_user_error
def task(fail: Exception | None) -> int:
    if fail is not None:
        raise fail
    return 7


def test_a_user_error_ends_the_task_with_its_message_alone() -> None:
    assert task(None) == 7  # what the task returns reaches Hydra (a sweeper reads it)
    with pytest.raises(SystemExit) as ended:
        task(ConfigError("method.learning_rate=-1: must be > 0"))
    # sys.exit with a message: Python prints it on stderr and exits with code 1.
    assert ended.value.code == "error: method.learning_rate=-1: must be > 0"
    with pytest.raises(RuntimeError, match="a bug"):  # not the user's: its traceback stays
        task(RuntimeError("a bug"))


def test_the_modules_are_hydra_apps_that_fail_alike(tmp_path: Path) -> None:
    report = module_cli("lorabench.analysis", "--help", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "parent_run: null" in report.stdout and "log_to: null" in report.stdout

    bad_pairs = module_cli("lorabench.analysis", "pairs=[A with B]", cwd=tmp_path)
    assert bad_pairs.returncode == 1
    assert bad_pairs.stderr.strip().endswith(
        "error: pairs='A with B': each pair must read `run A vs run B`"
    )

    data = module_cli("lorabench.data", "profile=demo", "optimized_metric=dev/loss", cwd=tmp_path)
    assert data.returncode == 1 and "Traceback" not in data.stderr
    assert "error: optimized_metric='dev/loss': is logged only with a development split" in (
        data.stderr
    )
    # Hydra's files (a dated folder) under the directory the commands ran in: nothing elsewhere.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    logs = sorted(p.name for p in (tmp_path / "outputs" / "hydra").glob("*/*.log"))
    assert logs == ["__main__.log", "report.log"]


# ---- the objective -----------------------------------------------------------------------------


def test_optimized_metric_is_checked_with_the_config() -> None:
    base = ["profile=demo"]
    assert validate(compose(base)).optimized_metric == contract.EVAL_AVERAGE_SCORE
    dev = validate(compose([*base, "optimized_metric=dev/loss", "data.dev_fraction=0.05"]))
    assert dev.optimized_metric == contract.DEV_LOSS
    with pytest.raises(ConfigError, match="set data.dev_fraction"):
        validate(compose([*base, "optimized_metric=dev/loss"]))
    with pytest.raises(ConfigError, match="must be an MLflow metric name"):
        validate(compose([*base, "optimized_metric='eval;score'"]))


def test_an_optimising_sweep_is_refused_a_metric_its_runs_cannot_log() -> None:
    def config(metric: str | None, tracked: bool = True):
        return OmegaConf.create({"optimized_metric": metric, "tracking": {"enabled": tracked}})

    cli.check_objective(config("dev/loss"), unevaluated="train.py evaluates nothing")
    cli.check_objective(config("eval/average_score"), unevaluated=None)
    with pytest.raises(ConfigError, match="train.py evaluates nothing, so no run logs an eval/"):
        cli.check_objective(config("eval/average_score"), "train.py evaluates nothing")
    with pytest.raises(ConfigError, match="optimized_metric=null"):
        cli.check_objective(config(None), unevaluated=None)
    with pytest.raises(ConfigError, match="tracking.enabled=false"):
        cli.check_objective(config("dev/loss", tracked=False), unevaluated=None)


def with_metric(cfg, metric: str | None):
    return validate(OmegaConf.merge(OmegaConf.structured(cfg), {"optimized_metric": metric}))


def test_the_objective_is_the_finished_runs_metric(demo_config, store, monkeypatch) -> None:
    cfg = demo_config("optimized_metric=dev/loss", "data.dev_fraction=0.05")
    experiment = store.create_experiment("lorabench-demo")
    run_id = store.create_run(experiment, run_name=cfg.run_name).info.run_id
    store.log_metric(run_id, contract.DEV_LOSS, 2.5)
    out = Path(cfg.training.output_dir)
    out.mkdir(parents=True)
    (out / contract.RUN_ID_FILE).write_text(run_id)

    assert cli.run_objective(cfg) is None  # still RUNNING: a point that did not finish
    store.set_terminated(run_id, "FINISHED")
    assert cli.run_objective(cfg) == 2.5
    assert cli.run_objective(with_metric(cfg, None)) is None
    # A finished run without the metric: nothing to say unless a sweeper optimises it.
    unscored = with_metric(cfg, contract.EVAL_AVERAGE_SCORE)
    assert cli.run_objective(unscored) is None
    monkeypatch.setattr(cli, "optimizing_sweep", lambda: True)
    with pytest.raises(ConfigError, match=r"eval/average_score: run .* it has dev/loss$"):
        cli.run_objective(unscored)


def test_train_returns_the_trained_runs_objective(isolated, store) -> None:
    overrides = ["profile=demo", *isolated, "data=math_0.25m", "training.max_steps=2"]
    dev = [*overrides, "data.dev_fraction=0.1", "optimized_metric=dev/loss"]
    assert cli.train_main(compose([*dev, "dry_run=true"])) is None  # nothing trained

    value = cli.train_main(compose(dev))

    (run,) = runs_of(store)
    assert value == run.data.metrics[contract.DEV_LOSS]
