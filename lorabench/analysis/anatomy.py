"""The report's anatomy section: what each tuned run's weight update looks like, from the
per-matrix measurements `lorabench.anatomy` logs (`anatomy/layers.csv`).

Per measured matrix, ΔW = tuned weight − starting weight (a chained run's starting weight is its
base run's model): its effective rank (the rank holding `anatomy.energy`, 90%, of ΔW's squared
singular values; Biderman et al. 2024, "LoRA Learns Less and Forgets Less"), its relative change
‖ΔW‖_F / ‖W‖_F, and its intruder dimensions (of the tuned weight's top `anatomy.intruder_top_k`,
10, singular vectors, those whose largest |cosine| with the starting weight's singular vectors is
below `anatomy.intruder_threshold`, 0.5; Shuttleworth et al. 2025, "LoRA vs Full Fine-tuning: An
Illusion of Equivalence"). A run's numbers are means over its measured matrices.

The findings are measurements, not tests: each states the numbers it rests on, says where a
pattern holds and where not, and "cannot tell" (with why) where the runs do not say.

    layers = load_anatomy_layers(uri, runs["run_id"])     # one row per (run, matrix)
    part = write_anatomy(layers, runs, "reports/demo")     # figures/anatomy_*.png + markdown
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.runs import BASE_METHOD, sort_runs
from lorabench.contract import METHOD_FT, METHOD_LORA

CANNOT_TELL = "cannot tell"

LAYER_FRAME_COLUMNS = ("run_id", *contract.ANATOMY_LAYER_COLUMNS)
"""`load_anatomy_layers`'s columns: the run, then `anatomy/layers.csv`'s own."""
_LAYER_TEXT = ("run_id", "tensor", "module")
"""The layer frame's text columns; the others are numbers (`layer` NaN outside the blocks)."""

MEASURES = tuple(contract.ANATOMY_MEASURES)
"""`effective_rank`, `relative_change`, `intruders`: a matrix's measures."""
SUMMARY_COLUMNS = (
    "run_id",
    "run_name",
    "method",
    "family",
    "base_model",
    "data",
    "num_samples",
    "base_run",
    "base_params",
    "matrices",
    *MEASURES,
    "intruders_total",
)
"""`anatomy_summary`'s columns: a run's row of the tidy table, its method's family (`lora` for
every LoRA variant, `ft`), how many matrices were measured, the means of the measures over them
and the intruder dimensions summed over them."""

_DESCRIBED = (
    "run_id",
    "run_name",
    "method",
    "base_model",
    "data",
    "num_samples",
    "base_run",
    "base_params",
)
"""The tidy table's columns a summary row keeps: what the run trained."""

# Loading ----------------------------------------------------------------------------------------


def load_anatomy_layers(uri_or_client: str | MlflowClient, run_ids: Iterable[str]) -> pd.DataFrame:
    """Every run's `anatomy/layers.csv` (one row per measured matrix, LAYER_FRAME_COLUMNS),
    downloaded through MLflow's artifact API; runs without it (not measured) have no rows."""
    client = (
        uri_or_client
        if isinstance(uri_or_client, MlflowClient)
        else MlflowClient(tracking_uri=uri_or_client)
    )
    folder = str(PurePosixPath(contract.ARTIFACT_ANATOMY_LAYERS).parent)
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in dict.fromkeys(run_ids):
            listed = {f.path for f in client.list_artifacts(run_id, folder)}
            if contract.ARTIFACT_ANATOMY_LAYERS not in listed:
                continue  # not measured (yet): the report says so, it is no error
            # A folder per run: every run's artifact has the same name.
            target = Path(tmp) / run_id
            target.mkdir()
            local = client.download_artifacts(run_id, contract.ARTIFACT_ANATOMY_LAYERS, str(target))
            frames.append(pd.read_csv(local).assign(run_id=run_id))
    return layer_frame(frames)


def layer_frame(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """`layers.csv` tables (each with `run_id`) as one frame of LAYER_FRAME_COLUMNS, the
    numbers as floats; empty, with those columns, when there are none."""
    parts = [f for f in frames if len(f)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.reindex(columns=list(LAYER_FRAME_COLUMNS))
    for column in LAYER_FRAME_COLUMNS:
        if column in _LAYER_TEXT:
            frame[column] = frame[column].astype(object)
        else:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def method_family(method: Any) -> str | None:
    """`ft` for full fine-tuning, `lora` for LoRA and every variant (`lora-r64`, `dora`,
    `rslora`, ...), None for a base row or an unknown method."""
    if not isinstance(method, str) or method == BASE_METHOD:
        return None
    return METHOD_FT if method == METHOD_FT else METHOD_LORA


def anatomy_summary(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `runs` (the tidy table) with rows in `layers`, in the paper's order
    (SUMMARY_COLUMNS): its matrices and the means of their measures."""
    if layers.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    measured = (
        layers.groupby("run_id", sort=False)
        .agg(
            matrices=("tensor", "size"),
            **{m: (m, "mean") for m in MEASURES},
            intruders_total=("intruders", "sum"),
        )
        .reset_index()
    )
    # The measures from the layers themselves (the runs table's run-level metrics are the same
    # means, but a run's metrics and its artifact are written apart).
    described = runs[[c for c in _DESCRIBED if c in runs.columns]]
    summary = described.merge(measured, on="run_id", how="inner")
    summary["family"] = summary["method"].map(method_family)
    return sort_runs(summary)[list(SUMMARY_COLUMNS)].reset_index(drop=True)


# Findings ---------------------------------------------------------------------------------------


def shared_sizes(summary: pd.DataFrame) -> pd.DataFrame:
    """Per base model and data where both were measured, the means of LoRA's (the paper's rank,
    method `lora`) and FT's single-stage runs: `label`, `num_samples`, `lora_<measure>`,
    `ft_<measure>`, `lora_runs`, `ft_runs`; ordered by model and data size."""
    single = summary[summary["base_run"].isna() & summary["method"].isin([METHOD_LORA, METHOD_FT])]
    rows = []
    for (model, data), group in single.groupby(["base_model", "data"], sort=False):
        by = dict(list(group.groupby("method")))
        if set(by) != {METHOD_LORA, METHOD_FT}:
            continue
        row = {"model": model, "data": data, "num_samples": group["num_samples"].iloc[0]}
        for method, part in by.items():
            row[f"{method}_runs"] = len(part)
            row.update({f"{method}_{m}": part[m].mean() for m in MEASURES})
        rows.append(row)
    columns = ["model", "data", "num_samples", "lora_runs", "ft_runs"]
    columns += [f"{method}_{m}" for method in (METHOD_LORA, METHOD_FT) for m in MEASURES]
    pairs = pd.DataFrame(rows, columns=columns).sort_values(["model", "num_samples"])
    labels = pairs["data"].astype(str)
    if pairs["model"].nunique() > 1:  # a size alone would not say which model's
        labels = pairs["model"].astype(str) + " " + labels
    pairs.insert(0, "label", labels)
    return pairs.reset_index(drop=True)


_NO_PAIRS = (
    f"{CANNOT_TELL}: no LoRA run (the paper's rank, `lora`) and FT run of one base model on the "
    "same data both have their anatomy measured"
)


def _listed(labels: Iterable[str]) -> str:
    return ", ".join(labels) or "no size"


def effective_rank_finding(pairs: pd.DataFrame) -> str:
    """Whether FT's updates are of higher effective rank than LoRA's at every shared data size
    (`shared_sizes`), with the numbers; otherwise where it holds and where not."""
    if pairs.empty:
        return _NO_PAIRS
    holds = pairs["ft_effective_rank"] > pairs["lora_effective_rank"]
    numbers = "; ".join(
        f"{p.label}: FT {p.ft_effective_rank:.1f} against LoRA {p.lora_effective_rank:.1f}"
        for p in pairs.itertuples()
    )
    if holds.all():
        sizes = f"{len(pairs)} size{'s' * (len(pairs) > 1)}"
        return (
            f"FT's updates are of higher effective rank than LoRA's at every data size "
            f"({sizes}): {numbers}"
        )
    return (
        f"FT's updates are of higher effective rank than LoRA's at {_listed(pairs.label[holds])}, "
        f"not at {_listed(pairs.label[~holds])}: {numbers}"
    )


def intruder_finding(pairs: pd.DataFrame) -> str:
    """Whether LoRA introduces intruder dimensions and FT none at every shared data size
    (`shared_sizes`); else whether LoRA has more than FT at every size; else where it has."""
    if pairs.empty:
        return _NO_PAIRS
    numbers = "; ".join(
        f"{p.label}: LoRA {p.lora_intruders:.2f} against FT {p.ft_intruders:.2f}"
        for p in pairs.itertuples()
    )
    if ((pairs["lora_intruders"] > 0) & (pairs["ft_intruders"] == 0)).all():
        return (
            f"LoRA introduces intruder dimensions, FT does not, at every data size (per "
            f"matrix): {numbers}"
        )
    more = pairs["lora_intruders"] > pairs["ft_intruders"]
    lora, ft = pairs["lora_intruders"].mean(), pairs["ft_intruders"].mean()
    means = (
        f"LoRA {lora:.2f} against FT {ft:.2f} intruder dimensions per matrix (mean over "
        f"{len(pairs)} data size{'s' * (len(pairs) > 1)})"
    )
    if more.all():
        return (
            f"LoRA's updates hold more intruder dimensions than FT's at every data size, though "
            f"FT's are not none: {means}: {numbers}"
        )
    return (
        f"{means}; LoRA's more than FT's at {_listed(pairs.label[more])}, not at "
        f"{_listed(pairs.label[~more])}: {numbers}"
    )


def _compared(own: float, base: float, words: tuple[str, str, str]) -> str:
    """`words` (above, below, equal) for `own` against `base`."""
    return words[0] if own > base else words[1] if own < base else words[2]


def chained_findings(summary: pd.DataFrame) -> list[str]:
    """The §4.5 rows: each chained run's effective rank and intruders against its base run's
    own update (that run's ΔW from the pretrained base); "cannot tell" where either is missing."""
    chained = summary[summary["base_run"].notna()]
    if chained.empty:
        return [
            f"{CANNOT_TELL}: no chained run (`<base run>+<method>(<data>)`, the paper's §4.5 "
            "rows) has its anatomy measured"
        ]
    bases = summary.drop_duplicates("run_name").set_index("run_name")
    lines = []
    for row in chained.itertuples():
        own = (
            f"`{row.run_name}`: effective rank {row.effective_rank:.1f}, "
            f"{row.intruders:.2f} intruder dimensions per matrix"
        )
        if row.base_run not in bases.index:
            lines.append(
                f"{own}; against its base `{row.base_run}`: {CANNOT_TELL} (its own update is "
                "not measured)"
            )
            continue
        base = bases.loc[row.base_run]
        rank = _compared(row.effective_rank, base["effective_rank"], ("higher", "lower", "equal"))
        intruders = _compared(row.intruders, base["intruders"], ("more", "fewer", "as many"))
        lines.append(
            f"{own}; its base `{row.base_run}`'s own update {base['effective_rank']:.1f} and "
            f"{base['intruders']:.2f} (rank {rank}, {intruders} intruders)"
        )
    return lines
