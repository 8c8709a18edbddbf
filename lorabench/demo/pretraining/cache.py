"""The cache of pretrained bases: one directory per key, checked before every use.

A base lives in `<pretrained_dir>/<model name>-<key>/`: the model and its tokenizer in HF
format, and `pretrain.json`, the record of what made it (the key and everything it hashes) and a
SHA-256 of every file. The key covers what decides the weights: the architecture, the
pretraining config, the tokenizer and the code of the corpus and the recipe. A directory whose
record is missing or unreadable, whose key or material differs from the one asked for, or whose
files do not match their digests is never loaded: it is reported and rebuilt. A directory
appears by one rename of a finished one, and builders of one key take turns (a file lock), so
a reader sees a complete base or none.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from lorabench.config.schema import ModelConfig
from lorabench.data.cache import tokenizer_fingerprint
from lorabench.demo import world as demo_world
from lorabench.identity import digest

RECORD_FILE = "pretrain.json"

CONTENT_FILES = (
    Path(demo_world.__file__),
    Path(__file__).with_name("corpus.py"),
    Path(__file__).with_name("recipe.py"),
)
"""Code that decides what a pretraining produces; editing it invalidates the cache."""


@dataclass(frozen=True)
class Record:
    """What `pretrain.json` holds."""

    key: str
    material: dict[str, Any]
    files: dict[str, str]
    """File name (relative to the entry) → SHA-256 of its bytes."""
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    """The MLflow run that pretrained it, in `tracking_uri`."""
    tracking_uri: str | None = None


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def material(model_cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Everything the key hashes, as JSON values (so it compares equal to a record's)."""
    assert model_cfg.pretrain is not None
    values = {
        "architecture": dict(model_cfg.architecture),
        "pretrain": asdict(model_cfg.pretrain),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "code": {path.name: _file_digest(path) for path in CONTENT_FILES},
    }
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def cache_key(values: dict[str, Any]) -> str:
    """The key of a pretraining's material."""
    return digest(values)


def entry_dir(root: str | Path, model_name: str, key: str) -> Path:
    """Where the base of this model name and key lives."""
    return Path(root) / f"{model_name}-{key}"


def files_of(directory: Path) -> dict[str, str]:
    """Digests of every file under `directory` except the record."""
    return {
        str(path.relative_to(directory)): _file_digest(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != RECORD_FILE
    }


def write_record(directory: Path, record: Record) -> None:
    (directory / RECORD_FILE).write_text(json.dumps(asdict(record), indent=1, sort_keys=True))


def read_record(directory: Path) -> Record | None:
    """The record in `directory`, or None when there is none or it cannot be read."""
    try:
        return Record(**json.loads((directory / RECORD_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def problem(directory: Path, key: str, values: dict[str, Any]) -> str | None:
    """Why `directory` cannot be used as the base of `key` (None: it can). A missing directory
    is not a problem: it is simply not built yet."""
    record = read_record(directory)
    if record is None:
        return f"has no readable {RECORD_FILE}"
    if record.key != key or record.material != values:
        changed = sorted(k for k in values.keys() | record.material.keys()
                         if values.get(k) != record.material.get(k))  # fmt: skip
        return f"was made by another config or code (differs in {', '.join(changed) or 'key'})"
    actual = files_of(directory)
    for name, expected in record.files.items():
        if name not in actual:
            return f"lacks its file {name}"
        if actual[name] != expected:
            return f"has a corrupt file {name} (its SHA-256 differs from the record's)"
    return None


def discard(directory: Path) -> None:
    """Remove a stale entry (renamed aside first, so no reader sees it half deleted)."""
    aside = Path(tempfile.mkdtemp(prefix=f".stale-{directory.name}-", dir=directory.parent))
    directory.replace(aside / directory.name)
    shutil.rmtree(aside, ignore_errors=True)


def publish(staging: Path, directory: Path) -> None:
    """Move a finished entry into place in one rename."""
    staging.replace(directory)


def building(root: Path, name: str) -> FileLock:
    """The build lock of one entry, to hold with `with` (other builders of it wait; the lock
    makes `root` when it is missing)."""
    return FileLock(root / f".{name}.lock")
