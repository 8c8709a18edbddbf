"""Reading sources into checked Arrow tables: local JSON Lines / JSON files, Hub datasets, and
the demo corpus.

Every row read lands in the table, valid or with the reason it is skipped (CHECKED_FEATURES),
so nothing disappears without being counted. Tables are written to disk and memory-mapped:
a 2M-row source is streamed through, never held as Python objects.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import datasets
from datasets.arrow_writer import ArrowWriter
from datasets.utils.tqdm import tqdm

from lorabench.config.schema import DataConfig, DataSourceConfig
from lorabench.data.sampling import demo_size
from lorabench.data.validation import (
    CHECKED_FEATURES,
    CHECKS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Checked,
    check_batch,
    skipped,
)
from lorabench.demo.corpus import generate_train_samples
from lorabench.errors import DataError

WRITE_BATCH_ROWS = 10_000
"""Rows buffered in Python before they are written to Arrow (bounds the reader's memory)."""

MIN_ROWS_PER_PROC = 20_000
"""Fewest rows worth a worker process: starting one (and pickling the tokenizer) takes about a
second, longer than checking or tokenising a few thousand rows."""

SHARD_BYTES = 16 * 2**20
"""Bytes of a JSON Lines file one worker task reads and checks: small enough that the work
spreads over the workers and the progress bar moves, large enough that a task's start is
nothing next to it."""

LINE = "line"
"""Location kind of JSON Lines files: 1-based line numbers, as an editor shows them."""
ROW = "row"
"""Location kind of tables and JSON arrays: 0-based row index, as `dataset[i]` takes it."""


@dataclass(frozen=True)
class CheckedSource:
    """One source after validation."""

    name: str
    """The file path or Hub id, as error messages and the report name it."""
    location_kind: str
    """`line` or `row`: what the table's `location` column counts."""
    rows: datasets.Dataset
    """CHECKED_FEATURES, one row per row read, in source order."""


def worker_count(rows: int, num_proc: int | None) -> int:
    """Processes for a `map` over `rows` rows (`num_proc` None: one per CPU core)."""
    wanted = num_proc or os.cpu_count() or 1
    return max(1, min(wanted, rows // MIN_ROWS_PER_PROC))


def read_source(source: DataSourceConfig, out: Path, num_proc: int | None) -> CheckedSource:
    """Read and check one configured source into the Arrow file `out`."""
    if source.path is not None:
        return _read_local(Path(source.path), source.format, out, num_proc)
    return _read_hub(source, out, num_proc)


def read_demo(data: DataConfig, out: Path) -> CheckedSource:
    """The project's generated demo corpus at this scale, checked like any other source."""
    rows = generate_train_samples(demo_size(data), domain=data.domain, seed=data.seed)
    table = datasets.Dataset.from_list(rows)
    name = f"demo corpus ({data.domain})"
    return CheckedSource(name, ROW, check_table(table, "instruction", out, 1, name))


def check_table(
    table: datasets.Dataset, fmt: str, out: Path, num_proc: int | None, name: str
) -> datasets.Dataset:
    """Check every row of a table (batched `map`, several processes for large ones)."""
    procs = worker_count(len(table), num_proc)
    return table.map(
        check_batch,
        batched=True,
        with_indices=True,
        fn_kwargs={"fmt": fmt},
        remove_columns=table.column_names,
        features=CHECKED_FEATURES,
        num_proc=procs if procs > 1 else None,
        cache_file_name=str(out),
        # Explicit, so datasets does not hash the function (and its arguments) to name the file.
        new_fingerprint=hashlib.sha256(str(out).encode()).hexdigest()[:32],
        load_from_cache_file=False,
        desc=f"checking {name}",
    )


def _read_hub(source: DataSourceConfig, out: Path, num_proc: int | None) -> CheckedSource:
    try:
        table = datasets.load_dataset(source.hub, split=source.split)
    except Exception as err:  # offline, unknown id or split: datasets raises many kinds
        raise DataError(
            f"could not load the Hub dataset {source.hub!r} (split {source.split!r}): {err}\n"
            "Download it once where the Hub is reachable (it is cached by datasets), or point "
            "at local files: data.sources='[{path:/data/train.jsonl}]'"
        ) from err
    required = REQUIRED_COLUMNS[source.format]
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataError(
            f"{source.hub}: no column {', '.join(missing)} for format {source.format!r} "
            f"(it has {', '.join(table.column_names)}); set data.sources[].format to match"
        )
    columns = [c for c in (*required, *OPTIONAL_COLUMNS[source.format]) if c in table.column_names]
    rows = check_table(table.select_columns(columns), source.format, out, num_proc, source.hub)
    return CheckedSource(source.hub, ROW, rows)


def _read_local(path: Path, fmt: str, out: Path, num_proc: int | None) -> CheckedSource:
    if not path.is_file():
        raise DataError(f"data source {str(path)!r}: no such file")
    if _is_json_array(path):
        rows = ((index, CHECKS[fmt](row)) for index, row in enumerate(_json_array(path)))
        _write_checked(rows, out)
        return CheckedSource(str(path), ROW, datasets.Dataset.from_file(str(out)))
    return CheckedSource(str(path), LINE, _read_json_lines(path, fmt, out, num_proc))


def _is_json_array(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


def _json_array(path: Path) -> list[Any]:
    # A JSON array cannot be parsed piecewise without a streaming parser: it is read whole, so
    # large corpora belong in JSON Lines (which BELLE's releases are).
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err}); a JSON array is decoded as a whole") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err


@dataclass(frozen=True)
class _Shard:
    """Lines of a JSON Lines file from byte `start` (a line start) up to byte `end`, checked
    into the Arrow file `out`; `first_line` is the 1-based number of the line at `start`."""

    path: Path
    fmt: str
    start: int
    end: int
    first_line: int
    out: Path


def _shards(path: Path, fmt: str, out: Path) -> list[_Shard]:
    """Consecutive pieces of about SHARD_BYTES, each starting at a line start, with the number
    of their first line (newlines counted in one pass over the bytes, at the disk's speed)."""
    size = path.stat().st_size
    bounds = [0]
    with path.open("rb") as f:
        while bounds[-1] < size:
            f.seek(bounds[-1] + SHARD_BYTES)
            f.readline()  # on to the next line start
            bounds.append(min(f.tell(), size))
        shards, line = [], 1
        for index, (start, end) in enumerate(itertools.pairwise(bounds)):
            shards.append(_Shard(path, fmt, start, end, line, out.with_suffix(f".{index}.arrow")))
            f.seek(start)
            line += f.read(end - start).count(b"\n")
    return shards


def _check_shard(shard: _Shard) -> int:
    """Read and check one shard into its Arrow file; its size in bytes (for the progress)."""
    with shard.path.open("rb") as f:
        f.seek(shard.start)
        _write_checked(_json_lines(f, shard.fmt, shard.first_line, shard.end), shard.out)
    return shard.end - shard.start


def _read_json_lines(path: Path, fmt: str, out: Path, num_proc: int | None) -> datasets.Dataset:
    """Every line of a JSON Lines file checked (CHECKED_FEATURES), the file's shards read by
    up to `num_proc` processes (None: one per core) and written to `out`'s numbered siblings."""
    shards = _shards(path, fmt, out)
    procs = min(num_proc or os.cpu_count() or 1, len(shards))
    with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name) as bar:
        if procs > 1:
            # Forked, as datasets' own workers are: the shards are all a worker needs.
            with multiprocessing.get_context("fork").Pool(procs) as pool:
                for size in pool.imap_unordered(_check_shard, shards):
                    bar.update(size)
        else:
            for shard in shards:
                bar.update(_check_shard(shard))
    return datasets.concatenate_datasets(
        [datasets.Dataset.from_file(str(s.out)) for s in shards] or [_empty_checked(out)]
    )


def _empty_checked(out: Path) -> datasets.Dataset:
    _write_checked([], out)
    return datasets.Dataset.from_file(str(out))


def _json_lines(f: IO[bytes], fmt: str, first_line: int, end: int) -> Iterator[tuple[int, Checked]]:
    """(1-based line number, checked row) of each non-blank line from `f`'s position (the start
    of line `first_line`) up to byte `end`."""
    check = CHECKS[fmt]
    position = f.tell()
    for number, raw in enumerate(f, start=first_line):
        if position >= end:
            return
        position += len(raw)
        if not raw.strip():
            continue  # a blank line holds no row (a trailing newline, a separator)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, skipped("bad_encoding")
            continue
        try:
            row = json.loads(text.removeprefix("\ufeff") if number == 1 else text)
        except json.JSONDecodeError:
            yield number, skipped("bad_json")
            continue
        yield number, check(row)


def _write_checked(rows: Iterable[tuple[int, Checked]], out: Path) -> None:
    def empty() -> dict[str, list]:
        return {name: [] for name in CHECKED_FEATURES}

    with ArrowWriter(features=CHECKED_FEATURES, path=str(out)) as writer:
        batch = empty()
        for location, (human, assistant, reason) in rows:
            batch["human"].append(human)
            batch["assistant"].append(assistant)
            batch["reason"].append(reason)
            batch["location"].append(location)
            if len(batch["location"]) >= WRITE_BATCH_ROWS:
                writer.write_batch(batch)
                batch = empty()
        if batch["location"]:
            writer.write_batch(batch)
        writer.finalize()
