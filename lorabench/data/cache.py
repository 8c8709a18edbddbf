"""The on-disk cache of prepared training sets: its key, atomic publication and loading.

A prepared set lives in `<cache_dir>/data/<key>/`: its Arrow files plus `manifest.json` (the
file list and the report). The key covers everything that decides the content: the data config,
the sources' identity, the tokenizer, the code of the template / validation / tokenisation, and
the max length. A directory appears by one rename of a finished one, so a reader sees a complete
set or none, and two processes preparing the same key both end with the same set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from lorabench.config.schema import DataConfig, DataSourceConfig
from lorabench.data import prompts
from lorabench.data.report import DataReport
from lorabench.demo import corpus as demo_corpus
from lorabench.demo import world as demo_world

MANIFEST = "manifest.json"
DATA_DIR = "data"
"""Under `cache_dir`: one directory per prepared set, named by its key."""

CONTENT_FILES = (
    Path(prompts.__file__),
    Path(demo_corpus.__file__),
    Path(demo_world.__file__),
    *(
        Path(__file__).with_name(f"{name}.py")
        for name in ("validation", "readers", "sampling", "encoding", "preparation")
    ),
)
"""Code that decides what a prepared set holds; editing it invalidates the cache (`prompts.py`
is the template's version). By file, not by import: preparation imports this module."""


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what decides the tokenizer's ids: its model and rules, special tokens, flags."""
    h = hashlib.sha256()
    if tokenizer.is_fast:
        h.update(tokenizer.backend_tokenizer.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        sp_model = getattr(tokenizer, "sp_model", None)
        if sp_model is not None:
            h.update(sp_model.serialized_model_proto())
    settings = {
        "class": type(tokenizer).__name__,
        "special_tokens": tokenizer.special_tokens_map,
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "add_eos_token": getattr(tokenizer, "add_eos_token", None),
    }
    h.update(_digest(settings).encode())
    return h.hexdigest()


def _source_identity(source: DataSourceConfig) -> dict:
    if source.path is None:
        # A Hub dataset is named by id and split; its content is what datasets has cached.
        return {"hub": source.hub, "split": source.split, "format": source.format}
    path = Path(source.path).resolve()
    stat = path.stat()
    return {
        "path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": source.format,
    }


def cache_key(data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    """The cache key of a prepared training set."""
    demo = data.demo_fraction is not None  # the demo corpus replaces the sources
    material = {
        "sources": [] if demo else [_source_identity(s) for s in data.sources],
        "num_samples": data.num_samples,
        "nominal_samples": data.nominal_samples,
        "seed": data.seed,
        "domain": data.domain,
        "demo_fraction": data.demo_fraction,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "code": [_file_digest(path) for path in CONTENT_FILES],
        "max_length": max_length,
    }
    return f"{data.name}-{_digest(material)[:16]}"


def write_manifest(directory: Path, files: list[str], report: DataReport) -> None:
    """Record a finished set's Arrow files (in order) and its report."""
    manifest = {"files": files, "report": report.to_dict()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))


def publish(staging: Path, final: Path) -> None:
    """Move a finished set into place in one rename; if another process got there first, keep
    theirs (built from the same key, so the same content) and discard ours."""
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / MANIFEST).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def load(directory: Path) -> tuple[datasets.Dataset, DataReport] | None:
    """The set published in `directory` (memory-mapped) and its report, or None."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    parts = [datasets.Dataset.from_file(str(directory / name)) for name in manifest["files"]]
    report = DataReport.from_dict(manifest["report"])
    report.cache_path = str(directory)
    return datasets.concatenate_datasets(parts), report


def cached_set(
    cache_dir: str | Path, data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[datasets.Dataset, DataReport] | None:
    """The prepared set of these inputs if `cache_dir` holds it, or None (nothing is prepared)."""
    return load(Path(cache_dir) / DATA_DIR / cache_key(data, tokenizer, max_length))
