"""A sweep's parent run, which its grid points' runs nest under: opened before the first point
(or an abandoned one continued: a killed sweep, rerun, carries on in it), closed after the last
as FINISHED or FAILED naming the points that did not finish, with the sweep's summaries."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.config.schema import (
    JudgeConfig,
    PairwiseConfig,
    PriceConfig,
    StatsConfig,
    TrackingConfig,
)
from lorabench.locking import owner_alive
from lorabench.tracking.runs import Run as TrackedRun
from lorabench.tracking.runs import client_for, experiment_id

log = logging.getLogger(__name__)

PARENT_CANDIDATES = 1000
"""Unfinished sweep parents looked at for one of the same command to continue (newest first;
MLflow's largest page)."""


def open_parent(tracking: TrackingConfig, overrides: Sequence[str]) -> str:
    """The sweep's parent run (tagged `sweep=true`, its overrides, and its command as the
    description): the unfinished parent of the same overrides that a process now gone left
    (a killed sweep, rerun, continues it), else a new one. A live sweep's parent is not taken.
    """
    client = client_for(tracking)
    joined = " ".join(overrides)
    owner = {
        contract.TAG_SWEEP_HOST: socket.gethostname(),
        contract.TAG_SWEEP_PID: str(os.getpid()),
    }
    experiment = experiment_id(client, tracking)
    if (left := _abandoned_parent(client, experiment, joined)) is not None:
        log.warning(
            "continuing sweep parent run %s (left %s by pid %s on %s, which is gone)",
            left.info.run_id,
            left.info.status,
            left.data.tags.get(contract.TAG_SWEEP_PID),
            left.data.tags.get(contract.TAG_SWEEP_HOST),
        )
        if contract.TAG_SWEEP_UNFINISHED in left.data.tags:
            client.delete_tag(left.info.run_id, contract.TAG_SWEEP_UNFINISHED)
        client.update_run(left.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        for key, value in owner.items():
            client.set_tag(left.info.run_id, key, value)
        return left.info.run_id
    return client.create_run(
        experiment,
        run_name=f"sweep {joined}".strip()[:250],
        tags={
            contract.TAG_SWEEP: "true",
            contract.TAG_SWEEP_OVERRIDES: joined,
            contract.TAG_NOTE: shlex.join([Path(sys.executable).name, *sys.argv]),
            **owner,
        },
    ).info.run_id


def _abandoned_parent(client: MlflowClient, experiment: str, overrides: str) -> Run | None:
    # Overrides are compared here, not in the filter: they hold quotes the filter cannot escape.
    candidates = client.search_runs(
        [experiment],
        filter_string=f"tags.{contract.TAG_SWEEP} = 'true' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=PARENT_CANDIDATES,
    )
    for run in candidates:
        tags = run.data.tags
        if tags.get(contract.TAG_SWEEP_OVERRIDES) != overrides:
            continue
        pid = tags.get(contract.TAG_SWEEP_PID, "")
        alive = pid.isdigit() and owner_alive(tags.get(contract.TAG_SWEEP_HOST, ""), int(pid))
        if run.info.status != "RUNNING" or not alive:
            return run
    return None


@dataclass(frozen=True)
class PairwiseStage:
    """The sections a sweep's head-to-head stage (`sweep.pairwise=true`) reads: the judge, in
    its pairwise mode, with its reply cache under `cache_dir`, and the pairs."""

    judge: JudgeConfig
    pairwise: PairwiseConfig
    cache_dir: str
    prices: dict[str, PriceConfig]
    """The judge models' prices, for the head-to-head judge's ledger on the parent."""


def close_parent(
    client: MlflowClient,
    run_id: str,
    failed: Sequence[str] = (),
    pick_learning_rate: bool = False,
    stats: StatsConfig | None = None,
    pairwise: PairwiseStage | None = None,
) -> None:
    """FINISHED when every grid point (and base row) finished, else FAILED naming the others;
    the finished points' learning rates are checked (and, with `pick_learning_rate`, picked),
    their statistics, (with `pairwise`) their head-to-head verdicts and (with benchmark
    results) what each learned and forgot logged on the way
    (`lorabench.analysis.sweep_records`; base rows train nothing, so they have none). `failed`:
    the points that failed; those that failed before opening a run of their own (a preflight)
    count as grid points too."""
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.`{contract.TAG_PARENT_RUN_ID}` = '{run_id}'",
    )
    points = [r for r in children if contract.TAG_RUN_KIND not in r.data.tags]
    finished = [r for r in points if r.info.status == "FINISHED"]
    if finished:
        # Imported here: the analysis package brings pandas and matplotlib, which only a sweep's
        # end needs.
        from lorabench.analysis.sweep_records import (
            record_forgetting,
            record_learning_rates,
            record_pairwise,
            record_statistics,
        )

        stats = stats or StatsConfig()
        record_learning_rates(client, run_id, finished, pick_learning_rate)
        record_statistics(client, run_id, finished, stats)
        if pairwise is not None:
            record_pairwise(client, run_id, finished, pairwise, stats)
        record_forgetting(client, run_id, finished, stats)
    _record_costs(client, run_id, children)
    runless = set(failed) - {r.info.run_name for r in children}
    unfinished = sorted(
        {r.info.run_name for r in children if r.info.status != "FINISHED"} | set(failed)
    )
    client.set_tag(run_id, contract.TAG_SWEEP_GRID_POINTS, len(points) + len(runless))
    if unfinished:
        client.set_tag(run_id, contract.TAG_SWEEP_UNFINISHED, ", ".join(unfinished)[:5000])
    status = RunStatus.FAILED if unfinished else RunStatus.FINISHED
    client.set_terminated(run_id, RunStatus.to_string(status))


def _record_costs(client: MlflowClient, run_id: str, children: Sequence[Run]) -> None:
    """Log the sweep's judging total (`judging.costs.sweep_total`) on its parent: its runs'
    judges and its own head-to-head judge (logged on the parent just before)."""
    from lorabench.judging.costs import sweep_total

    totals, tags = sweep_total([*children, client.get_run(run_id)])
    parent = TrackedRun(client, run_id)
    parent.log_metrics(totals)
    parent.set_tags(tags)
    print(f"judge cost of the sweep: {tags[contract.TAG_SWEEP_JUDGE_COST]}")
