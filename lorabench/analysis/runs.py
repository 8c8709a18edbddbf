"""Runs of an experiment (or of one sweep) as a tidy table: one row per run, one column per
quantity the paper reports.

Names follow the tracking contract (`lorabench.contract`, `docs/tracking.md`): params
`model.name`, `method.name`, `data.*`, `base_run`; tags `eval_judge`, `eval_judge_model`,
`eval_judge_prompts`, `eval_set`, `source`, `sweep`; metrics `eval/score/<category>`,
`eval/average_score[_ci_low|_ci_high]`, `eval/judge_parse_failures[/<category>]`,
`eval/truncated_answers[/<category>]`, `model/*`, `train/hours_per_epoch`, `train/gpu_hours`,
`anatomy/effective_rank`, `anatomy/relative_change`, `anatomy/intruders`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.errors import LorabenchError
from lorabench.evaluation.eval_set import CATEGORIES
from lorabench.evaluation.scoring import macro_average

log = logging.getLogger(__name__)

CATEGORY_CI_LOW = "_ci_low"
CATEGORY_CI_HIGH = "_ci_high"
"""Suffixes of the columns holding a category's 95% interval (`others_ci_low`)."""

PARSE_FAILURES = "parse_failures"
"""Count columns of judge replies from which no score could be read (see COUNT_METRICS)."""
TRUNCATED = "truncated_answers"
"""Count columns of answers cut at `eval.decoding.max_new_tokens` (see COUNT_METRICS)."""


def count_column(kind: str, category: str | None = None) -> str:
    """The tidy table's column of a count (`PARSE_FAILURES` or `TRUNCATED`): its total, or one
    category's (`parse_failures_rewrite`)."""
    return kind if category is None else f"{kind}_{category}"


COUNT_METRICS: Mapping[str, str] = {
    PARSE_FAILURES: contract.EVAL_JUDGE_PARSE_FAILURES,
    **{count_column(PARSE_FAILURES, c): contract.eval_parse_failures(c) for c in CATEGORIES},
    TRUNCATED: contract.EVAL_TRUNCATED_ANSWERS,
    **{count_column(TRUNCATED, c): contract.eval_truncated(c) for c in CATEGORIES},
}
"""Count columns → the metric each is read from; empty (NaN) where a run logged none."""

COST_METRICS: Mapping[str, str] = {
    "hours_per_epoch": contract.TRAIN_HOURS_PER_EPOCH,
    "tokens_per_second_per_device": contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE,
    "mfu": contract.TRAIN_MFU,
    "gpu_hours": contract.TRAIN_GPU_HOURS,
}
"""Training cost columns → the metric each is read from; empty (NaN) where a run logged none."""

ROW_COLUMNS = ("run_name", "base_model", "method", "data", "num_samples", "base_run")
"""The columns that say what a row trained: its name, base model, method and data."""
_MEASURED = (
    *CATEGORIES,
    "average_score",
    "ci_low",
    "ci_high",
    *(f"{c}{CATEGORY_CI_LOW}" for c in CATEGORIES),
    *(f"{c}{CATEGORY_CI_HIGH}" for c in CATEGORIES),
    *COUNT_METRICS,
    "additional_params",
    "base_params",
    *COST_METRICS,
    *contract.ANATOMY_MEASURES,
)
_LEARNING_RATE = ("learning_rate", "usual_lr_low", "usual_lr_high", "dev_loss")

COLUMNS: tuple[str, ...] = (
    *ROW_COLUMNS,
    *_MEASURED,
    *_LEARNING_RATE,
    "judge",
    "judge_model",
    "judge_prompts",
    "eval_set",
    "evaluated",
    "status",
    "source",
    "profile",
    "run_id",
    "parent_run_id",
)
"""The tidy table's columns. Scores are in [0, 1]; `num_samples` is the training set's size
(rows kept, else the configured size); `base_params` the base model's parameter count (without
LoRA's); `judge_model` the model name(s) the judge's server reported (comma-separated) and
`judge_prompts` the judge's prompts, None where not recorded; `usual_lr_low` / `usual_lr_high`
the run's method's usual learning rates; `dev_loss` the loss on the held-out development split;
`evaluated` is False for runs that hold no `eval/` score and no judged-items count at all; the
counts (COUNT_METRICS) are empty where a run logged none; `<category>_ci_low` and `_ci_high`
bound a category's mean (empty for runs evaluated before they were logged); `effective_rank`,
`relative_change` and `intruders` the means over its measured matrices of its weight update's
anatomy (`contract.ANATOMY_MEASURES`; empty for runs not measured); `tokens_per_second_per_device`
and `mfu` the training session's throughput per GPU and model FLOPs utilisation (`mfu` empty on
CPU hardware, where none is measured)."""

_NUMERIC = (*_MEASURED, "num_samples", *_LEARNING_RATE)
"""The columns held as floats (NaN where empty)."""

PAPER_RUN_PREFIX = "[paper] "
"""Run-name prefix of the paper's reference runs in MLflow (see paper_runs.import_paper_runs)."""

NOT_EVALUATED = "not evaluated"
"""The section label of runs without evaluation metrics."""

BASE_METHOD = "base"
"""The `method` of a base row: the untuned base model itself (tag `run_kind=base`)."""
METHOD_ORDER = {BASE_METHOD: 0, contract.METHOD_LORA: 1, contract.METHOD_FT: 2}
"""Within a base model's runs: its base row first, then LoRA, then FT (then any other)."""

_SCALE = re.compile(r"(\d+(?:\.\d+)?)([km]?)$", re.IGNORECASE)


class AnalysisError(LorabenchError):
    """There is nothing (valid) to tabulate or plot; the message says why and what to do."""


@dataclass(frozen=True)
class Section:
    """Runs whose scores are comparable: the same judge on the same eval set."""

    judge: str | None
    eval_set: str | None
    runs: pd.DataFrame

    @property
    def evaluated(self) -> bool:
        return self.judge is not None

    @property
    def label(self) -> str:
        if not self.evaluated:
            return NOT_EVALUATED
        return f"judge {self.judge} on eval set {self.eval_set}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label."""
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-").lower()


def project_root(start: str | Path | None = None) -> Path:
    """The repository a notebook or command runs in: the nearest directory at or above `start`
    (default: the working directory) holding `pyproject.toml`, else `start` itself."""
    here = Path(start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "pyproject.toml").is_file()), here)


def load_runs(
    tracking_uri: str,
    experiment: str,
    *,
    parent_run_id: str | None = None,
    include_paper: bool = False,
) -> pd.DataFrame:
    """The finished runs of `experiment` (or of the sweep `parent_run_id`) as a tidy table.

    Sweep parent runs (tag `sweep=true`, or the parent of another run) are left out; so are the
    paper's reference runs (tag `source=paper`) unless `include_paper`. Runs that did not finish
    (FAILED, KILLED, still RUNNING) are left out and counted in `df.attrs["excluded"]`
    ({status: count}), with a warning. Runs without evaluation metrics are kept, with
    `evaluated=False`. Pretraining runs of demo bases (tag `run_kind=pretraining`) are left out;
    base rows (`run_kind=base`, the untuned base evaluated) are kept with method `base`.

    Raises AnalysisError when the experiment does not exist or holds no finished run.
    """
    client, experiment_id = open_experiment(tracking_uri, experiment)
    filter_string = ""
    if parent_run_id is not None:
        filter_string = f"tags.`{contract.TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
    runs = list(search_all(client, experiment_id, filter_string))
    kept, excluded = _finished(runs, include_paper=include_paper)
    where = f"experiment {experiment!r}" + (
        f" (sweep {parent_run_id})" if parent_run_id is not None else ""
    )
    if excluded:
        log.warning("%s: left out %s", where, _counts(excluded))
    if not kept:
        detail = f"; left out {_counts(excluded)}" if excluded else ""
        raise AnalysisError(
            f"{where} in {tracking_uri} has no finished run{detail}: "
            "train (python train.py ...) and evaluate (python evaluate.py run=...) first"
        )
    names = {r.info.run_id: r.info.run_name for r in runs}
    frame = run_frame(kept, names)
    frame.attrs["excluded"] = dict(excluded)
    frame.attrs["source"] = f"{where} in {tracking_uri}"
    return frame


def finished_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The experiment's finished runs as `load_runs` keeps them (no sweep parents, pretraining
    or paper rows; base rows kept), oldest first."""
    return _finished(list(search_all(client, experiment_id, "")), include_paper=False)[0]


def open_experiment(tracking_uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client of the store and the experiment's id; AnalysisError, saying what is there, when
    the store or the experiment is missing."""
    if tracking_uri.startswith("sqlite:///"):
        # Checked before any client opens it: opening a missing sqlite store creates an empty one.
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise AnalysisError(
                f"no MLflow store at {path}: train runs first, or point at yours "
                "(tracking_uri=... or MLFLOW_TRACKING_URI)"
            )
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise AnalysisError(
            f"no experiment {experiment!r} in {tracking_uri} (experiments there: "
            f"{', '.join(known) or 'none'}); train runs first or pass another experiment"
        )
    return client, exp.experiment_id


def _finished(runs: Sequence[Run], *, include_paper: bool) -> tuple[list[Run], Counter[str]]:
    """The runs to tabulate (see `load_runs`) and the unfinished ones left out, by status."""
    parents = {r.data.tags.get(contract.TAG_PARENT_RUN_ID) for r in runs}
    kept: list[Run] = []
    excluded: Counter[str] = Counter()
    for run in runs:
        tags = run.data.tags
        if tags.get(contract.TAG_SWEEP, "").lower() == "true" or run.info.run_id in parents:
            continue
        if tags.get(contract.TAG_SOURCE) == "paper" and not include_paper:
            continue
        if tags.get(contract.TAG_RUN_KIND) == contract.RUN_KIND_PRETRAINING:
            continue  # a demo base's pretraining: no row of the study's tables
        if run.info.status != "FINISHED":
            excluded[run.info.status] += 1
            continue
        kept.append(run)
    return kept, excluded


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counter.items()))


def sweep_parents(client: MlflowClient, experiment_id: str, parent_run_id: str | None) -> list[Run]:
    """The experiment's sweep parent runs (tag `sweep=true`), or only `parent_run_id` when
    given; oldest first."""
    if parent_run_id is not None:
        parents = [client.get_run(parent_run_id)]
    else:
        parents = list(search_all(client, experiment_id, f"tags.`{contract.TAG_SWEEP}` = 'true'"))
    return sorted(parents, key=lambda run: run.info.start_time or 0)


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> Iterator[Run]:
    """Every run of the experiment that `filter_string` selects, oldest first, page by page."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def run_frame(runs: Iterable[Run], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The tidy table of MLflow runs as they are (no filtering); `names` maps run ids to run
    names, for base runs recorded by id."""
    return frame_from_records(_record(r, names or {}) for r in runs)


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A tidy table from dicts keyed by COLUMNS (missing keys are empty).

    The average score is the logged one; where it is missing but all 9 categories are scored,
    it is their macro average (as the paper computes it).
    """
    frame = pd.DataFrame.from_records(list(records), columns=list(COLUMNS))
    for column in _NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    scored = frame[list(CATEGORIES)].notna().all(axis=1) & frame["average_score"].isna()
    for i in frame.index[scored]:
        frame.loc[i, "average_score"] = macro_average(frame.loc[i, list(CATEGORIES)].to_dict())
    frame["evaluated"] = frame["evaluated"].eq(True)  # a record without the key: not evaluated
    for column in ("judge", "eval_set"):  # scored, but by whom or on what is not recorded
        frame.loc[frame["evaluated"] & frame[column].isna(), column] = "unknown"
    for column in (
        "base_run",
        "judge",
        "judge_model",
        "judge_prompts",
        "eval_set",
        "parent_run_id",
        "profile",
        "run_id",
    ):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _record(run: Run, names: Mapping[str, str]) -> dict[str, Any]:
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    name = run.info.run_name or run.info.run_id
    parsed = parse_run_name(tags.get(contract.TAG_PAPER_RUN) or name)
    scores = {c: metrics.get(contract.eval_score(c)) for c in CATEGORIES}
    for c in CATEGORIES:
        scores[f"{c}{CATEGORY_CI_LOW}"] = metrics.get(contract.eval_score_ci_low(c))
        scores[f"{c}{CATEGORY_CI_HIGH}"] = metrics.get(contract.eval_score_ci_high(c))
    # Judged with no score read (every reply unparseable) still counts as evaluated: its counts
    # say what went wrong, and it is no run still to evaluate.
    evaluated = any(
        k.startswith(contract.EVAL_SCORE_PREFIX)
        or k in (contract.EVAL_AVERAGE_SCORE, contract.EVAL_JUDGED_ITEMS)
        for k in metrics
    )
    additional = metrics.get(contract.MODEL_ADDITIONAL_PARAMS)
    total = metrics.get(contract.MODEL_TOTAL_PARAMS)
    base_model = _param(params, "model.name") or parsed.get("model")
    base_params = total - (additional or 0) if total is not None else model_size(base_model)
    base_run = _param(params, "base_run") or tags.get(contract.TAG_BASE_RUN_ID)
    base_run = names.get(base_run, base_run)  # a run id → that run's name
    if base_run is None and "chain" in parsed:
        base_run = f"{parsed['model']}+{parsed['chain']}"
    data = _param(params, "data.name") or parsed.get("data")
    return {
        "run_name": name,
        "base_model": base_model,
        # The name's label tells variants apart (`lora-r64`); the param is `lora` for all.
        "method": BASE_METHOD
        if tags.get(contract.TAG_RUN_KIND) == contract.RUN_KIND_BASE
        else parsed.get("method") or _param(params, "method.name"),
        "data": data,
        "num_samples": metrics.get(contract.DATA_ROWS_KEPT) or _configured_samples(params, data),
        "base_run": base_run,
        **scores,
        "average_score": metrics.get(contract.EVAL_AVERAGE_SCORE),
        "ci_low": metrics.get(contract.EVAL_AVERAGE_SCORE_CI_LOW),
        "ci_high": metrics.get(contract.EVAL_AVERAGE_SCORE_CI_HIGH),
        **{column: metrics.get(metric) for column, metric in COUNT_METRICS.items()},
        "additional_params": additional,
        "base_params": base_params,
        **{column: metrics.get(metric) for column, metric in COST_METRICS.items()},
        **{column: metrics.get(metric) for column, metric in contract.ANATOMY_MEASURES.items()},
        "learning_rate": _number(_param(params, "method.learning_rate")),
        "usual_lr_low": _number(_param(params, "method.usual_learning_rates.low")),
        "usual_lr_high": _number(_param(params, "method.usual_learning_rates.high")),
        "dev_loss": metrics.get(contract.DEV_LOSS),
        "judge": tags.get(contract.TAG_EVAL_JUDGE, "unknown") if evaluated else None,
        # An empty tag: a judge that reports no model (the offline reference judge).
        "judge_model": tags.get(contract.TAG_EVAL_JUDGE_MODEL) or None,
        "judge_prompts": tags.get(contract.TAG_EVAL_JUDGE_PROMPTS) or None,
        "eval_set": tags.get(contract.TAG_EVAL_SET, "unknown") if evaluated else None,
        "evaluated": evaluated,
        "status": run.info.status,
        "source": "paper" if tags.get(contract.TAG_SOURCE) == "paper" else "ours",
        "profile": tags.get(contract.TAG_PROFILE),
        "run_id": run.info.run_id,
        "parent_run_id": tags.get(contract.TAG_PARENT_RUN_ID),
    }


def _param(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "", "None", "null") else value


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _configured_samples(params: Mapping[str, str], data: str | None) -> float | None:
    n = _number(_param(params, "data.num_samples")) or _number(
        _param(params, "data.nominal_samples")
    )
    if n is None and data is not None:
        n = data_scale(data)
    fraction = _number(_param(params, "data.demo_fraction"))
    if n is not None and fraction is not None:
        n = round(n * fraction)
    return n


def parse_run_name(name: str) -> dict[str, str]:
    """`llama-7b+ft(2m)+lora-r64(math_0.25m)[seed=2]` → model, chain (`ft(2m)`), method
    (`lora-r64`), data, axes (`seed=2`), as `contract.parse_run_name`; {} if the name is not of
    that form."""
    return {k: v for k, v in (contract.parse_run_name(name) or {}).items() if v}


def data_scale(name: str) -> float | None:
    """The number of samples a data name states: `0.6m` → 600,000; `math_0.25m` → 250,000."""
    match = _SCALE.search(name)
    if match is None:
        return None
    factor = {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    return float(match.group(1)) * factor


MODEL_SIZES = {"llama-7b": 6_738_415_616, "llama-13b": 13_015_864_320}
"""Parameter counts of the paper's base models, for runs that logged none (the paper's own)."""


def model_size(name: str | None) -> float | None:
    """A known base model's parameter count (`llama-7b` → 6.74e9); None for others, whose
    runs log it (`model/total_params`)."""
    size = MODEL_SIZES.get(name or "")
    return float(size) if size is not None else None


def sections(runs: pd.DataFrame) -> list[Section]:
    """Split runs into groups of comparable scores (judge × eval set), evaluated ones first in
    order of appearance, then the runs without evaluation metrics."""
    out = []
    evaluated = runs[runs["evaluated"]]
    keys = list(zip(evaluated["judge"], evaluated["eval_set"], strict=True))
    for judge, eval_set in dict.fromkeys(keys):
        part = evaluated[[k == (judge, eval_set) for k in keys]]
        out.append(Section(judge, eval_set, part))
    rest = runs[~runs["evaluated"]]
    if len(rest):
        out.append(Section(None, None, rest))
    return out


def missing_categories(row: Mapping[str, Any]) -> list[str]:
    """The categories a run has no score for."""
    return [c for c in CATEGORIES if _isnan(row.get(c))]


def _isnan(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def sort_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Paper order: by base model size, single-stage runs before chained ones, the base row
    before LoRA before FT, then by data size."""
    key = pd.DataFrame(
        {
            "size": runs["base_params"].fillna(0).to_numpy(),
            # astype: a column no run fills is float, and filling it with "" is deprecated.
            "model": runs["base_model"].astype(object).fillna("").to_numpy(),
            "chained": runs["base_run"].notna().to_numpy(),
            "method": runs["method"].map(METHOD_ORDER).fillna(len(METHOD_ORDER)).to_numpy(),
            "samples": runs["num_samples"].fillna(0).to_numpy(),
            "name": runs["run_name"].to_numpy(),
        }
    ).reset_index(drop=True)
    order = key.sort_values(list(key.columns), kind="stable").index
    return runs.iloc[order]
