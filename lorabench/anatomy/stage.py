"""Measure a finished run's weight update and log it to the run: `anatomy/*` metrics (means over
matrices and per module type), the per-matrix table and ΔW's spectra as artifacts.

Each matrix's result is appended to a partial file in the run's output directory as it is
measured, so an interrupted measurement resumes where it stopped; a run whose `anatomy_hash`
tag matches (same settings, same weights) is not measured again.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from lorabench import contract
from lorabench.anatomy.measures import anatomy_of
from lorabench.anatomy.weights import (
    MatrixPair,
    WeightFiles,
    hub_snapshot,
    matrix_pairs,
    measured_modules,
    starting_weights,
)
from lorabench.config.schema import AnatomyConfig, Config
from lorabench.errors import ConfigError
from lorabench.identity import section_hash
from lorabench.modeling.trained import TrainedRun, base_model_dir, spec_of_run
from lorabench.tracking.runs import Run, client_for

log = logging.getLogger(__name__)

ANATOMY_DIR = str(PurePosixPath(contract.ARTIFACT_ANATOMY_LAYERS).parent)
"""In a run's output directory and among its artifacts: the anatomy's tables (and, in the
output directory, the partial file while measuring)."""
LAYERS_FILE = PurePosixPath(contract.ARTIFACT_ANATOMY_LAYERS).name
SPECTRA_FILE = PurePosixPath(contract.ARTIFACT_ANATOMY_SPECTRA).name
PARTIAL_FILE = "partial.jsonl"
"""One measured matrix a line, with the `key` of the settings and weights it was measured for."""
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
"""A Hugging Face Hub model id (`meta-llama/Llama-2-7b-hf`), as opposed to a local path."""


@dataclass(frozen=True)
class AnatomyResult:
    """A run's anatomy: its run-level metrics and where its tables are."""

    run_id: str
    run_name: str
    metrics: Mapping[str, float]
    layers: Path
    measured_now: bool
    """False when the run already held this anatomy (nothing was measured)."""


def anatomy_key(cfg: Config, weights_digest: str) -> str:
    """The `anatomy_hash` tag: the anatomy settings and the weights they measured (not where
    the decompositions ran)."""
    return section_hash(cfg, ("anatomy",), weights_digest, exclude=("anatomy.device",))


def measure_run(cfg: Config, ref: str, *, progress: bool = True) -> AnatomyResult:
    """Measure the weight update of the finished run `ref` (id or name) against the weights it
    started from and log it to the run; a run already measured with these settings on these
    weights is read back instead."""
    trained = spec_of_run(cfg.tracking, ref)
    label = f"run={ref!r} ({trained.name})"
    if trained.spec.method.quantised:
        raise ConfigError(
            f"{label} is a QLoRA run: its starting weights are 4-bit, so ΔW against them would "
            "hold every weight's quantisation error; the anatomy measures unquantised bases only"
        )
    key = anatomy_key(cfg, trained.weights)
    out = trained.spec.saved.parent / ANATOMY_DIR
    client = client_for(cfg.tracking)
    stored = client.get_run(trained.run_id).data
    if stored.tags.get(contract.TAG_ANATOMY_HASH) == key and (out / LAYERS_FILE).is_file():
        metrics = {k: v for k, v in stored.metrics.items() if k.startswith(contract.ANATOMY_PREFIX)}
        return AnatomyResult(trained.run_id, trained.name, metrics, out / LAYERS_FILE, False)
    device = anatomy_device(cfg.anatomy)  # before any work: a missing GPU is said first
    start = time.perf_counter()
    tuned = WeightFiles(base_model_dir(trained, cfg.cache_dir), label)  # an adapter merged
    modules = measured_modules(cfg.anatomy, tuned.model_type())
    with starting_weights(_base_dir(trained, label), _builder(trained, cfg), label) as base:
        pairs, skipped = matrix_pairs(base, tuned, modules)
        row_of = partial(_matrix_row, base, tuned, anatomy=cfg.anatomy, device=device)
        rows = _measure(pairs, row_of, out / PARTIAL_FILE, key, progress)
    measured = [r for r in rows if r["delta_norm"] > 0]
    if not measured:  # e.g. a run whose steps all had a learning rate of 0 (warmup)
        log.warning(
            "%s: none of its %d selected matrices changed (anatomy.targets=%s: %s): no measure "
            "to log, only the counts",
            label,
            len(pairs),
            cfg.anatomy.targets,
            ", ".join(modules),
        )
    metrics = summary_metrics(measured, unchanged=len(rows) - len(measured), skipped=len(skipped))
    metrics[contract.ANATOMY_SECONDS] = time.perf_counter() - start
    layers = _write_tables(measured, out)
    _log(Run(client, trained.run_id), metrics, out, key)
    (out / PARTIAL_FILE).unlink()
    return AnatomyResult(trained.run_id, trained.name, metrics, layers, True)


def _base_dir(trained: TrainedRun, label: str) -> Path | None:
    """The directory of the weights the run started from (None: built from its architecture)."""
    pretrained = trained.spec.base.pretrained
    if pretrained is None:
        return None
    if Path(pretrained).is_dir():
        return Path(pretrained)
    if pretrained.startswith(".") or not HUB_ID.fullmatch(pretrained):
        raise ConfigError(
            f"{label}: the weights it started from, {pretrained}, are not on this machine; "
            "retrain the run they came from (its base run, or the demo base: "
            "python -m lorabench.demo.pretraining) or restore that directory"
        )
    return hub_snapshot(pretrained, label)


def _builder(trained: TrainedRun, cfg: Config) -> Callable[[], PreTrainedModel]:
    """Builds the base a run trained on from its architecture (its seed, as training did)."""

    def build() -> PreTrainedModel:
        from lorabench.modeling.base import build_model

        spec = replace(trained.spec, saved=None)
        return build_model(spec.base, spec.tokenizer(cfg.cache_dir), seed=spec.seed)

    return build


def _measure(
    pairs: Sequence[MatrixPair],
    row_of: Callable[[MatrixPair], dict[str, Any]],
    partial_file: Path,
    key: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Every pair's row (`row_of`, or resumed from `partial_file`'s rows of this `key`),
    appending new ones."""
    done = _partial_rows(partial_file, key)
    partial_file.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with partial_file.open("a", encoding="utf-8") as out:
        for pair in tqdm(pairs, desc="anatomy", unit="matrix", disable=not progress):
            if pair.tensor not in done:
                done[pair.tensor] = row_of(pair)
                out.write(json.dumps({"key": key, **done[pair.tensor]}) + "\n")
                out.flush()
            rows.append(done[pair.tensor])
    return rows


def _partial_rows(partial: Path, key: str) -> dict[str, dict[str, Any]]:
    if not partial.is_file():
        return {}
    rows = {}
    for line in partial.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a kill cut short: measured again
        if row.pop("key", None) == key:
            rows[row["tensor"]] = row
    return rows


def anatomy_device(anatomy: AnatomyConfig) -> torch.device:
    """The device the decompositions run on (`anatomy.device`; `auto`: a GPU when there is one)."""
    if anatomy.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if anatomy.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"anatomy.device={anatomy.device}: no CUDA device here (use cpu)")
    return torch.device(anatomy.device)


def _matrix_row(
    base: WeightFiles,
    tuned: WeightFiles,
    pair: MatrixPair,
    *,
    anatomy: AnatomyConfig,
    device: torch.device,
) -> dict[str, Any]:
    start, end = base.load(pair.tensor).to(device), tuned.load(pair.tensor).to(device)
    shape = {"rows": start.shape[0], "cols": start.shape[1]}
    if start.equal(end):  # not adapted by this run: nothing to decompose (and left out)
        return {**asdict(pair), **shape, "delta_norm": 0.0}
    measured = asdict(
        anatomy_of(
            start,
            end,
            energy=anatomy.energy,
            top_k=anatomy.intruder_top_k,
            threshold=anatomy.intruder_threshold,
        )
    )
    measured["spectrum"] = list(measured["spectrum"])[: anatomy.spectrum_length]
    return {**asdict(pair), **shape, **measured}


def summary_metrics(
    rows: Sequence[Mapping[str, Any]], *, unchanged: int, skipped: int
) -> dict[str, float]:
    """The run-level `anatomy/*` metrics of measured matrices' rows: means over all of them and
    per module type, the intruders' total and the counts (the counts alone without a row: no
    mean stands for a measure that was not taken)."""
    counts = {
        contract.ANATOMY_MATRICES: float(len(rows)),
        contract.ANATOMY_UNCHANGED: float(unchanged),
        contract.ANATOMY_SKIPPED: float(skipped),
    }
    if not rows:
        return counts
    frame = pd.DataFrame(rows)
    metrics: dict[str, float] = {
        metric: float(frame[measure].mean())
        for measure, metric in contract.ANATOMY_MEASURES.items()
    }
    for module, group in frame.groupby("module"):
        for measure in contract.ANATOMY_MEASURES:
            metrics[contract.anatomy_metric(str(module), measure)] = float(group[measure].mean())
    metrics[contract.ANATOMY_INTRUDERS_TOTAL] = float(frame["intruders"].sum())
    return {**metrics, **counts}


def _write_tables(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """The per-matrix table and the spectra, written into `out`; returns the table's path."""
    frame = pd.DataFrame(rows, columns=list(contract.ANATOMY_LAYER_COLUMNS))
    layers = out / LAYERS_FILE
    frame[list(contract.ANATOMY_LAYER_COLUMNS)].to_csv(layers, index=False)
    spectra = [
        {"tensor": row["tensor"], "index": i, "singular_value": value}
        for row in rows
        for i, value in enumerate(row["spectrum"])
    ]
    pd.DataFrame(spectra, columns=["tensor", "index", "singular_value"]).to_csv(
        out / SPECTRA_FILE, index=False
    )
    return layers


def _log(run: Run, metrics: Mapping[str, float], out: Path, key: str) -> None:
    """The metrics, the two tables (artifacts `anatomy/`) and the `anatomy_hash` tag, last: a
    run holds that tag only once everything else is logged."""
    run.log_metrics(metrics)
    for name in (LAYERS_FILE, SPECTRA_FILE):
        run.client.log_artifact(run.run_id, str(out / name), ANATOMY_DIR)
    run.set_tags({contract.TAG_ANATOMY_HASH: key})
