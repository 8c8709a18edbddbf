"""Item-level scores of runs, every judge's side by side, for the statistics (`paired`,
`replicates`, `scaling_fit`, `agreement`, `length`).

One row per (run, judge, repeat, item): the judge's id, the repeat number (0: the judgement,
k > 0: the k-th extra one of `judge.repeats`), the item's key (a hash of its class and question,
so two runs are paired only on the very same items), its category, the score (NaN where the
judge could not score it) and the answer's length in characters.

Read from each run's `eval/judges/<judge>/judgements.jsonl` (and `repeats.jsonl`); a run
evaluated before judges were kept apart has only `eval/judgements.jsonl`, read as its headline
judge's.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.evaluation.eval_set import CATEGORIES

ITEM_COLUMNS = (
    "run_id",
    "judge",
    "repeat",
    "item",
    "category",
    "score",
    "answer_length",
    "temperature",
)
"""`temperature`: the judge's sampling temperature, recorded with repeats (NaN otherwise)."""


def item_key(raw_class: str, question: str) -> str:
    """The key two runs' judgements of one eval item share."""
    return hashlib.sha1(f"{raw_class}\n{question}".encode()).hexdigest()[:16]


def rows_to_items(run_id: str, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """`judgements.jsonl` / `repeats.jsonl` rows of one run as item rows (ITEM_COLUMNS)."""
    records = [
        {
            "run_id": run_id,
            "judge": row["judge"],
            "repeat": int(row.get("repeat", 0)),
            "item": item_key(row["class"], row["question"]),
            "category": row["category"],
            "score": np.nan if row["score"] is None else float(row["score"]),
            "answer_length": len(row["answer"]),
            "temperature": np.nan if row.get("temperature") is None else row["temperature"],
        }
        for row in rows
    ]
    return pd.DataFrame.from_records(records, columns=list(ITEM_COLUMNS))


def load_item_scores(tracking_uri: str, run_ids: Sequence[str]) -> pd.DataFrame:
    """Every judge's item scores of these runs (ITEM_COLUMNS); runs without judgements have
    no rows."""
    client = MlflowClient(tracking_uri=tracking_uri)
    frames = [pd.DataFrame(columns=list(ITEM_COLUMNS))]
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            for path in _judgement_files(client, run_id):
                local = Path(client.download_artifacts(run_id, path, tmp))
                rows = [json.loads(line) for line in local.read_text(encoding="utf-8").splitlines()]
                frames.append(rows_to_items(run_id, rows))
    frame = pd.concat([f for f in frames if len(f) or f is frames[0]], ignore_index=True)
    # A run judged again by the same judge has its rows once (the artifact's latest copy).
    frame = frame.drop_duplicates(["run_id", "judge", "repeat", "item"], keep="last")
    return frame.astype({"repeat": int, "score": float, "answer_length": int, "temperature": float})


def _judgement_files(client: MlflowClient, run_id: str) -> list[str]:
    judges = [f.path for f in client.list_artifacts(run_id, contract.ARTIFACT_JUDGE_DIR)]
    if not judges:
        legacy = {f.path for f in client.list_artifacts(run_id, contract.ARTIFACT_EVAL_DIR)}
        return [p for p in (contract.ARTIFACT_JUDGEMENTS,) if p in legacy]
    names = (contract.JUDGEMENTS_FILE, contract.REPEATS_FILE)
    return [
        f.path
        for judge in judges
        for f in client.list_artifacts(run_id, judge)
        if Path(f.path).name in names
    ]


class Mismatch(ValueError):
    """Scores that cannot be compared item by item (other items, another judge, no items)."""


def score_matrices(
    items: pd.DataFrame, run_ids: Sequence[str], judge: str
) -> dict[str, np.ndarray]:
    """Per category, a (runs × items) array of `judge`'s scores (NaN: not scored), items in
    one shared order (by key); Mismatch when a run has no scores by `judge` or other items."""
    part = items[(items["judge"] == judge) & (items["repeat"] == 0)]
    part = part[part["run_id"].isin(run_ids)]
    # Plain arrays: the frame's string columns are slow to iterate item by item.
    runs, keys = part["run_id"].to_numpy(dtype=object), part["item"].to_numpy(dtype=object)
    sets = {r: frozenset(keys[runs == r]) for r in run_ids}
    empty = [r for r, s in sets.items() if not s]
    if empty:
        raise Mismatch(f"no item scores by {judge} for run(s) {', '.join(empty)}")
    first = sets[run_ids[0]]
    other = [r for r, s in sets.items() if s != first]
    if other:
        raise Mismatch(
            f"run(s) {', '.join(other)} were scored on other items than {run_ids[0]} "
            f"({len(first)} items): not comparable item by item"
        )
    order = sorted(first)
    column = {key: i for i, key in enumerate(order)}
    unique = list(dict.fromkeys(run_ids))
    values = np.full((len(unique), len(order)), np.nan)
    cells = pd.Index(unique).get_indexer(runs), [column[k] for k in keys]
    values[cells] = part["score"].to_numpy(dtype=float)
    values = values[[unique.index(r) for r in run_ids]]
    category_of = dict(zip(keys, part["category"].to_numpy(dtype=object), strict=True))
    categories = np.array([category_of[k] for k in order], dtype=object)
    missing = [c for c in CATEGORIES if c not in set(categories)]
    if missing:
        raise Mismatch(f"no item of categories {', '.join(missing)}: the macro average needs all 9")
    return {c: values[:, categories == c] for c in CATEGORIES}


def scored_by_all(matrices: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`score_matrices` cut to the items every run scored, and per category how many items were
    left out; Mismatch when a category keeps none (the macro average needs all 9)."""
    kept = {c: m[:, ~np.isnan(m).any(axis=0)] for c, m in matrices.items()}
    empty = [c for c, m in kept.items() if m.shape[1] == 0]
    if empty:
        raise Mismatch(f"no item of categories {', '.join(empty)} is scored in every run")
    dropped = np.array([matrices[c].shape[1] - m.shape[1] for c, m in kept.items()])
    return kept, dropped
