"""The evaluation set in BELLE's format: loading, label normalisation, and download.

BELLE's `eval_set.json` is JSON Lines with `question` / `std_answer` / `class`. Its 10 raw
classes are spelt inconsistently (`open qa`, `closed\\u00a0qa` with a no-break space); math and
code are reported together as "others", which gives the paper's 9 categories.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench.config.schema import EvalConfig
from lorabench.demo.corpus import generate_eval_set, write_jsonl
from lorabench.errors import DataError

CATEGORIES: tuple[str, ...] = (
    "others",
    "rewrite",
    "classification",
    "generation",
    "summarization",
    "extract",
    "open_qa",
    "brainstorming",
    "closed_qa",
)
"""The 9 reported categories, in the order of the paper's appendix table."""

# Normalised raw label → reported category. "translation" is how BELLE's set spelt the items it
# later moved into rewrite (commit of 2023-04-17); older copies still carry it.
CATEGORY_OF_LABEL: dict[str, str] = {
    "math": "others",
    "code": "others",
    "translation": "rewrite",
    **{c.replace("_", " "): c for c in CATEGORIES if c != "others"},
}

BELLE_EVAL_COMMIT = "645084d36454cdeb4e7f1ce9b2f3426bac39f1f9"
BELLE_EVAL_URL = (
    f"https://raw.githubusercontent.com/LianjiaTech/BELLE/{BELLE_EVAL_COMMIT}/eval/eval_set.json"
)
BELLE_EVAL_SHA256 = "a6a13d9968571e381bbe4b67b173134e99f402e6379e416bd9b089f148cd4671"


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question."""

    question: str
    std_answer: str
    """Gold answer; empty where the category has none (brainstorming, generation, most rewrite)."""
    raw_class: str
    """The label as normalised from the file (`math`, `open qa`, …)."""
    category: str
    """One of CATEGORIES."""


def normalise_label(label: str) -> str:
    """Lower-case, no-break spaces as spaces, surrounding space trimmed."""
    return " ".join(label.replace("\u00a0", " ").lower().split())


def category_of(label: str) -> str:
    """The reported category of a raw label; raises KeyError for an unknown one."""
    return CATEGORY_OF_LABEL[normalise_label(label)]


def load_eval_set(path: str | Path) -> list[EvalItem]:
    """Read a BELLE-format eval set, checking every line; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"eval set {path} does not exist")
    items = []
    for where, row in jsonl_rows(path.read_text(encoding="utf-8"), path):
        for key in ("question", "std_answer", "class"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{where}: field {key!r} missing or not a string")
        if not row["question"].strip():
            raise DataError(f"{where}: empty question")
        label = normalise_label(row["class"])
        if label not in CATEGORY_OF_LABEL:
            known = ", ".join(sorted(CATEGORY_OF_LABEL))
            raise DataError(f"{where}: unknown class {row['class']!r} (known: {known})")
        items.append(EvalItem(row["question"], row["std_answer"], label, category_of(label)))
    if not items:
        raise DataError(f"eval set {path} holds no items")
    return items


def load_items(eval_cfg: EvalConfig, cache_dir: str | Path) -> list[EvalItem]:
    """The eval set: a local file, a (cached) download, or the generated demo set."""
    if eval_cfg.path is not None:
        path = Path(eval_cfg.path)
    elif eval_cfg.url is not None:
        path = download(eval_cfg.url, download_path(eval_cfg, cache_dir), eval_cfg.sha256)
    else:
        path = write_jsonl(
            generate_eval_set(eval_cfg.demo_per_class),
            Path(cache_dir) / "eval" / f"demo-{eval_cfg.demo_per_class}.jsonl",
        )
    items = load_eval_set(path)
    return items[: eval_cfg.limit] if eval_cfg.limit else items


def download_path(eval_cfg: EvalConfig, cache_dir: str | Path) -> Path:
    """Where an eval set given by `eval.url` is downloaded to (and found again)."""
    return Path(cache_dir) / "eval" / f"{eval_cfg.name}.json"


def jsonl_rows(text: str, source: str | Path) -> Iterator[tuple[str, Any]]:
    """(`source:line`, parsed JSON) for each non-blank line; bad JSON raises DataError there."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg})") from None


def download(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """Fetch a file over HTTP(S) to `dest` (atomically), checking its SHA-256 when given.

    An existing file with the right checksum is kept as it is.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or _sha256(dest.read_bytes()) == sha256):
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except OSError as err:
        raise DataError(
            f"could not download {url}: {err}. Download it by hand and pass its local path."
        ) from err
    if sha256 is not None and _sha256(payload) != sha256:
        raise DataError(f"{url}: checksum {_sha256(payload)} does not match {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(payload)
    partial.replace(dest)
    return dest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
