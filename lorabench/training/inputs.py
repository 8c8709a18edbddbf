"""A run's training data as an MLflow dataset input (the runs table's Dataset column).

Source: where the rows came from (a Hub id and split; a local file with its SHA-256; or the
generated demo corpus and its seed). Hub datasets are read as `datasets` has them cached, at no
pinned revision, so for them the rows' digest is what tells two downloads apart.
Digest: of the sampled, tokenised rows actually trained on, so two runs with equal digests saw
the same samples. Profile: the sizes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from lorabench import contract
from lorabench.config.schema import DataConfig, DataSourceConfig
from lorabench.data import DataReport

DIGEST_CHARS = 16
"""Hex digits kept of a digest (the UI shows a short one; 64 bits tell samples apart)."""
FILE_CHUNK_BYTES = 1 << 20
"""Read size when hashing a local source (the file is never held in memory whole)."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(FILE_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def rows_digest(rows: datasets.Dataset) -> str:
    """A digest of the token ids of the rows, in order (their Arrow buffers, not a Python copy)."""
    h = hashlib.blake2b(digest_size=DIGEST_CHARS // 2)
    for chunk in rows.data.table.column("input_ids").chunks:
        for buffer in chunk.buffers():
            if buffer is not None:
                h.update(buffer)
    h.update(str(len(rows)).encode())
    return h.hexdigest()


def _source(source: DataSourceConfig) -> dict[str, str]:
    if source.path is None:
        return {"hub": str(source.hub), "split": source.split}
    return {"path": str(Path(source.path).resolve()), "sha256": file_sha256(Path(source.path))}


def training_input(
    data: DataConfig, rows: datasets.Dataset, report: DataReport, dev_rows: int
) -> DatasetInput:
    """The dataset input of a run trained on `rows` (prepared from `data`, as `report` says)."""
    if data.demo_fraction is not None:
        source_type = "demo"
        source = {"demo_corpus": data.domain, "seed": data.seed, "fraction": data.demo_fraction}
    else:
        source_type = "hub" if all(s.path is None for s in data.sources) else "local"
        source = {"sources": [_source(s) for s in data.sources]}
    profile = {
        "num_rows": len(rows),
        "dev_rows": dev_rows,
        "rows_read": report.rows_read,
        "tokens": report.tokens,
    }
    dataset = Dataset(
        name=data.name,
        digest=rows_digest(rows),
        source_type=source_type,
        source=json.dumps(source, sort_keys=True),
        profile=json.dumps(profile),
    )
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, contract.DATASET_CONTEXT_TRAINING)]
    return DatasetInput(dataset=dataset, tags=tags)
