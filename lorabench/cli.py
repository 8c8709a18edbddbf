"""What the entry points do once Hydra has composed the config.

Every entry point is a Hydra app (train.py, evaluate.py, sweep.py, `python -m` lorabench.data,
lorabench.analysis, lorabench.anatomy, lorabench.demo.pretraining) whose task is one function
here, wrapped by `exits_on_user_error`: an error in the user's input ends the process with its
message alone (exit code 1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lorabench import contract
from lorabench.config import Config, typed, validate
from lorabench.console import format_seconds, quiet_libraries, sweep_summary
from lorabench.errors import ConfigError, LorabenchError, exits_on_user_error
from lorabench.launching.topology import (
    DistEnv,
    check_world_size,
    launch_ranks,
    needs_launcher,
    set_cpu_threads,
    training_process,
)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
"""Hydra's default sweeper: a grid, which ignores what its jobs return."""


@exits_on_user_error
def train_main(cfg: DictConfig) -> float | None:
    """`train.py`: validate, then plan, dry-run, or check that the run can start here
    (preflight) and relaunch under torchrun or train.

    Returns the trained run's `optimized_metric` (`run_objective`), what an optimising sweeper
    (`-m hydra/sweeper=optuna`) compares; None for a plan, a dry run, and a launched rank (the
    process that launched it reads the run).
    """
    config = validate(cfg)
    if optimizing_sweep():
        check_objective(config, unevaluated="train.py evaluates nothing")
    _train_main(config)
    if config.sweep.plan or config.dry_run or DistEnv.from_environ().launched:
        return None
    return run_objective(config)


@exits_on_user_error
def sweep_entry(cfg: DictConfig, train_script: str) -> float | None:
    """`sweep.py`: one grid point (of a multirun), or an experiment's rows; exits 1 when a
    point failed (a multirun, after its last job).

    Under an optimising sweeper (`-m hydra/sweeper=optuna`) a grid point returns its run's
    `optimized_metric`, or None when the point failed (the study counts a failed trial, and the
    sweep goes on as a grid does).
    """
    from lorabench.sweeping.multirun import sweep_main

    quiet_libraries()
    optimizing = optimizing_sweep()
    if optimizing:
        check_objective(cfg, unevaluated=None if cfg.sweep.evaluate else "sweep.evaluate=false")
    code = sweep_main(cfg, train_script)
    if code:
        sys.exit(code)
    return _point_objective(cfg) if optimizing else None


@exits_on_user_error
def prepare_main(cfg: DictConfig) -> None:
    """`python -m lorabench.data`: prepare (and cache) the training set exactly as training
    will, then print its `name=value` summary lines."""
    print("\n".join(prepared_summary(validate(cfg))))


def prepared_summary(config: Config) -> list[str]:
    """Prepare the config's training set; its summary lines: the data's name, rows read, valid,
    skipped by reason, kept, tokens, lengths, the configured batching's non-pad token share,
    and the cache path."""
    from lorabench.data import configured_nonpad_share, prepare_train_data
    from lorabench.modeling.base import build_tokenizer

    tokenizer = build_tokenizer(config.model, config.cache_dir)
    prepared = prepare_train_data(
        config.data, tokenizer, config.method.max_length, config.cache_dir
    )
    share = configured_nonpad_share(config, prepared.dataset)
    return [
        f"data={config.data.name}",
        *prepared.report.summary(),
        f"nonpad_share_{config.data.batching}={share:.4f}",
    ]


@exits_on_user_error
def report_main(cfg: DictConfig) -> None:
    """`python -m lorabench.analysis`: the study's report (`conf/report.yaml`'s options)."""
    from lorabench.analysis.report import run

    options = typed(cfg)
    quiet_libraries()  # no bar per artifact read: a report reads every run's item scores
    run(options)


@exits_on_user_error
def anatomy_main(cfg: DictConfig) -> None:
    """`python -m lorabench.anatomy run=<name>`: measure a finished run's weight update (logged
    to the run) and print its `name=value` summary."""
    config = validate(cfg)
    if config.run is None:
        raise ConfigError("run= is required: the finished run (name or id) to measure")
    quiet_libraries()
    set_cpu_threads(config.hardware)
    from lorabench.anatomy.stage import measure_run

    result = measure_run(config, config.run)
    state = "measured" if result.measured_now else "already measured (settings and weights)"
    print(f"run={result.run_name} ({result.run_id}): {state}")
    for name in (*contract.ANATOMY_MEASURES.values(), contract.ANATOMY_MATRICES):
        value = result.metrics.get(name)  # no mean when no matrix changed
        print(f"{name}={'none' if value is None else f'{value:.4g}'}")
    print(f"layers={result.layers}")


@exits_on_user_error
def pretrain_main(cfg: DictConfig) -> None:
    """`python -m lorabench.demo.pretraining`: the model's pretrained base, made if missing."""
    config = validate(cfg)
    quiet_libraries()
    set_cpu_threads(config.hardware)
    model = config.model
    if model.pretrain is None or model.pretrained is not None:
        raise ConfigError(
            f"model={model.name} is not pretrained here (model.pretrain is null or "
            "model.pretrained names its weights): nothing to do; the demo's models are tiny "
            "and tiny-13b"
        )
    from lorabench.demo.pretraining import cached_base, ensure_pretrained

    start = time.perf_counter()
    base = cached_base(config)
    if base is None:
        print(
            f"{model.name}: pretraining on {model.pretrain.documents} world documents "
            f"(once; kept in {config.pretrained_dir})",
            flush=True,
        )
        base = ensure_pretrained(config, on_demand=False)
    metrics = base.record.metrics
    state = "pretrained" if base.built else "already pretrained (cached)"
    print(
        f"{model.name}: {state}: {base.path}  held-out perplexity "
        f"{metrics[contract.PRETRAIN_INITIAL_HELDOUT_PERPLEXITY]:.1f} at initialisation, "
        f"{metrics[contract.PRETRAIN_HELDOUT_PERPLEXITY]:.2f} pretrained; mlflow run "
        f"{base.record.run_id}  {format_seconds(time.perf_counter() - start)}",
        flush=True,
    )


@exits_on_user_error
def evaluate_main(cfg: DictConfig) -> None:
    """`evaluate.py`: validate, then print the judge's cost (dry run) or evaluate."""
    config = validate(cfg)
    quiet_libraries()
    set_cpu_threads(config.hardware)
    from lorabench.evaluation import estimate, evaluate

    if config.dry_run:
        items, calls, tokens = estimate(config)
        print(f"eval_items={items}")
        print(f"judge_calls={calls}")
        print(f"estimated_tokens={tokens}")
        return
    result = evaluate(config)
    agg = result.aggregate
    for category, score in agg.category_means.items():
        print(f"{category:>15}: {score:.3f}")
    if agg.average is None:
        print(f"average: undefined (no judged item in {', '.join(agg.missing_categories)})")
    else:
        print(f"average: {agg.average:.3f} (95% CI {agg.ci_low:.3f}-{agg.ci_high:.3f})")
    print(f"judged {agg.judged}, could not judge {agg.unjudged}; mlflow run {result.run_id}")
    print(f"generations: {result.generations_path}\njudgements: {result.judgements_path}")
    for name, value in sorted(result.benchmarks.items()):
        print(f"{name}={value:.4g}")


def _train_main(config: Config) -> None:
    quiet_libraries()
    set_cpu_threads(config.hardware)
    if config.sweep.plan:
        from lorabench.sweeping.points import print_plan

        outcome = print_plan(config)
        print(sweep_summary([outcome], plan=True))
        if outcome.failed:
            sys.exit(1)
        return
    if config.dry_run:
        from lorabench.training import dry_run

        counts = dry_run(config)
        print(f"additional_params={counts.additional}")
        print(f"trainable_params={counts.trainable}")
        print(f"total_params={counts.total}")
        return
    env = DistEnv.from_environ()
    if not env.launched:
        from lorabench.launching.preflight import preflight

        # Here, not in every rank: a run that cannot start fails once, before torchrun.
        preflight(config)
    if needs_launcher(config, env):
        # This job's own overrides, not sys.argv: under `-m` argv holds the whole sweep, and
        # only a failure may end the process (the next job of a sweep runs in this one).
        if code := launch_ranks(config, sys.argv[0], list(HydraConfig.get().overrides.task)):
            sys.exit(code)
        return
    check_world_size(config, env)
    from lorabench.training import train

    with training_process(config):
        result = train(config, env)
    if env.is_main:
        print(f"model saved to {result.model_path}")
        if result.run_id:
            uri = config.tracking.tracking_uri
            print(f"mlflow run {result.run_id} ({config.run_name}) in {uri}")


def optimizing_sweep() -> bool:
    """Whether this process is a job of a sweeper that optimises what its jobs return (Optuna,
    Nevergrad, Ax), rather than Hydra's grid."""
    if not HydraConfig.initialized():
        return False
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and hydra.sweeper.get("_target_") != BASIC_SWEEPER


def check_objective(cfg: DictConfig | Config, unevaluated: str | None) -> None:
    """Before any compute, for an optimising sweeper: the runs will have `optimized_metric`
    (`unevaluated`: why this entry point's runs log no eval/ metric, None when they do)."""
    metric = cfg.optimized_metric
    if metric is None:
        raise ConfigError(
            "optimized_metric=null: the sweeper optimises the metric each run returns; name it, "
            f"e.g. optimized_metric={contract.DEV_LOSS}"
        )
    if not cfg.tracking.enabled:
        raise ConfigError(
            f"tracking.enabled=false: no MLflow run to read optimized_metric={metric} from"
        )
    if unevaluated and metric.startswith(contract.EVAL_PREFIX):
        raise ConfigError(
            f"optimized_metric={metric}: {unevaluated}, so no run logs an "
            f"{contract.EVAL_PREFIX} metric; optimise {contract.DEV_LOSS} (with "
            "data.dev_fraction > 0), or evaluate each point with sweep.py"
        )


def run_objective(config: Config) -> float | None:
    """The config's run's `optimized_metric`, read from MLflow (the run its output directory
    records). None without a metric, a tracked run, or a FINISHED one (a failed grid point); a
    finished run without the metric is an error under an optimising sweeper (its study would
    compare nothing), and None otherwise (nothing reads it)."""
    from lorabench.tracking.runs import client_for

    metric = config.optimized_metric
    id_file = Path(config.training.output_dir) / contract.RUN_ID_FILE
    if metric is None or not config.tracking.enabled or not id_file.is_file():
        return None
    run = client_for(config.tracking).get_run(id_file.read_text().strip())
    if run.info.status != "FINISHED":
        return None
    value = run.data.metrics.get(metric)
    if value is None and optimizing_sweep():
        raise ConfigError(
            f"optimized_metric={metric}: run {run.info.run_name} ({run.info.run_id}) has no "
            f"such metric; it has {', '.join(sorted(run.data.metrics)) or 'none'}"
        )
    return value


def _point_objective(cfg: DictConfig) -> float | None:
    """A sweep.py grid point's `run_objective`; None when its config is invalid (the sweep has
    recorded the point as failed)."""
    try:
        config = validate(cfg)
    except LorabenchError:
        return None
    return run_objective(config)
