"""What a sweep logs to its parent run when it closes (`lorabench.tracking.parents`): the
learning rates its methods were compared at (and, on request, the pick per method), the
statistics of its runs, (`sweep.pairwise=true`) their head-to-head verdicts, and (for runs with
benchmark results) what each learned and forgot against the model it started from."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.benchmarks import load_subjects
from lorabench.analysis.forgetting import (
    MEASURES,
    Estimate,
    Forgetting,
    analyse,
    change_table,
    pair_table,
)
from lorabench.analysis.forgetting_section import has_results
from lorabench.analysis.items import load_item_scores
from lorabench.analysis.learning_rates import best_learning_rates, shared_learning_rate_warnings
from lorabench.analysis.pairwise_judging import head_to_head, record_head_to_head
from lorabench.analysis.runs import AnalysisError, finished_runs, run_frame
from lorabench.analysis.statistics import write_statistics
from lorabench.config.schema import StatsConfig
from lorabench.errors import LorabenchError
from lorabench.judging.costs import ledger
from lorabench.judging.factory import build_pairwise_judge
from lorabench.tracking.runs import Run as TrackedRun

if TYPE_CHECKING:
    from lorabench.tracking.parents import PairwiseStage

log = logging.getLogger(__name__)


def record_learning_rates(
    client: MlflowClient, parent_id: str, runs: Sequence[Run], pick: bool
) -> None:
    """Warn about (and tag the parent with) methods compared at one unusual learning rate;
    with `pick`, print and log per method the learning rate of the lowest dev loss."""
    frame = run_frame(runs)
    warnings = shared_learning_rate_warnings(frame)
    for warning in warnings:
        log.warning(warning)
    if warnings:
        client.set_tag(parent_id, contract.TAG_SWEEP_LR_WARNINGS, "\n".join(warnings)[:5000])
    if not pick:
        return
    try:
        picks = best_learning_rates(frame)
    except AnalysisError as err:  # nothing to pick from: said, and the sweep still closes
        log.error("sweep.pick_learning_rate: %s", err)
        client.set_tag(parent_id, contract.TAG_SWEEP_LR_PICKS, str(err)[:5000])
        return
    lines = [
        f"{p.candidates}: learning rate {p.learning_rate:g} (dev loss {p.dev_loss:.4f}, "
        f"best of {p.tried})"
        for p in picks.itertuples(index=False)
    ]
    print("\n".join(["learning rates picked on the development split:", *lines]))
    client.set_tag(parent_id, contract.TAG_SWEEP_LR_PICKS, "\n".join(lines)[:5000])
    client.log_text(parent_id, picks.to_csv(index=False), contract.ARTIFACT_LR_PICKS)


def record_statistics(
    client: MlflowClient, parent_id: str, runs: Sequence[Run], stats: StatsConfig
) -> None:
    """Log the statistics of the sweep's runs (replicates, comparisons, ...) to its parent as
    artifacts `statistics/`; a failure to compute them is logged and the sweep still closes."""
    frame = run_frame(runs)
    try:
        items = load_item_scores(client.tracking_uri, list(frame["run_id"]))
        with tempfile.TemporaryDirectory() as tmp:
            written = write_statistics(frame, items, tmp, stats)
            client.log_artifacts(parent_id, str(Path(tmp) / contract.ARTIFACT_STATS_DIR),
                                 contract.ARTIFACT_STATS_DIR)  # fmt: skip
            figures = Path(tmp) / "figures"
            if figures.is_dir():
                client.log_artifacts(parent_id, str(figures), contract.ARTIFACT_STATS_DIR)
    except (LorabenchError, ValueError) as err:  # said, and the sweep still closes
        log.error("sweep statistics: %s", err)
        return
    # One line on the console (the demo's console stays quiet); the sections are artifacts.
    log.debug("sweep statistics:\n%s", written.markdown)
    print(f"statistics: artifacts {contract.ARTIFACT_STATS_DIR}/ of the sweep's run {parent_id}")


def record_pairwise(
    client: MlflowClient,
    parent_id: str,
    runs: Sequence[Run],
    stage: PairwiseStage,
    stats: StatsConfig,
) -> None:
    """Judge the sweep's finished `runs` head to head (`analysis.pairwise_judging`) and log the
    verdicts and their statistics to its parent. The pairs may reach the experiment's other
    finished runs (the newest of each name, or the sweep's own): a sweep of the §4.5 rows
    compares them with the FT(2M) run an earlier sweep trained. A judge that cannot run, or
    statistics that cannot be computed, are logged and the sweep still closes; pairs that
    cannot be judged are listed in `pairwise/skipped.txt`."""
    newest = {r.info.run_name: r for r in finished_runs(client, runs[0].info.experiment_id)}
    pool = list({**newest, **{r.info.run_name: r for r in runs}}.values())  # the sweep's own
    try:
        judge = build_pairwise_judge(stage.judge, stage.pairwise, stage.cache_dir)
        result = head_to_head(
            client,
            pool,
            judge,
            pairs=stage.pairwise.pairs,
            baseline=stage.pairwise.baseline,
            focus={r.info.run_id for r in runs},
            stats=stats,
        )
        record_head_to_head(client, parent_id, result)
        spent, cost_note = ledger(judge, stage.prices)
        parent = TrackedRun(client, parent_id)
        parent.log_metrics(spent)
        parent.set_tags(cost_note)
    except (LorabenchError, ValueError) as err:  # said, and the sweep still closes
        log.error("sweep head to head: %s", err)
        return
    client.set_tag(parent_id, contract.TAG_PAIRWISE_JUDGE, result.judge)
    for line in result.skipped:
        log.warning("head to head: not judged: %s", line)
    print(
        f"head to head: {len(result.pairs)} pairs judged by {result.judge} "
        f"({len(result.skipped)} skipped): artifacts {contract.ARTIFACT_PAIRWISE_DIR}/ of the "
        f"sweep's run {parent_id}"
    )


def forgetting_metrics(forgetting: Forgetting) -> list[Metric]:
    """The parent's `forgetting/*` metrics: per run each measure with its interval
    (`contract.forgetting_metric`, `_ci_low`, `_ci_high`), per LoRA-vs-FT pair its two
    differences; a measure without an estimate is not logged (never a 0)."""
    now = int(time.time() * 1000)
    values: list[tuple[str, str, Estimate | str | None]] = [
        (c.subject.run_name, measure, getattr(c, attribute))
        for c in forgetting.changes
        for measure, attribute in MEASURES.items()
    ]
    for p in forgetting.pairs:
        values += [
            (p.label, contract.FORGETTING_LEARNED_DIFFERENCE, p.learned),
            (p.label, contract.FORGETTING_FORGOTTEN_DIFFERENCE, p.forgotten),
        ]
    metrics = []
    for subject, measure, part in values:
        if not isinstance(part, Estimate):
            continue
        for key, value in (
            (contract.forgetting_metric(subject, measure), part.value),
            (contract.forgetting_ci_low(subject, measure), part.ci_low),
            (contract.forgetting_ci_high(subject, measure), part.ci_high),
        ):
            if math.isfinite(value):
                metrics.append(Metric(key, float(value), now, 0))
    return metrics


def record_forgetting(
    client: MlflowClient, parent_id: str, runs: Sequence[Run], stats: StatsConfig
) -> None:
    """What each of the sweep's finished `runs` learned and forgot against the run it started
    from (`analysis.forgetting`), logged to its parent: the `forgetting/*` metrics and the
    tables `contract.ARTIFACT_FORGETTING_RUNS` and `_COMPARISONS`. Nothing when no run has
    benchmark results; results that cannot be read are logged and the sweep still closes."""
    try:
        forgetting = analyse(load_subjects(client.tracking_uri, run_frame(runs)), stats)
    except (LorabenchError, ValueError) as err:  # said, and the sweep still closes
        log.error("sweep learned/forgotten: %s", err)
        return
    if not has_results(forgetting):
        return
    client.log_text(
        parent_id, change_table(forgetting.changes).to_csv(index=False),
        contract.ARTIFACT_FORGETTING_RUNS,
    )  # fmt: skip
    client.log_text(
        parent_id, pair_table(forgetting.pairs).to_csv(index=False),
        contract.ARTIFACT_FORGETTING_COMPARISONS,
    )  # fmt: skip
    metrics = forgetting_metrics(forgetting)
    for start in range(0, len(metrics), 1000):  # MLflow's largest batch
        client.log_batch(parent_id, metrics=metrics[start : start + 1000])
    skipped = [c for c in forgetting.changes if c.skipped]
    for change in skipped:  # in the log and in forgetting/runs.csv; counted on the console
        log.info("learned/forgotten: %s not analysed: %s", change.subject.run_name, change.skipped)
    print(
        f"learned/forgotten: {len(forgetting.analysed)} runs ({len(skipped)} not analysed), "
        f"{len(forgetting.pairs)} LoRA-vs-FT pairs, at equal learning LoRA forgets less: "
        f"{forgetting.finding.verdict} (artifacts {contract.ARTIFACT_FORGETTING_DIR}/ of the "
        f"sweep's run {parent_id})"
    )
