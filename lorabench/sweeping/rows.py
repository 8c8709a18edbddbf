"""An experiment's explicit rows (`sweep.rows`, e.g. `experiment=paper_table4`), run under one
parent run in dependency order: a chained row after the row that trains its base run, after the
untuned base models it names (`sweep.base_models`), each evaluated as a base row
(`<model> (base)`) once. `sweep.model_map` runs the rows on other models (e.g. the demo's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hydra import compose as hydra_compose

from lorabench.config import validate
from lorabench.config.schema import Config
from lorabench.console import outcome_line
from lorabench.errors import ConfigError, LorabenchError
from lorabench.sweeping.points import (
    FAILED,
    PointOutcome,
    plan_base_row,
    print_plan,
    run_base_row,
    run_point,
    under_parent,
)
from lorabench.tracking.parents import PairwiseStage, close_parent, open_parent
from lorabench.tracking.runs import client_for


def ordered_rows(names: Sequence[str], bases: Sequence[str | None]) -> list[int]:
    """Row indices with every row after the row that trains its base run (a base run that no
    row trains must exist already)."""
    order: list[int] = []
    done: set[str] = set()
    pending = list(range(len(names)))
    while pending:
        ready = [i for i in pending if bases[i] in done or bases[i] not in names]
        if not ready:
            raise ConfigError(f"sweep.rows: circular base_run among {[names[i] for i in pending]}")
        order.extend(ready)
        done.update(names[i] for i in ready)
        pending = [i for i in pending if i not in ready]
    return order


def _composed(overrides: Sequence[str], experiment: Config) -> Config:
    """A row composed without the experiment, taking the experiment's sweep settings
    (`evaluate`: a learning-rate search judges nothing), which every row shares."""
    composed = validate(hydra_compose(config_name="config", overrides=list(overrides)), overrides)
    return replace(composed, sweep=experiment.sweep)


def run_rows(cfg: Config, overrides: Sequence[str], train_script: str) -> list[PointOutcome]:
    """Run (or plan) an experiment's base rows, then its rows, under one parent run, printing
    each one's summary line as it ends; returns their outcomes in the order they ran.

    Every row's config is validated before any row trains; a plan instead reports a row whose
    config is invalid as that row's error and plans the others.
    """
    base = [o for o in overrides if not o.startswith("experiment=")]
    model_map = cfg.sweep.model_map
    bases = [_composed([*base, f"model={model_map.get(m, m)}"], cfg) for m in cfg.sweep.base_models]
    rows = [[_mapped_model(o, model_map) for o in row] for row in cfg.sweep.rows]
    configs: list[Config] = []
    invalid: list[PointOutcome] = []
    for row in rows:
        try:
            configs.append(_composed([*base, *row], cfg))
        except LorabenchError as err:
            if not cfg.sweep.plan:
                raise
            label = " ".join(row)
            print(f"{label}: error: {err}")
            invalid.append(PointOutcome(label, FAILED))
    names = [c.run_name for c in configs]
    order = ordered_rows(names, [c.base_run for c in configs])
    if cfg.sweep.plan:
        planned = [plan_base_row(config) for config in bases]
        return [*planned, *invalid, *(print_plan(configs[i]) for i in order)]
    parent = open_parent(cfg.tracking, overrides)
    outcomes = []
    try:
        steps = [lambda c=c: run_base_row(c) for c in _nested(bases, parent)]
        steps += [
            lambda c=c, r=r: run_point(c, [*base, *r], train_script)
            for c, r in zip(_nested([configs[i] for i in order], parent),
                            [rows[i] for i in order], strict=True)
        ]  # fmt: skip
        for step in steps:
            outcome = step()
            print(outcome_line(outcome), flush=True)
            outcomes.append(outcome)
    finally:
        failed = [o.run_name for o in outcomes if o.failed]
        close_parent(
            client_for(cfg.tracking),
            parent,
            failed,
            cfg.sweep.pick_learning_rate,
            cfg.stats,
            (
                PairwiseStage(cfg.judge, cfg.pairwise, cfg.cache_dir, cfg.prices)
                if cfg.sweep.pairwise
                else None
            ),
        )
    return outcomes


def _nested(configs: Sequence[Config], parent: str) -> list[Config]:
    return [under_parent(c, parent) for c in configs]


def _mapped_model(override: str, model_map: dict[str, str]) -> str:
    """`model=llama-7b` → `model=tiny`, `base_run='llama-7b+ft(2m)'` → `base_run='tiny+ft(2m)'`."""
    key, _, value = override.partition("=")
    if key == "model" and value in model_map:
        return f"model={model_map[value]}"
    if key == "base_run":
        head, plus, rest = value.strip("'\"").partition("+")
        if head in model_map:
            return f"base_run='{model_map[head]}{plus}{rest}'"
    return override
