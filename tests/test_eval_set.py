"""The eval-set loader: BELLE's own file when present, the demo set always, bad lines named, and
the downloader over real HTTP on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from lorabench.demo.corpus import generate_eval_set, write_jsonl
from lorabench.errors import DataError
from lorabench.evaluation.eval_set import (
    CATEGORIES,
    download,
    load_eval_set,
    load_items,
    normalise_label,
)


def test_belle_eval_set_has_1000_items_in_9_categories(belle_dir: Path) -> None:
    items = load_eval_set(belle_dir / "eval_set.json")
    counts = Counter(item.category for item in items)
    assert len(items) == 1000 and set(counts) == set(CATEGORIES)
    assert counts["others"] == 75 + 38  # math + code
    assert counts["closed_qa"] == 52 and counts["open_qa"] == 285
    assert all(item.std_answer == "" for item in items if item.category == "brainstorming")


def test_demo_eval_set_loads_in_the_same_format(tmp_path: Path) -> None:
    path = write_jsonl(generate_eval_set(), tmp_path / "eval.jsonl")
    items = load_eval_set(path)
    assert {item.category for item in items} == set(CATEGORIES)


def test_the_demo_profiles_eval_set_can_separate_runs(demo_config, tmp_path: Path) -> None:
    """The demo's configured eval set: at least 200 items over all 9 categories (enough for
    95% intervals to separate runs), each with a gold answer, the same on every call."""
    cfg = demo_config()
    items = load_items(cfg.eval, tmp_path / "a")
    counts = Counter(item.category for item in items)
    assert len(items) >= 200 and set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 20, counts
    assert all(item.std_answer for item in items)
    assert load_items(cfg.eval, tmp_path / "b") == items


@pytest.mark.parametrize(
    ("label", "normalised"),
    [("Closed\u00a0QA", "closed qa"), (" open  qa ", "open qa"), ("MATH", "math")],
)
def test_labels_are_normalised(label: str, normalised: str) -> None:
    assert normalise_label(label) == normalised


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q", "std_answer": "a"}', "field 'class'"),
        ('{"question": "q", "std_answer": "a", "class": "poetry"}', "unknown class 'poetry'"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"question": "q", "std_answer": "a", "class": "math"})
    path = tmp_path / "eval.jsonl"
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"eval.jsonl:2: .*{message}"):
        load_eval_set(path)


@pytest.fixture
def http_root(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_the_checksum(http_root, tmp_path: Path) -> None:
    root, base = http_root
    payload = json.dumps({"question": "q", "std_answer": "", "class": "generation"}).encode()
    (root / "eval_set.json").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    dest = download(f"{base}/eval_set.json", tmp_path / "got" / "eval_set.json", digest)
    assert dest.read_bytes() == payload and load_eval_set(dest)[0].category == "generation"

    with pytest.raises(DataError, match="checksum"):
        download(f"{base}/eval_set.json", tmp_path / "other.json", "0" * 64)
    assert not (tmp_path / "other.json").exists()
    with pytest.raises(DataError, match="Download it by hand"):
        download(f"{base}/missing.json", tmp_path / "missing.json")
