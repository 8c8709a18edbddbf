"""Data scales: exact seeded sizes, determinism, replacements for untrainable rows, the
`num_samples: null` (every valid row) presets, demo sizes, and the data config's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorabench.config import ConfigError, compose, validate
from lorabench.data import DataError, demo_size, prepare_train_data
from lorabench.data.prompts import IGNORE_INDEX
from tests.helpers.data import data_config, good_row, write_lines
from tests.helpers.local_tokenizers import tiny_tokenizer


def answers(dataset) -> list[str]:
    """The trained text of every sample, in dataset order."""
    tokenizer = tiny_tokenizer()
    return [tokenizer.decode([t for t in r["labels"] if t != IGNORE_INDEX]) for r in dataset]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "train.jsonl", map(good_row, range(300)))


def test_draw_is_exact_seeded_and_deterministic(tmp_path: Path, source: Path) -> None:
    def draw(seed: int, run: str) -> list[str]:
        data = data_config(source, num_samples=100, seed=seed)
        return answers(prepare_train_data(data, tiny_tokenizer(), 64, tmp_path / run).dataset)

    first, again, other = draw(1, "a"), draw(1, "b"), draw(2, "c")
    assert len(first) == len(other) == 100 and len(set(first)) == 100
    assert first == again  # separate caches: recomputed, same rows in the same order
    assert set(first) != set(other)
    assert set(first) <= {f"{good_row(i)['output']}</s>" for i in range(300)}


def test_asking_for_more_than_the_valid_rows_is_an_error(tmp_path: Path, source: Path) -> None:
    with pytest.raises(DataError, match=r"num_samples=301 .* only 300 valid rows.*=null"):
        prepare_train_data(data_config(source, num_samples=301), tiny_tokenizer(), 64, tmp_path)


def test_null_takes_every_valid_row(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [*map(good_row, range(60)), {"instruction": "x"}])
    data = data_config(path, num_samples=None, max_bad_fraction=0.05)
    prepared = prepare_train_data(data, tiny_tokenizer(), 64, tmp_path)
    assert len(prepared.dataset) == prepared.report.rows_kept == 60
    assert prepared.report.rows_read == 61


def test_rows_without_trainable_token_are_replaced_to_keep_the_size(tmp_path: Path) -> None:
    long_prompt = {"instruction": "很长的问题" * 40, "input": "", "output": "答"}
    rows = [good_row(i) if i % 5 else long_prompt for i in range(50)]  # 10 long, 40 short
    path = write_lines(tmp_path / "t.jsonl", rows)

    prepared = prepare_train_data(
        data_config(path, num_samples=40, seed=3), tiny_tokenizer(), 48, tmp_path
    )

    report = prepared.report
    assert len(prepared.dataset) == 40
    assert set(answers(prepared.dataset)) == {
        f"{r['output']}</s>" for r in rows if r != long_prompt
    }
    dropped = report.skipped["no_trainable_token"]
    assert dropped > 0 and report.rows_tokenised == 40 + dropped
    assert report.metrics()["data/skipped_no_trainable_token"] == dropped


def test_untrainable_rows_of_a_null_draw_are_counted(tmp_path: Path) -> None:
    rows = [good_row(0), {"instruction": "很长的问题" * 40, "input": "", "output": "答"}]
    path = write_lines(tmp_path / "t.jsonl", rows)
    report = prepare_train_data(data_config(path), tiny_tokenizer(), 48, tmp_path).report
    assert (report.rows_kept, report.skipped["no_trainable_token"]) == (1, 1)


@pytest.mark.parametrize(
    ("scale", "size"), [("0.6m", 300), ("2m", 1000), ("4m", 2000), ("math_0.25m", 125)]
)
def test_demo_sizes_are_a_two_thousandth_of_the_paper(scale: str, size: int) -> None:
    assert demo_size(validate(compose(["profile=demo", f"data={scale}"])).data) == size


def test_presets_state_their_sizes() -> None:
    sizes = {s: validate(compose([f"data={s}"])).data for s in ("0.6m", "2m", "4m", "math_0.25m")}
    assert sizes["0.6m"].num_samples == 600_000 and sizes["4m"].num_samples == 4_000_000
    # Whole releases: every valid row, the paper's nominal size kept for the demo corpus.
    assert (sizes["2m"].num_samples, sizes["2m"].nominal_samples) == (None, 2_000_000)
    assert (sizes["math_0.25m"].num_samples, sizes["math_0.25m"].nominal_samples) == (
        None,
        250_000,
    )
    assert [s.format for s in sizes["4m"].sources] == ["instruction", "conversations"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.max_bad_fraction=1.5"], "data.max_bad_fraction"),
        (["data.batching=sorted"], "data.batching"),
        (["data.num_proc=0"], "data.num_proc"),
        (["data.num_samples=0"], "data.num_samples"),
        (["data.sources=[{path: /no/such/file.jsonl}]"], r"data.sources\[0\].path"),
        (["profile=demo", "data.num_samples=null", "data.nominal_samples=null"], "nominal"),
    ],
)
def test_bad_data_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        validate(compose(overrides))


def test_demo_profile_does_not_need_the_sources_files() -> None:
    cfg = validate(compose(["profile=demo", "data.sources=[{path: /no/such/file.jsonl}]"]))
    assert cfg.data.demo_fraction is not None
