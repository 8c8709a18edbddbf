"""Preparing a training set: cache lookup → read and check sources → enforce the bad-row
threshold → seeded draw → tokenise → publish to the cache.

Everything between reading and publishing happens in Arrow files in a private staging
directory next to the cache entry, so memory stays bounded at any scale and an interrupted
preparation leaves no half-written cache behind.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from lorabench.config.schema import DataConfig
from lorabench.data import cache
from lorabench.data.encoding import LENGTH_COLUMN, tokenize_rows
from lorabench.data.readers import CheckedSource, read_demo, read_source
from lorabench.data.report import (
    DataReport,
    check_bad_fraction,
    source_report,
    valid_rows,
)
from lorabench.data.sampling import draw_order, sample_size
from lorabench.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A tokenised training set and the report of how it was made."""

    dataset: datasets.Dataset
    """Rows `input_ids`, `labels` (prompt positions IGNORE_INDEX) and `length`."""
    report: DataReport


def prepare_train_data(
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
) -> PreparedData:
    """The tokenised training set for one data scale, from `<cache_dir>/data/` when prepared
    before (no source is read then); `cache_dir` None prepares into a temporary directory
    removed at exit.

    Raises DataError when a source cannot be read, has more than `data.max_bad_fraction` bad
    rows (naming its first offending lines), or holds fewer valid rows than `data.num_samples`.
    """
    root = _data_root(cache_dir)
    final = root / cache.cache_key(data, tokenizer, max_length)
    cached = cache.load(final)
    if cached is not None:
        dataset, report = cached
        report.cache_hit = True
        # The threshold may have been tightened since the set was prepared.
        check_bad_fraction(report.sources, data.max_bad_fraction)
        log.info("training data from the cache: %s", final)
        return PreparedData(dataset, report)

    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        _prepare(data, tokenizer, max_length, staging)
        cache.publish(staging / "out", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    loaded = cache.load(final)
    assert loaded is not None, f"{final} was just published"
    return PreparedData(*loaded)


def build_train_dataset(
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
) -> datasets.Dataset:
    """The tokenised training set for one data scale (see `prepare_train_data`)."""
    return prepare_train_data(data, tokenizer, max_length, cache_dir).dataset


def _data_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        root = Path(tempfile.mkdtemp(prefix="lorabench-data-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        return root
    root = Path(cache_dir) / cache.DATA_DIR
    root.mkdir(parents=True, exist_ok=True)
    return root


def _prepare(
    data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int, staging: Path
) -> None:
    """Prepare into `staging/out` (Arrow files + manifest); intermediates stay in `staging`."""
    checked_dir, out = staging / "checked", staging / "out"
    checked_dir.mkdir()
    out.mkdir()
    start = time.perf_counter()
    sources = _read_sources(data, checked_dir)
    reports = [source_report(s) for s in sources]
    log.info("read and checked the sources in %.1f s", time.perf_counter() - start)
    check_bad_fraction(reports, data.max_bad_fraction)
    start = time.perf_counter()
    dataset, drawn = _draw_and_tokenize(data, sources, tokenizer, max_length, out)
    log.info("tokenised %d rows in %.1f s", drawn, time.perf_counter() - start)
    lengths = dataset.data.column(LENGTH_COLUMN).to_numpy()
    report = DataReport(
        sources=reports,
        rows_tokenised=drawn,
        rows_kept=len(dataset),
        tokens=int(lengths.sum()),
        mean_length=float(lengths.mean()),
        p95_length=float(np.percentile(lengths, 95)),
    )
    files = [Path(f["filename"]).name for f in dataset.cache_files]
    cache.write_manifest(out, files, report)


def _read_sources(data: DataConfig, checked_dir: Path) -> list[CheckedSource]:
    if data.demo_fraction is not None:
        return [read_demo(data, checked_dir / "demo.arrow")]
    return [
        read_source(source, checked_dir / f"source-{i}.arrow", data.num_proc)
        for i, source in enumerate(data.sources)
    ]


def _draw_and_tokenize(
    data: DataConfig,
    sources: list[CheckedSource],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    out: Path,
) -> tuple[datasets.Dataset, int]:
    """Tokenise the draw into `out`: the dataset, and how many rows were drawn for it.

    A drawn row with no trainable token is replaced by the next rows in the draw order until
    the sample has its exact size (or, for an all-rows draw, simply counted).
    """
    offsets = np.cumsum([0, *(len(s.rows) for s in sources)])[:-1]
    valid = np.concatenate(
        [valid_rows(s) + offset for s, offset in zip(sources, offsets, strict=True)]
    )
    size = sample_size(data)
    order = draw_order(valid, size, data.seed)
    target = len(order) if size is None else size
    pool = datasets.concatenate_datasets([s.rows for s in sources])
    pool = pool.select_columns(["human", "assistant"])
    parts: list[datasets.Dataset] = []
    kept = drawn = 0
    while kept < target and drawn < len(order):
        chunk = np.sort(order[drawn : drawn + target - kept])  # sorted: sequential reads
        drawn += len(chunk)
        file = out / f"tokens-{len(parts)}.arrow"
        parts.append(tokenize_rows(pool.select(chunk), tokenizer, max_length, file, data.num_proc))
        kept += len(parts[-1])
    if kept == 0 or (size is not None and kept < target):
        raise DataError(
            f"only {kept} of the sources' {len(order)} valid rows leave a trainable token at "
            f"max length {max_length}; {target} wanted"
        )
    if drawn > kept:
        log.warning(
            "%d drawn rows had no trainable token at max length %d (skipped%s)",
            drawn - kept,
            max_length,
            "" if size is None else ", replaced by the next rows drawn",
        )
    return datasets.concatenate_datasets(parts), drawn
