"""Evaluating a model: generate answers on the eval set, judge them, aggregate, log to MLflow.

Data flow: target (`targets`: a training run, a model / adapter directory, or the base model) →
model + tokenizer (`lorabench.trained`) → generations (kept on disk, resumable, reused by later
judges, keyed by the weights they came from) → judgements → per-category scores and the macro
average (`scoring`) → metrics and artifacts of the target's run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.evaluation.eval_set import EvalItem, load_items
from lorabench.evaluation.generation import generate_answers
from lorabench.evaluation.scoring import Aggregate, aggregate, evaluation_metrics
from lorabench.evaluation.targets import (
    Target,
    evaluation_hash,
    generation_key,
    resolve_target,
    slug,
)
from lorabench.judging import Judge, Judgement, JudgeRequest, build_judge
from lorabench.tracking import Run, client_for, reopened_run, tracked_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one evaluation (also logged to MLflow)."""

    run_id: str | None
    aggregate: Aggregate
    metrics: dict[str, float]
    generations_path: Path
    judgements_path: Path


@dataclass(frozen=True)
class KeptAnswer:
    """An answer on disk (`generations.jsonl`)."""

    text: str
    truncated: bool


def read_generations(path: Path, key: str) -> dict[int, KeptAnswer]:
    """Answers kept in `path` under this generation key (none when the key differs)."""
    meta = path.with_suffix(".meta.json")
    if not path.is_file() or not meta.is_file() or json.loads(meta.read_text())["key"] != key:
        return {}
    answers = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):  # a line cut by an interruption is generated again
                row = json.loads(line)
                answers[row["index"]] = KeptAnswer(row["answer"], bool(row["truncated"]))
    return answers


def generate_missing(
    cfg: Config,
    target: Target,
    items: Sequence[EvalItem],
    path: Path,
    kept: dict[int, KeptAnswer],
) -> list[KeptAnswer]:
    """Answers for every item: `kept` (read from `path`) are reused, the rest are generated and
    appended as each batch finishes (an interrupted evaluation loses at most one batch)."""
    answers = dict(kept)
    todo = [i for i in range(len(items)) if i not in answers]
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not answers:
            path.write_text("")
            meta = {"key": generation_key(cfg, target), "model": target.spec.describe()}
            path.with_suffix(".meta.json").write_text(json.dumps(meta))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        log.info("generating with %s", target.spec.describe())
        model, tokenizer = target.spec.load(cfg.cache_dir, dtype)
        with path.open("a", encoding="utf-8") as f:
            for answer in generate_answers(
                model.to(device),
                tokenizer,
                [items[i].question for i in todo],
                cfg.eval.decoding,
                batch_size=cfg.eval.batch_size,
                seed=cfg.eval.seed,
            ):
                i = todo[answer.index]
                answers[i] = KeptAnswer(answer.text, answer.truncated)
                row = {
                    "index": i,
                    **_item_fields(items[i]),
                    "answer": answer.text,
                    "truncated": answer.truncated,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
    return [answers[i] for i in range(len(items))]


def _item_fields(item: EvalItem) -> dict[str, str]:
    return {
        "question": item.question,
        "class": item.raw_class,
        "category": item.category,
        "reference": item.std_answer,
    }


def _write_judgements(judgements: Sequence[Judgement], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for judgement in judgements:
            f.write(json.dumps(judgement.to_dict(), ensure_ascii=False) + "\n")


def _repeat_judgements(
    judge: Judge, requests: Sequence[JudgeRequest], repeats: int
) -> list[tuple[int, Judgement]]:
    """The `repeats - 1` extra judgements of every request, each numbered from 1."""
    extra = [replace(r, repeat=k) for k in range(1, repeats) for r in requests]
    if not extra:
        return []
    return list(zip((r.repeat for r in extra), judge.judge_all(extra), strict=True))


def _write_repeats(repeats: Sequence[tuple[int, Judgement]], path: Path, judge: Judge) -> None:
    """Repeat judgements with their number and the judge's temperature (0 or unset: the
    repeats measure only the server's nondeterminism)."""
    if not repeats:
        return
    temperature = judge.params().get("temperature")
    with path.open("w", encoding="utf-8") as f:
        for k, judgement in repeats:
            row = {**judgement.to_dict(), "repeat": k, "temperature": temperature}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _is_headline(setting: bool | None, run: Run, judge_name: str) -> bool:
    """`judge.headline`, or when null: the run has no headline judge yet, or it is this one."""
    if setting is not None:
        return setting
    current = run.client.get_run(run.run_id).data.tags.get(contract.TAG_EVAL_JUDGE)
    return current in (None, judge_name)


def _judges_of(run: Run) -> set[str]:
    tags = run.client.get_run(run.run_id).data.tags
    listed = tags.get(contract.TAG_EVAL_JUDGES) or tags.get(contract.TAG_EVAL_JUDGE) or ""
    return {j for j in listed.split(",") if j}


def _prompts_label(judge: Judge) -> str:
    params = judge.params()
    parts = [str(params[k]) for k in ("prompts", "prompt_layout") if params.get(k)]
    return " ".join(parts) or judge.name


def _tracking_context(cfg: Config, target: Target) -> AbstractContextManager[Run]:
    if target.run_id is not None:
        return reopened_run(client_for(cfg.tracking), target.run_id)
    return tracked_run(
        cfg.tracking, target.name, target.eval_dir, tags={contract.TAG_PROFILE: cfg.profile}
    )


def _log_judged(
    run: Run,
    cfg: Config,
    target: Target,
    judge: Judge,
    n_items: int,
    metrics: dict[str, float],
    judgements_path: Path,
    repeats: Sequence[tuple[int, Judgement]],
) -> None:
    """Log one judge's metrics and artifacts: always under its own names
    (`eval/judges/<judge>/`), and as the run's headline when it is (`judge.headline`)."""
    generations = target.eval_dir / "generations.jsonl"
    headline = _is_headline(cfg.judge.headline, run, judge.name)
    per_judge = {contract.judge_metric(judge.name, k): v for k, v in metrics.items()}
    run.log_metrics({**per_judge, **(metrics if headline else {})})
    judges = _judges_of(run) | {judge.name}
    tags: dict[str, object] = {contract.TAG_EVAL_JUDGES: ",".join(sorted(judges))}
    if headline:
        tags |= {
            contract.TAG_EVAL_JUDGE: judge.name,
            contract.TAG_EVAL_SET: cfg.eval.name,
            contract.TAG_EVAL_ITEMS: n_items,
            contract.TAG_EVAL_HASH: evaluation_hash(cfg, target),
            contract.TAG_EVAL_JUDGE_MODEL: ", ".join(judge.served_models),
            contract.TAG_EVAL_JUDGE_PROMPTS: _prompts_label(judge),
        }
    run.set_tags(tags)
    run.client.log_artifact(run.run_id, str(generations), contract.ARTIFACT_EVAL_DIR)
    judge_dir = contract.judge_artifact_dir(judge.name)
    run.client.log_artifact(run.run_id, str(judgements_path), judge_dir)
    if repeats:
        run.client.log_artifact(
            run.run_id, str(judgements_path.with_name(contract.REPEATS_FILE)), judge_dir
        )
    if headline:
        run.client.log_artifact(run.run_id, str(judgements_path), contract.ARTIFACT_EVAL_DIR)
    else:
        log.info("%s: scores kept under %s (not the headline)", judge.name, judge_dir)


def estimate(cfg: Config) -> tuple[int, int, int]:
    """(items, judge calls, estimated tokens) an evaluation would spend; calls nothing.

    Answers not generated yet count as empty, so their tokens are not in the estimate.
    """
    target = resolve_target(cfg)
    items = load_items(cfg.eval, cfg.cache_dir)
    kept = read_generations(target.eval_dir / "generations.jsonl", generation_key(cfg, target))
    judge = build_judge(cfg.judge, cfg.cache_dir)
    requests = [
        JudgeRequest(item, kept[i].text if i in kept else "") for i, item in enumerate(items)
    ]
    calls, tokens = judge.estimate(requests)
    return len(items), calls, tokens


def evaluate(cfg: Config) -> EvalResult:
    """Generate, judge and aggregate; log metrics and artifacts into the target's run."""
    target = resolve_target(cfg)
    items = load_items(cfg.eval, cfg.cache_dir)
    judge = build_judge(cfg.judge, cfg.cache_dir)
    generations = target.eval_dir / "generations.jsonl"
    judgements_path = target.eval_dir / slug(judge.name) / "judgements.jsonl"
    # Fail fast: a missing key or an unknown judge model must stop us before any generation.
    # Only an evaluation with nothing left to generate or pay for needs no check at all.
    kept = read_generations(generations, generation_key(cfg, target))
    if (
        len(kept) < len(items)
        or judge.estimate([JudgeRequest(item, kept[i].text) for i, item in enumerate(items)]).calls
    ):
        judge.preflight()
    with _tracking_context(cfg, target) as run:
        answers = generate_missing(cfg, target, items, generations, kept)
        requests = [JudgeRequest(i, a.text) for i, a in zip(items, answers, strict=True)]
        judgements = judge.judge_all(requests)
        repeats = _repeat_judgements(judge, requests, cfg.judge.repeats)
        _write_judgements(judgements, judgements_path)
        repeats_path = judgements_path.with_name(contract.REPEATS_FILE)
        _write_repeats(repeats, repeats_path, judge)
        agg = aggregate(((j.category, j.score) for j in judgements), seed=cfg.eval.seed)
        truncated = [item.category for item, a in zip(items, answers, strict=True) if a.truncated]
        metrics = {
            **evaluation_metrics(agg, judgements, truncated),
            **judge.stats.as_metrics(),
        }
        _log_judged(run, cfg, target, judge, len(items), metrics, judgements_path, repeats)
        if agg.missing_categories:
            log.warning(
                "no judged item in %s: the average score is undefined",
                ", ".join(agg.missing_categories),
            )
        if truncated:
            log.warning(
                "%d of %d answers stopped at eval.decoding.max_new_tokens=%d (may be cut)",
                len(truncated),
                len(items),
                cfg.eval.decoding.max_new_tokens,
            )
    return EvalResult(run.run_id, agg, metrics, generations, judgements_path)
