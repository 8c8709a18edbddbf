"""Row validation: every bad row is counted by reason and located; past the threshold the run
stops naming the file and its first bad lines; Hub tables and multi-turn data are checked too."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

import lorabench.data.readers as readers
from lorabench.config.schema import DataSourceConfig
from lorabench.data import DataError, prepare_train_data
from lorabench.data.prompts import IGNORE_INDEX
from lorabench.data.validation import REASONS, check_conversation, check_instruction
from tests.helpers.data import data_config, good_row, write_lines
from tests.helpers.local_tokenizers import tiny_tokenizer

# Each defect once, as the raw JSON Lines line that carries it.
DEFECTS: list[tuple[object, str]] = [
    (b'{"instruction": "cut short", "output": ', "bad_json"),
    (b'{"instruction": "\xff\xfe", "output": "x"}', "bad_encoding"),  # not UTF-8
    (r'{"instruction": "lone \ud800 half", "output": "x"}', "bad_encoding"),
    ({"instruction": "damaged \ufffd text", "output": "x"}, "bad_encoding"),
    ({"output": "no instruction"}, "missing_field"),
    ({"instruction": "null output", "output": None}, "missing_field"),
    ({"instruction": 3, "output": "x"}, "wrong_type"),
    (["not", "an", "object"], "wrong_type"),
    ({"instruction": " \n", "output": "blank instruction"}, "empty_field"),
    ({"instruction": "empty output", "input": "x", "output": ""}, "empty_field"),
]


def defect_file(path: Path, good_between: int = 4) -> tuple[Path, list[tuple[int, str]]]:
    """Good rows with one defect after every `good_between`; returns the (line, reason) list."""
    lines: list[object] = []
    expected = []
    for i, (defect, reason) in enumerate(DEFECTS):
        lines += [good_row(i * good_between + j) for j in range(good_between)]
        lines.append(defect)
        expected.append((len(lines), reason))
    lines.append(b"   ")  # a blank line is no row
    return write_lines(path, lines), expected


def test_each_defect_is_counted_by_reason_with_its_line(tmp_path: Path) -> None:
    path, expected = defect_file(tmp_path / "train.jsonl")
    data = data_config(path, max_bad_fraction=1.0)

    prepared = prepare_train_data(data, tiny_tokenizer(), 128, tmp_path / "cache")

    report = prepared.report
    (source,) = report.sources
    assert source.name == str(path) and source.location_kind == "line"
    assert source.rows_read == len(DEFECTS) * 5
    want = {reason: sum(r == reason for _, r in expected) for reason in REASONS}
    assert report.skipped == {**want, "no_trainable_token": 0}
    assert source.first_bad == expected[:5]
    assert report.rows_kept == len(prepared.dataset) == len(DEFECTS) * 4
    metrics = report.metrics()
    assert metrics["data/rows_read"] == 50 and metrics["data/rows_kept"] == 40
    assert metrics["data/skipped_bad_encoding"] == 3 and metrics["data/skipped_bad_turns"] == 0


def test_json_lines_checked_in_shards_by_processes_keep_their_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, expected = defect_file(tmp_path / "train.jsonl")
    text = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", b"\n\n", 3))  # BOM, blank lines
    source = DataSourceConfig(path=str(path))
    whole = readers.read_source(source, tmp_path / "whole.arrow", num_proc=1).rows
    monkeypatch.setattr(readers, "SHARD_BYTES", 97)  # a few lines per shard, two processes
    sharded = readers.read_source(source, tmp_path / "sharded.arrow", num_proc=2).rows

    assert sharded.to_dict() == whole.to_dict()
    assert len(sharded.cache_files) > 10 and len(whole.cache_files) == 1
    bad = [(loc, r) for loc, r in zip(whole["location"], whole["reason"], strict=True) if r]
    shift = [(line + min(line - 1, 3), reason) for line, reason in expected]  # the blank lines
    assert bad == shift and whole["location"][0] == 1 and whole["reason"][0] == ""


def test_too_many_bad_rows_stop_the_run_naming_file_and_lines(tmp_path: Path) -> None:
    path, expected = defect_file(tmp_path / "train.jsonl")
    data = data_config(path, max_bad_fraction=0.1)  # 10 of 50 rows are bad: 20%

    # max_length=1 would leave no sample trainable: the error shows validation comes first.
    with pytest.raises(DataError) as err:
        prepare_train_data(data, tiny_tokenizer(), 1, tmp_path / "cache")

    message = str(err.value)
    assert str(path) in message and "10 of 50 rows" in message
    first = ", ".join(f"{line} ({reason})" for line, reason in expected[:5])
    assert f"lines {first}" in message  # "lines 5 (bad_json), 10 (bad_encoding), ..."
    assert not list((tmp_path / "cache" / "data").iterdir())  # nothing half-written


def test_bad_share_at_the_threshold_passes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [*map(good_row, range(99)), {"output": "x"}])
    report = prepare_train_data(
        data_config(path, max_bad_fraction=0.01), tiny_tokenizer(), 128, tmp_path
    ).report
    assert report.skipped["missing_field"] == 1 and report.rows_kept == 99


def test_input_may_be_missing_or_empty() -> None:
    assert check_instruction({"instruction": "a", "output": "b"}) == (["a"], ["b"], "")
    assert check_instruction({"instruction": "a", "input": None, "output": "b"})[2] == ""
    assert check_instruction({"instruction": "a", "input": "c", "output": "b"}) == (
        ["ac"],
        ["b"],
        "",
    )


def turn(role: str, value: object) -> dict[str, object]:
    return {"from": role, "value": value}


@pytest.mark.parametrize(
    ("conversations", "reason"),
    [
        ([turn("human", "q"), turn("assistant", "a")], ""),
        (
            [
                turn("human", "q1"),
                turn("assistant", "a1"),
                turn("human", "q2"),
                turn("assistant", "a2"),
            ],
            "",
        ),
        ([], "bad_turns"),
        ([turn("assistant", "a"), turn("human", "q")], "bad_turns"),
        ([turn("human", "q"), turn("assistant", "a"), turn("human", "q2")], "bad_turns"),
        ([turn("human", "q"), turn("human", "q2")], "bad_turns"),
        ([turn("human", "q"), turn("gpt", "a")], "bad_turns"),
        ([turn("human", "q"), {"from": "assistant"}], "missing_field"),
        ([turn("human", "q"), turn("assistant", 7)], "wrong_type"),
        ([turn("human", "q"), "a"], "wrong_type"),
        ([turn("human", "q"), turn("assistant", " ")], "empty_field"),
        ([turn("human", "q\ufffd"), turn("assistant", "a")], "bad_encoding"),
        (None, "missing_field"),
        ("human: q", "wrong_type"),
    ],
)
def test_conversation_checks(conversations: object, reason: str) -> None:
    row = {"id": "1"} if conversations is None else {"id": "1", "conversations": conversations}
    assert check_conversation(row)[2] == reason


def test_multi_turn_rows_train_every_assistant_turn(tmp_path: Path) -> None:
    rows = [
        {"id": "0", "conversations": [turn("human", "你好"), turn("assistant", "你好！")]},
        {
            "id": "1",
            "conversations": [
                turn("human", "1+1=?"),
                turn("assistant", "2"),
                turn("human", "再加3呢？"),
                turn("assistant", "5"),
            ],
        },
        {"id": "2", "conversations": [turn("human", "只有问题")]},
    ]
    path = write_lines(tmp_path / "conv.jsonl", rows)
    source = DataSourceConfig(path=str(path), format="conversations")
    tokenizer = tiny_tokenizer()

    prepared = prepare_train_data(
        data_config(source, max_bad_fraction=0.5), tokenizer, 256, tmp_path / "cache"
    )

    assert prepared.report.skipped["bad_turns"] == 1
    assert prepared.report.sources[0].first_bad == [(3, "bad_turns")]
    trained = sorted(
        tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX])
        for row in prepared.dataset
    )
    assert trained == ["2</s>5</s>", "你好！</s>"]  # both answers of row 1, then row 0


def test_json_array_files_report_row_indices(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps([good_row(0), {"instruction": "x"}, good_row(2)]))
    report = prepare_train_data(
        data_config(path, max_bad_fraction=0.5), tiny_tokenizer(), 128, tmp_path
    ).report
    (source,) = report.sources
    assert source.location_kind == "row" and source.first_bad == [(1, "missing_field")]
    assert "rows 1 (missing_field)" in source.where()


def hub_table(n: int, bad: dict[int, dict[str, object]]) -> datasets.Dataset:
    rows = [{**good_row(i), **bad.get(i, {})} for i in range(n)]
    return datasets.Dataset.from_list(rows)


def test_hub_rows_are_checked_in_parallel_with_global_row_indices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = hub_table(40, {3: {"output": None}, 31: {"instruction": "  "}})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub, split: table)
    monkeypatch.setattr(readers, "MIN_ROWS_PER_PROC", 10)  # 2 processes for 40 rows
    source = DataSourceConfig(hub="BelleGroup/fake", split="train")

    report = prepare_train_data(
        data_config(source, max_bad_fraction=0.1, num_proc=2), tiny_tokenizer(), 128, tmp_path
    ).report

    assert report.sources[0].first_bad == [(3, "missing_field"), (31, "empty_field")]
    assert report.rows_read == 40 and report.rows_kept == 38


def test_hub_table_without_the_format_columns_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = datasets.Dataset.from_list([{"conversations": [turn("human", "q")]}])
    monkeypatch.setattr(datasets, "load_dataset", lambda hub, split: table)
    source = DataSourceConfig(hub="BelleGroup/train_3.5M_CN", format="instruction")
    with pytest.raises(DataError, match="no column instruction, output.*format"):
        prepare_train_data(data_config(source), tiny_tokenizer(), 128, tmp_path)


def test_unreachable_hub_dataset_says_how_to_use_local_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(hub: str, split: str) -> datasets.Dataset:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    source = DataSourceConfig(hub="BelleGroup/train_2M_CN")
    with pytest.raises(DataError, match=r"BelleGroup/train_2M_CN.*\n.*data\.sources="):
        prepare_train_data(data_config(source), tiny_tokenizer(), 128, tmp_path)
