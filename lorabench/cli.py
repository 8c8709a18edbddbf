"""What the entry points do once Hydra has composed the config."""

from __future__ import annotations

import sys
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lorabench.config import validate
from lorabench.console import quiet_libraries
from lorabench.errors import ConfigError, LorabenchError
from lorabench.launching.topology import (
    DistEnv,
    check_world_size,
    needs_launcher,
    relaunch,
    set_cpu_threads,
    training_process,
)


def train_main(cfg: DictConfig) -> None:
    """`train.py`: validate, then plan, dry-run, or check that the run can start here
    (preflight) and relaunch under torchrun or train.

    Errors in the user's input end the process with their message alone (exit code 1).
    """
    try:
        _train_main(cfg)
    except LorabenchError as err:
        sys.exit(f"error: {err}")


def sweep_entry(cfg: DictConfig, train_script: str) -> None:
    """`sweep.py`: one grid point (of a multirun), or an experiment's rows; exits 1 when a
    point failed (a multirun, after its last job)."""
    from lorabench.sweeping import sweep_main

    quiet_libraries()
    try:
        code = sweep_main(cfg, train_script)
    except LorabenchError as err:
        sys.exit(f"error: {err}")
    if code:
        sys.exit(code)


def evaluate_main(cfg: DictConfig) -> None:
    """`evaluate.py`: validate, then print the judge's cost (dry run) or evaluate."""
    try:
        _evaluate_main(cfg)
    except LorabenchError as err:
        sys.exit(f"error: {err}")


def pretrain_main(cfg: DictConfig) -> None:
    """`python -m lorabench.demo.pretraining`: the model's pretrained base, made if missing."""
    try:
        _pretrain_main(cfg)
    except LorabenchError as err:
        sys.exit(f"error: {err}")


def _pretrain_main(cfg: DictConfig) -> None:
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
    from lorabench import contract
    from lorabench.demo.pretraining import cached_base, ensure_pretrained
    from lorabench.sweeping import format_seconds

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


def _evaluate_main(cfg: DictConfig) -> None:
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


def _train_main(cfg: DictConfig) -> None:
    config = validate(cfg)
    quiet_libraries()
    set_cpu_threads(config.hardware)
    if config.sweep.plan:
        from lorabench.sweeping import print_plan, summary

        outcome = print_plan(config)
        print(summary([outcome], plan=True))
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
        from lorabench.demo.pretraining import resolved_model

        resolved_model(config)  # the ranks load the pretrained base; it is made here, once
        # This job's own overrides, not sys.argv: under `-m` argv holds the whole sweep, and
        # only a failure may end the process (the next job of a sweep runs in this one).
        if code := relaunch(config, sys.argv[0], list(HydraConfig.get().overrides.task)):
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
