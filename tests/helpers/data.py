"""Helpers of the data tests: configs, and source files with known defects (their tokenizer:
`tests.helpers.local_tokenizers.tiny_tokenizer`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lorabench.config.schema import DataConfig, DataSourceConfig


def good_row(i: int) -> dict[str, str]:
    """A valid, distinct instruction row."""
    return {
        "instruction": f"问题{i}：",
        "input": "" if i % 2 else f"输入{i}",
        "output": f"答案{i}。",
    }


def write_lines(path: Path, rows: Iterable[Any]) -> Path:
    """JSON Lines: dicts and lists are JSON-encoded, str and bytes written as they are."""
    with path.open("wb") as f:
        for row in rows:
            if isinstance(row, bytes):
                line = row
            elif isinstance(row, str):
                line = row.encode("utf-8", "surrogatepass")
            else:
                line = json.dumps(row, ensure_ascii=False).encode("utf-8")
            f.write(line + b"\n")
    return path


def data_config(*sources: DataSourceConfig | Path, **fields: Any) -> DataConfig:
    """A DataConfig over local files (Paths become instruction-format sources)."""
    resolved = [DataSourceConfig(path=str(s)) if isinstance(s, Path) else s for s in sources]
    return DataConfig(**{"name": "test", "num_samples": None, "sources": resolved, **fields})
