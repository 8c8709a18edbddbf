"""Row validation: each raw row becomes its conversation turns, or the reason it is skipped.

Runs before tokenisation and needs no tokenizer or model, so bad data stops a run before
anything expensive is built. A valid row is two parallel lists, the human and the assistant
text of each turn; an instruction row is the one-turn case with ``human = instruction + input``
(the paper's template puts them side by side, so this is exactly its prompt).
"""

from __future__ import annotations

import re
from typing import Any

import datasets

REASONS = (
    "bad_json",
    "bad_encoding",
    "missing_field",
    "wrong_type",
    "empty_field",
    "bad_turns",
)
"""Why a row is skipped; logged as MLflow metrics ``data/skipped_<reason>``.

- ``bad_json``: a JSON Lines line that is not JSON;
- ``bad_encoding``: bytes that are not UTF-8, lone surrogates (``"\\ud800"`` escapes), or U+FFFD
  replacement characters (text already damaged by a lossy decode upstream);
- ``missing_field``: instruction, output, conversations, or a turn's from / value absent or null
  (a missing or null ``input`` is read as empty: many instruction files omit it);
- ``wrong_type``: a row that is not an object, or a field that is not a string / list;
- ``empty_field``: an empty or blank instruction, output or turn text (``input`` may be empty);
- ``bad_turns``: a conversation that does not alternate human / assistant starting with human,
  or does not end with an assistant turn (nothing to train on after the last human turn).
"""

VALID = ""
"""The reason of a valid row."""

CHECKED_FEATURES = datasets.Features(
    {
        "human": datasets.List(datasets.Value("string")),
        "assistant": datasets.List(datasets.Value("string")),
        "reason": datasets.Value("string"),
        "location": datasets.Value("int64"),
    }
)
"""Schema of a checked source: turns (empty for a skipped row), reason, and where the row is
(1-based line of a JSON Lines file, else 0-based row index)."""

ROLES = ("human", "assistant")

_SURROGATE = re.compile("[\ud800-\udfff]")

Checked = tuple[list[str], list[str], str]
"""(human texts, assistant texts, reason); the lists are empty unless the reason is VALID."""


def skipped(reason: str) -> Checked:
    """The checked form of a row skipped for `reason`."""
    return [], [], reason


def _damaged(text: str) -> bool:
    return "\ufffd" in text or _SURROGATE.search(text) is not None


def check_instruction(row: Any) -> Checked:
    """Check an ``{"instruction", "input", "output"}`` row."""
    if not isinstance(row, dict):
        return skipped("wrong_type")
    instruction, output = row.get("instruction"), row.get("output")
    input_text = row.get("input")
    if instruction is None or output is None:
        return skipped("missing_field")
    if input_text is None:
        input_text = ""
    texts = (instruction, input_text, output)
    if not all(isinstance(t, str) for t in texts):
        return skipped("wrong_type")
    if any(_damaged(t) for t in texts):
        return skipped("bad_encoding")
    if not instruction.strip() or not output.strip():
        return skipped("empty_field")
    return [instruction + input_text], [output], VALID


def check_conversation(row: Any) -> Checked:  # noqa: C901 - one guard per skip reason, in order
    """Check a BELLE ``{"conversations": [{"from": "human", "value": ...}, ...]}`` row."""
    if not isinstance(row, dict):
        return skipped("wrong_type")
    turns = row.get("conversations")
    if turns is None:
        return skipped("missing_field")
    if not isinstance(turns, list):
        return skipped("wrong_type")
    if not turns:
        return skipped("bad_turns")
    texts: tuple[list[str], list[str]] = ([], [])
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return skipped("wrong_type")
        role, value = turn.get("from"), turn.get("value")
        if role is None or value is None:
            return skipped("missing_field")
        if not isinstance(role, str) or not isinstance(value, str):
            return skipped("wrong_type")
        if role != ROLES[i % 2]:
            return skipped("bad_turns")
        if _damaged(value):
            return skipped("bad_encoding")
        if not value.strip():
            return skipped("empty_field")
        texts[i % 2].append(value)
    if len(turns) % 2:
        return skipped("bad_turns")  # ends with a human turn
    return texts[0], texts[1], VALID


CHECKS = {"instruction": check_instruction, "conversations": check_conversation}
"""Row check of each `data.sources[].format`."""

REQUIRED_COLUMNS = {"instruction": ("instruction", "output"), "conversations": ("conversations",)}
"""Columns a table (Hub dataset) of each format must have; rows may still hold nulls."""

OPTIONAL_COLUMNS = {"instruction": ("input",), "conversations": ()}


def check_batch(batch: dict[str, list[Any]], indices: list[int], fmt: str) -> dict[str, list]:
    """Check a batch of table rows (a `datasets.map` function with indices); CHECKED_FEATURES."""
    check = CHECKS[fmt]
    columns = list(batch)
    out: dict[str, list] = {"human": [], "assistant": [], "reason": [], "location": indices}
    for values in zip(*batch.values(), strict=True):
        human, assistant, reason = check(dict(zip(columns, values, strict=True)))
        out["human"].append(human)
        out["assistant"].append(assistant)
        out["reason"].append(reason)
    return out
