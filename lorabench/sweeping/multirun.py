"""`sweep.py` under Hydra: one job a grid point of a multirun, or an experiment's rows in one
job. A multirun's jobs (which may run in other processes or on other nodes) record their
outcomes in the sweep directory; `SweepCallback` opens the sweep's parent run before the first
and, after the last, closes it, prints the sweep's summary and fails the sweep when a point
failed: a sweep with failed points finishes the others, lists the failures and exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar, cast

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lorabench.config import validate
from lorabench.config.schema import (
    Config,
    JudgeConfig,
    PairwiseConfig,
    PriceConfig,
    StatsConfig,
    TrackingConfig,
)
from lorabench.console import outcome_line, sweep_summary
from lorabench.errors import LorabenchError
from lorabench.launching.topology import is_first_node, set_cpu_threads
from lorabench.sweeping.points import FAILED, PointOutcome, print_plan, run_point, under_parent
from lorabench.sweeping.rows import run_rows
from lorabench.tracking.parents import PairwiseStage, close_parent, open_parent
from lorabench.tracking.runs import client_for

PARENT_RUN_FILE = "mlflow_parent_run_id"
"""In the Hydra sweep directory: the parent run that the sweep's grid points nest under."""
OUTCOMES_DIR = "point_outcomes"
"""In the Hydra sweep directory: one JSON record per job of what became of its grid point, read
by the process that launched the jobs (they may have run in other processes or on other nodes)."""
T = TypeVar("T")


def _section(config: DictConfig, key: str, schema: type[T]) -> T:
    """The config's section `key` as its typed dataclass `schema`."""
    return cast(T, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), config[key])))


def _prices_of(config: DictConfig) -> dict[str, PriceConfig]:
    """The judge models' prices (`conf/prices.yaml`), typed."""
    return {model: _section(config.prices, model, PriceConfig) for model in config.prices}


def _tracking_of(config: DictConfig) -> TrackingConfig:
    return _section(config, "tracking", TrackingConfig)


def _pairwise_of(config: DictConfig) -> PairwiseStage | None:
    """The head-to-head stage's sections when the sweep judges its runs pairwise."""
    if not config.sweep.pairwise:
        return None
    return PairwiseStage(
        _section(config, "judge", JudgeConfig),
        _section(config, "pairwise", PairwiseConfig),
        str(config.cache_dir),
        _prices_of(config),
    )


class SweepCallback(Callback):
    """Opens a multirun's parent run before the first job and closes it after the last (Hydra
    runs both hooks in the launching process, whatever the launcher); after the last job it
    prints the sweep's summary from the jobs' outcome records, and exits non-zero when a point
    failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Clear the directory's earlier outcome records; open the parent run (not for a plan)
        and record its id for the jobs."""
        sweep_dir = Path(config.hydra.sweep.dir)
        # Records of an earlier sweep into the same directory are not this sweep's.
        shutil.rmtree(sweep_dir / OUTCOMES_DIR, ignore_errors=True)
        if config.sweep.plan:
            return
        # Unresolved: an override like training.output_dir=out/${run_name} names each point.
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        run_id = open_parent(_tracking_of(config), overrides)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Close the parent run from the jobs' outcomes, print the summary, and exit 1 when a
        point failed."""
        sweep_dir = Path(config.hydra.sweep.dir)
        outcomes = read_outcomes(sweep_dir)
        path = sweep_dir / PARENT_RUN_FILE
        if path.is_file():
            failed = [o.run_name for o in outcomes if o.failed]
            close_parent(
                client_for(_tracking_of(config)),
                path.read_text().strip(),
                failed,
                pick_learning_rate=config.sweep.pick_learning_rate,
                stats=_section(config, "stats", StatsConfig),
                pairwise=_pairwise_of(config),
            )
        print(sweep_summary(outcomes, plan=bool(config.sweep.plan)))
        if any(o.failed for o in outcomes):
            # SystemExit passes Hydra's callback guard (it catches Exception only).
            sys.exit(1)


def record_outcome(outcome: PointOutcome, sweep_dir: Path, job_num: int) -> None:
    """Record multirun job `job_num`'s outcome in the sweep directory."""
    directory = sweep_dir / OUTCOMES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{job_num}.json").write_text(json.dumps(asdict(outcome)))


def read_outcomes(sweep_dir: Path) -> list[PointOutcome]:
    """The outcome records of a multirun's jobs, in job order."""
    paths = sorted((sweep_dir / OUTCOMES_DIR).glob("*.json"), key=lambda p: int(p.stem))
    return [PointOutcome(**json.loads(p.read_text())) for p in paths]


def sweep_main(cfg: DictConfig, train_script: str) -> int:
    """`sweep.py`: one grid point of a multirun, or an experiment's rows in order; returns the
    exit code.

    A multirun job records its point's outcome and returns 0 whatever it was, so that Hydra
    runs the next job; `SweepCallback` reports the sweep at its end. Rows and a single point
    report themselves: 1 when a point failed.
    """
    hydra = HydraConfig.get()
    overrides = list(hydra.overrides.task)
    if hydra.mode != RunMode.MULTIRUN:
        config = validate(cfg)
        _check_benchmarks(config)
        set_cpu_threads(config.hardware)
        if config.sweep.rows:
            outcomes = run_rows(config, overrides, train_script)
        else:
            outcomes = [_point(config, overrides, train_script)]
        print(sweep_summary(outcomes, plan=config.sweep.plan))
        return int(any(o.failed for o in outcomes))
    try:
        config = validate(cfg)
        _check_benchmarks(config)
        set_cpu_threads(config.hardware)
    except LorabenchError as err:  # this point's config; the sweep's other points go on
        label = " ".join(overrides)
        print(f"{label}: error: {err}")
        record_outcome(PointOutcome(label, FAILED), Path(hydra.sweep.dir), hydra.job.num)
        return 0
    parent_file = Path(hydra.sweep.dir) / PARENT_RUN_FILE
    if parent_file.is_file():
        config = under_parent(config, parent_file.read_text().strip())
    outcome = _point(config, overrides, train_script)
    if is_first_node(config.hardware):  # a multi-node point's other nodes only train
        record_outcome(outcome, Path(hydra.sweep.dir), hydra.job.num)
    return 0


def _check_benchmarks(config: Config) -> None:
    """Unknown benchmark names stop a sweep that evaluates before anything trains."""
    if config.sweep.evaluate and not config.sweep.plan:
        from lorabench.benchmarks import check_benchmarks

        check_benchmarks(config)


def _point(config: Config, overrides: Sequence[str], train_script: str) -> PointOutcome:
    if config.sweep.plan:
        return print_plan(config)
    outcome = run_point(config, overrides, train_script)
    print(outcome_line(outcome), flush=True)
    return outcome
