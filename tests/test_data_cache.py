"""The prepared-data cache: a second run reads no source, the key follows everything that
decides the content, publication is atomic, and a tightened threshold still applies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lorabench.data.preparation as preparation
from lorabench.data import DataError, prepare_train_data
from lorabench.data.cache import MANIFEST, cache_key, publish, tokenizer_fingerprint
from lorabench.demo.tokenizer import build_tiny_tokenizer
from tests.helpers.data import data_config, good_row, write_lines
from tests.helpers.local_tokenizers import tiny_tokenizer


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "train.jsonl", map(good_row, range(50)))


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "data").iterdir())


def test_second_run_is_served_from_the_cache_without_reading_sources(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = data_config(source, num_samples=20)
    first = prepare_train_data(data, tiny_tokenizer(), 64, tmp_path / "cache")
    assert not first.report.cache_hit

    def no_reading(*args, **kwargs):
        raise AssertionError("a source was read on a cache hit")

    monkeypatch.setattr(preparation, "read_source", no_reading)
    second = prepare_train_data(data, tiny_tokenizer(), 64, tmp_path / "cache")

    assert second.report.cache_hit and second.report.cache_path == first.report.cache_path
    assert second.dataset["input_ids"] == first.dataset["input_ids"]
    assert second.report.rows_read == 50 and second.report.rows_kept == 20
    (entry,) = entries(tmp_path / "cache")  # no staging directory left behind
    assert sorted(os.listdir(tmp_path / "cache" / "data" / entry)) == [MANIFEST, "tokens-0.arrow"]


def test_changing_the_source_file_misses_the_cache(tmp_path: Path, source: Path) -> None:
    data = data_config(source)
    prepare_train_data(data, tiny_tokenizer(), 64, tmp_path / "cache")
    write_lines(source, map(good_row, range(51)))
    again = prepare_train_data(data, tiny_tokenizer(), 64, tmp_path / "cache")
    assert not again.report.cache_hit and again.report.rows_kept == 51
    assert len(entries(tmp_path / "cache")) == 2


def test_key_follows_data_tokenizer_and_max_length(source: Path) -> None:
    tokenizer = tiny_tokenizer()
    base = cache_key(data_config(source), tokenizer, 64)
    assert cache_key(data_config(source), tokenizer, 64) == base
    assert cache_key(data_config(source), tokenizer, 65) != base
    assert cache_key(data_config(source, seed=1), tokenizer, 64) != base
    assert cache_key(data_config(source, num_samples=10), tokenizer, 64) != base
    assert cache_key(data_config(source, domain="math"), tokenizer, 64) != base
    # Batching and parallelism do not change the prepared rows.
    assert cache_key(data_config(source, batching="packed", num_proc=7), tokenizer, 64) == base
    other = build_tiny_tokenizer(vocab_size=1024)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    assert cache_key(data_config(source), other, 64) != base


def test_publishing_keeps_a_set_another_process_published_first(tmp_path: Path) -> None:
    final, ours = tmp_path / "final", tmp_path / "ours"
    final.mkdir()
    (final / MANIFEST).write_text("{}")
    ours.mkdir()
    (ours / MANIFEST).write_text('{"ours": 1}')
    publish(ours, final)
    assert (final / MANIFEST).read_text() == "{}" and not ours.exists()


def test_a_failed_preparation_leaves_no_cache_entry(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [good_row(0), {"output": "x"}])
    with pytest.raises(DataError):
        prepare_train_data(data_config(path), tiny_tokenizer(), 64, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []


def test_a_tightened_threshold_applies_to_cached_data(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [*map(good_row, range(9)), {"output": "x"}])
    prepare_train_data(
        data_config(path, max_bad_fraction=0.5), tiny_tokenizer(), 64, tmp_path / "cache"
    )
    with pytest.raises(DataError, match=r"1 of 10 rows.*line 10|lines 10"):
        prepare_train_data(
            data_config(path, max_bad_fraction=0.01), tiny_tokenizer(), 64, tmp_path / "cache"
        )


def test_without_a_cache_dir_nothing_is_cached(tmp_path: Path, source: Path) -> None:
    first = prepare_train_data(data_config(source), tiny_tokenizer(), 64)
    second = prepare_train_data(data_config(source), tiny_tokenizer(), 64)
    assert not first.report.cache_hit and not second.report.cache_hit
    assert first.report.cache_path != second.report.cache_path
