"""The benchmark stage: lm-eval's tasks (`eval.benchmarks`) and the world text's perplexity
(`eval.world_perplexity`) on exactly the model the judge scored, logged into its run.

In the target's evaluation directory, `benchmarks/` keeps lm-eval's request cache (a sqlite file
of every model response, keyed by the weights and context length: a rerun, or a stage that died
midway, asks the model only what is not in it), lm-eval's per-sample outputs
(`samples/<task>.jsonl`) and what is logged (`logged/`, the run's `benchmarks/` artifacts).

A task whose dataset does not load is recorded as failed (its dataset named, with the offline
hint), the others run and are logged, and the stage then raises `BenchmarkIncomplete`: the run
ends FAILED with the failure as its `error` tag, and holds no `bench_hash`, so a sweep runs the
stage again rather than taking the run as done.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench import contract
from lorabench.benchmarks import perplexity, results
from lorabench.benchmarks.tasks import TaskFailure, load_tasks, task_manager
from lorabench.config.schema import Config
from lorabench.demo import panel
from lorabench.errors import LorabenchError
from lorabench.evaluation.backends import loaded_model
from lorabench.evaluation.targets import BENCHMARK_KEYS, Target
from lorabench.identity import digest, section_hash
from lorabench.tracking.runs import Run

log = logging.getLogger(__name__)

BENCH_DIR = "benchmarks"
"""In an evaluation directory: the stage's cache, samples and logged files."""
CACHE_PREFIX = "lm_eval_cache-"
HOW_RUN = ("eval.lm_eval.batch_size",)
"""Benchmark keys that change how fast, not what is scored: no part of the `bench_hash`."""


class BenchmarkIncomplete(LorabenchError):
    """Some benchmark tasks could not run (the others were logged)."""


@dataclass(frozen=True)
class BenchResult:
    """What the stage logged: its metrics, and the tasks that failed."""

    metrics: dict[str, float]
    failures: list[TaskFailure]


def wanted(cfg: Config) -> bool:
    """Whether the config has a benchmark stage at all."""
    return bool(cfg.eval.benchmarks) or cfg.eval.world_perplexity


def bench_hash(cfg: Config, target: Target) -> str:
    """The `bench_hash` tag: the benchmark settings and the weights they measured."""
    pretrain = cfg.model.pretrain if cfg.eval.world_perplexity else None
    world = None if pretrain is None else (pretrain.heldout_documents, pretrain.corpus_seed)
    # The demo panel's items and scoring are the repository's: a new version measures anew.
    demo = [f"panel-{panel.PANEL_VERSION}"] if set(cfg.eval.benchmarks) & set(panel.TASKS) else []
    weights = target.spec.fingerprint()
    return section_hash(cfg, BENCHMARK_KEYS, weights, world, *demo, exclude=HOW_RUN)


def benchmarked(cfg: Config, target: Target, tags: Mapping[str, str]) -> bool:
    """Whether a run's tags say it holds this config's benchmarks of the target's weights."""
    return not wanted(cfg) or tags.get(contract.TAG_BENCH_HASH) == bench_hash(cfg, target)


def run_benchmarks(cfg: Config, target: Target, run: Run) -> BenchResult:
    """Score the target on `eval.benchmarks` (and the world text), log it into `run`; raises
    BenchmarkIncomplete, after logging the rest, when a task could not run."""
    started = time.monotonic()
    directory = target.eval_dir / BENCH_DIR
    logged = directory / "logged"
    shutil.rmtree(logged, ignore_errors=True)
    logged.mkdir(parents=True)
    manager = task_manager(cfg)
    tasks, failures = load_tasks(manager, cfg.eval.benchmarks)
    for failure in failures:
        log.error("benchmark %s", failure.message)
    model, tokenizer = loaded_model(cfg, target)
    weights = digest([target.spec.fingerprint(), cfg.eval.lm_eval.max_length])[:16]
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    if tasks:
        cache = _request_cache(directory, weights)
        log.info("%s: benchmarks %s", target.name, ", ".join(n for n, _ in tasks))
        # lm-eval's own progress bars (several per task) would bury the sweep's summary lines.
        with contextlib.redirect_stderr(io.StringIO()):
            output = _lm_eval(cfg, model, tokenizer, [t for _, t in tasks], manager, cache)
        metrics, rows = _record(cfg, output, tasks, directory, logged)
    if cfg.eval.world_perplexity:
        metrics[contract.BENCH_WORLD_PERPLEXITY] = _world(cfg, model, tokenizer, directory, weights)
        items = _items_path(logged, contract.BENCH_WORLD_PERPLEXITY_TASK)
        items.parent.mkdir(parents=True)
        shutil.copy(directory / contract.BENCH_WORLD_PERPLEXITY_TASK / "items.jsonl", items)
    _write_summary(rows, logged / Path(contract.ARTIFACT_BENCH_SUMMARY).name)
    metrics[contract.BENCH_SECONDS] = time.monotonic() - started
    run.log_metrics(metrics)
    run.log_artifacts(logged, contract.ARTIFACT_BENCH_DIR)
    if failures:
        listed = "; ".join(f.message for f in failures)
        raise BenchmarkIncomplete(
            f"{len(failures)} of {len(cfg.eval.benchmarks)} benchmark(s) could not run, the "
            f"others are logged: {listed}"
        )
    run.set_tags({contract.TAG_BENCH_HASH: bench_hash(cfg, target)})
    return BenchResult(metrics, failures)


def _request_cache(directory: Path, weights: str) -> Path:
    """lm-eval's request cache for these weights (one of other weights is removed: a model
    retrained in place answers anew)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"{CACHE_PREFIX}*"):
        if not stale.name.startswith(f"{CACHE_PREFIX}{weights}"):
            log.warning("%s: responses of other weights; removed", stale)
            stale.unlink()
    return directory / f"{CACHE_PREFIX}{weights}"


def _lm_eval(
    cfg: Config, model: Any, tokenizer: Any, tasks: list[Any], manager: Any, cache: Path
) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    settings = cfg.eval.lm_eval
    lm = HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
    )
    seed = cfg.eval.seed
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        log_samples=True,
        use_cache=str(cache),
        bootstrap_iters=settings.bootstrap_iters,
        num_fewshot=settings.num_fewshot,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


def _name_and_leaves(task: Any) -> tuple[str, list[str]]:
    """A loaded task's name in lm-eval's results, and the leaf tasks its samples are under."""
    from lm_eval.api.group import Group

    if isinstance(task, Group):
        return task.name, [t.task_name for t in task.get_all_tasks()]
    return task.task_name, [task.task_name]


def _record(
    cfg: Config,
    output: dict[str, Any],
    tasks: list[tuple[str, Any]],
    directory: Path,
    logged: Path,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and summary rows of lm-eval's output; its samples kept, items written."""
    samples = output.get("samples", {})
    _keep_samples(samples, directory / "samples")
    scores, rows = [], []
    for asked, task in tasks:
        name, leaves = _name_and_leaves(task)
        score = results.task_score(name, output["results"][name])
        items = results.item_values(score, samples, leaves)
        _write_jsonl(items, _items_path(logged, name))
        # A tag's tasks each take the tag's role.
        rows.append(results.summary_row(score, cfg.eval.benchmark_roles[asked], len(items)))
        scores.append(score)
    return results.run_metrics(scores), rows


def _keep_samples(samples: Mapping[str, list[dict]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        _write_jsonl(rows, directory / f"{task}.jsonl")


def _world(cfg: Config, model: Any, tokenizer: Any, directory: Path, weights: str) -> float:
    """The held-out world text's perplexity; its per-document losses kept (and reused for the
    same weights)."""
    path = directory / contract.BENCH_WORLD_PERPLEXITY_TASK / "items.jsonl"
    documents = perplexity.heldout_documents(cfg)
    key = digest([weights, documents])
    meta = path.with_suffix(".meta.json")
    if path.is_file() and meta.is_file() and json.loads(meta.read_text())["key"] == key:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        rows = perplexity.document_losses(model, tokenizer, documents, cfg.eval.lm_eval.batch_size)
        _write_jsonl(rows, path)
        meta.write_text(json.dumps({"key": key}))
    return perplexity.perplexity(rows)


def _items_path(logged: Path, task: str) -> Path:
    return logged / Path(contract.bench_items_artifact(task)).relative_to(
        contract.ARTIFACT_BENCH_DIR
    )


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _write_summary(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=contract.BENCH_SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
