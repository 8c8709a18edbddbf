"""The benchmark results of tuned runs and of the runs they started from, read back from the
artifacts the benchmark stage logs (`contract.ARTIFACT_BENCH_DIR`): per task its role and
primary metric (`summary.csv`), its per-item values (`<task>/items.jsonl`), and the held-out
world text's per-document negative log-likelihood (`world_perplexity/items.jsonl`).

The run a tuned run started from: the run named by its `base_run_id` tag (a chained run, the
paper's §4.5 rows), else the base row (tag `run_kind=base`) of its experiment whose `base_model`
tag is the run's (the same weights loaded). A malformed file stops with its run, path and line.

    subjects = load_subjects(tracking_uri, tuned_runs)   # tuned_runs: rows of runs.load_runs
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.runs import AnalysisError

ROLES = (contract.BENCH_ROLE_TARGET, contract.BENCH_ROLE_RETENTION)
WORLD_COLUMNS = ("nll", "tokens")


class BenchmarkError(AnalysisError):
    """A benchmark artifact that cannot be read as the contract says; names run, file, line."""


@dataclass(frozen=True)
class RunBenchmarks:
    """One run's benchmark results."""

    run_id: str
    run_name: str
    roles: Mapping[str, str]
    """Task → role (`contract.BENCH_ROLE_TARGET` or `BENCH_ROLE_RETENTION`)."""
    metrics: Mapping[str, str]
    """Task → its primary metric (the values in `items`)."""
    items: Mapping[str, pd.Series] = field(repr=False)
    """Task → the primary metric per item, indexed by item key."""
    world: pd.DataFrame | None = field(default=None, repr=False)
    """Per held-out world document (index: its key): `nll` (nats, summed) and `tokens`."""

    def tasks(self, role: str) -> list[str]:
        """The tasks of `role` with item values, sorted."""
        return sorted(t for t, r in self.roles.items() if r == role and t in self.items)


def _where(run: str, path: str, line: int | None = None) -> str:
    return f"run `{run}`, artifact {path}" + (f", line {line}" if line is not None else "")


def _number(value: object, where: str, key: str) -> float:
    """A finite number, or BenchmarkError naming the key (a bool or a string is no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BenchmarkError(f"{where}: `{key}` is {value!r}, not a finite number")
    return float(value)


def read_summary(path: Path, run: str) -> pd.DataFrame:
    """`summary.csv` with the contract's columns, a known role and one row per task."""
    where = _where(run, contract.ARTIFACT_BENCH_SUMMARY)
    try:
        frame = pd.read_csv(path, dtype={"task": str, "role": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BenchmarkError(f"{where}: not a CSV table ({err})") from err
    missing = [c for c in contract.BENCH_SUMMARY_COLUMNS if c not in frame.columns]
    if missing:
        raise BenchmarkError(f"{where}: no column {', '.join(missing)}")
    for number, row in enumerate(frame.itertuples(index=False), start=2):  # line 1: header
        if row.role not in ROLES:
            raise BenchmarkError(
                f"{_where(run, contract.ARTIFACT_BENCH_SUMMARY, number)}: role {row.role!r} of "
                f"task {row.task!r} is none of {', '.join(ROLES)}"
            )
    twice = sorted(frame.loc[frame["task"].duplicated(), "task"])
    if twice:
        raise BenchmarkError(f"{where}: tasks listed twice: {', '.join(twice)}")
    return frame


def read_items(path: Path, run: str, task: str, fields: Iterable[str]) -> pd.DataFrame:
    """A task's `items.jsonl`: per line a JSON object with `item` and the numeric `fields`;
    indexed by item key (unique)."""
    artifact = contract.bench_items_artifact(task)
    rows, keys = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = _where(run, artifact, number)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BenchmarkError(f"{where}: not JSON ({err.msg})") from err
        if not isinstance(row, dict) or not isinstance(row.get("item"), str):
            raise BenchmarkError(f"{where}: no `item` key (a string)")
        keys.append(row["item"])
        rows.append([_number(row.get(f), where, f) for f in fields])
    frame = pd.DataFrame(rows, index=pd.Index(keys, name="item"), columns=list(fields))
    twice = frame.index[frame.index.duplicated()].unique()
    if len(twice):
        raise BenchmarkError(f"{_where(run, artifact)}: item {twice[0]!r} is listed twice")
    if frame.empty:
        raise BenchmarkError(f"{_where(run, artifact)}: no item")
    return frame


def read_run_benchmarks(folder: Path, run_id: str, run_name: str) -> RunBenchmarks | None:
    """The results under a downloaded `benchmarks/` folder (`folder`); None when the run has
    no `summary.csv`. A task of the summary without its items file is an error."""
    summary_path = folder / Path(contract.ARTIFACT_BENCH_SUMMARY).name
    if not summary_path.is_file():
        return None
    summary = read_summary(summary_path, run_name)
    items = {}
    for task in summary["task"]:
        if task == contract.BENCH_WORLD_PERPLEXITY_TASK:
            continue  # its rows are documents' likelihoods, read below
        path = folder / task / "items.jsonl"
        if not path.is_file():
            raise BenchmarkError(
                f"run `{run_name}`: task {task!r} is in {contract.ARTIFACT_BENCH_SUMMARY} but "
                f"{contract.bench_items_artifact(task)} is missing"
            )
        items[task] = read_items(path, run_name, task, ["value"])["value"]
    world_path = folder / contract.BENCH_WORLD_PERPLEXITY_TASK / "items.jsonl"
    world = None
    if world_path.is_file():
        task = contract.BENCH_WORLD_PERPLEXITY_TASK
        world = read_items(world_path, run_name, task, WORLD_COLUMNS)
    roles = dict(zip(summary["task"], summary["role"], strict=True))
    roles.pop(contract.BENCH_WORLD_PERPLEXITY_TASK, None)
    metrics = dict(zip(summary["task"], summary["metric"], strict=True))
    return RunBenchmarks(run_id, run_name, roles, metrics, items, world)


@dataclass(frozen=True)
class Subject:
    """A tuned run, its benchmark results and those of the run it started from."""

    run_id: str
    run_name: str
    method: str | None
    base_model: str | None
    data: str | None
    num_samples: float | None
    chained: bool
    """A §4.5 row: it started from another tuned run, not from a base row."""
    bench: RunBenchmarks | None
    start: RunBenchmarks | None
    start_name: str | None
    missing: str | None = None
    """Why it cannot be read against its start (no results, no starting run); None when it can."""


class _Reader:
    """Downloads and reads runs' `benchmarks/` once each."""

    def __init__(self, client: MlflowClient, tmp: Path):
        self.client, self.tmp, self.read = client, tmp, {}

    def __call__(self, run: Run) -> RunBenchmarks | None:
        run_id = run.info.run_id
        if run_id not in self.read:
            listed = {
                f.path for f in self.client.list_artifacts(run_id, contract.ARTIFACT_BENCH_DIR)
            }
            result = None
            if contract.ARTIFACT_BENCH_SUMMARY in listed:
                target = self.tmp / run_id
                target.mkdir()
                folder = self.client.download_artifacts(
                    run_id, contract.ARTIFACT_BENCH_DIR, str(target)
                )
                result = read_run_benchmarks(Path(folder), run_id, run.info.run_name or run_id)
            self.read[run_id] = result
        return self.read[run_id]


def _base_rows(client: MlflowClient, experiment_ids: Iterable[str]) -> dict[str, list[Run]]:
    """Finished base rows by their `base_model` tag, newest first."""
    kind = f"tags.`{contract.TAG_RUN_KIND}` = '{contract.RUN_KIND_BASE}'"
    rows = client.search_runs(
        sorted(set(experiment_ids)),
        filter_string=f"{kind} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    found: dict[str, list[Run]] = {}
    for row in rows:
        found.setdefault(row.data.tags.get(contract.TAG_BASE_MODEL, ""), []).append(row)
    return found


def _start(run: Run, client: MlflowClient, bases: Mapping[str, list[Run]], read: _Reader):
    """The run `run` started from (with results where one has them), or why there is none."""
    tags = run.data.tags
    if (base_run_id := tags.get(contract.TAG_BASE_RUN_ID)) is not None:
        try:
            return client.get_run(base_run_id)
        except MlflowException:  # recorded in another store
            tag = f"{contract.TAG_BASE_RUN_ID}={base_run_id}"
            return f"its starting run (tag {tag}) is not in the store"
    model = tags.get(contract.TAG_BASE_MODEL)
    if model is None:
        return f"no `{contract.TAG_BASE_MODEL}` tag: the base row it started from is unknown"
    candidates = bases.get(model, [])
    if not candidates:
        return f"no finished base row of its base model ({contract.TAG_BASE_MODEL}={model})"
    return next((c for c in candidates if read(c) is not None), candidates[0])


def _subject(row: Mapping, run: Run, start: Run | str, read: _Reader) -> Subject:
    bench = read(run)
    start_bench = read(start) if isinstance(start, Run) else None
    start_name = (start.info.run_name or start.info.run_id) if isinstance(start, Run) else None
    missing = None
    if bench is None:
        summary = contract.ARTIFACT_BENCH_SUMMARY
        missing = f"no benchmark results ({summary}): benchmark it (eval.benchmarks)"
    elif isinstance(start, str):
        missing = start
    elif start_bench is None:
        missing = f"its starting run `{start_name}` has no benchmark results"
    return Subject(
        run_id=row["run_id"],
        run_name=row["run_name"],
        method=row["method"],
        base_model=row["base_model"],
        data=row["data"],
        num_samples=None if pd.isna(row["num_samples"]) else float(row["num_samples"]),
        chained=contract.TAG_BASE_RUN_ID in run.data.tags,
        bench=bench,
        start=start_bench,
        start_name=start_name,
        missing=missing,
    )


def load_subjects(tracking_uri: str, runs: pd.DataFrame) -> list[Subject]:
    """Each tuned run of `runs` (rows of the tidy table, `runs.load_runs`) with its benchmark
    results and its starting run's, in the order of `runs`."""
    if runs.empty:
        return []
    client = MlflowClient(tracking_uri=tracking_uri)
    found = {row["run_id"]: client.get_run(row["run_id"]) for row in runs.to_dict("records")}
    bases = _base_rows(client, (r.info.experiment_id for r in found.values()))
    with tempfile.TemporaryDirectory() as tmp:
        read = _Reader(client, Path(tmp))
        return [
            _subject(
                row, found[row["run_id"]], _start(found[row["run_id"]], client, bases, read), read
            )
            for row in runs.to_dict("records")
        ]
