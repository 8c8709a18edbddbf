"""Evaluating a model: generate answers on the eval set, judge them, aggregate, log to MLflow.

Data flow: target (an MLflow training run, a model / adapter directory, or the base model) →
model + tokenizer → generations (kept on disk, resumable, reused by later judges) → judgements
→ per-category scores and the macro average → metrics and artifacts of the target's run.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorabench.config.schema import Config, EvalConfig, ModelConfig
from lorabench.demo_corpus import generate_eval_set, write_jsonl
from lorabench.errors import ConfigError
from lorabench.eval_set import EvalItem, download, load_eval_set
from lorabench.generation import generate_answers
from lorabench.judging import Judgement, JudgeRequest, build_judge
from lorabench.metrics import Aggregate, aggregate, aggregate_metrics
from lorabench.modeling import build_model, build_tokenizer
from lorabench.tracking import (
    Run,
    client_for,
    config_hash,
    find_run,
    reopened_run,
    tracked_run,
)

log = logging.getLogger(__name__)

GENERATIONS_ARTIFACT = "eval/generations.jsonl"
JUDGEMENTS_ARTIFACT = "eval/judgements.jsonl"


@dataclass(frozen=True)
class Target:
    """What to evaluate and where its evaluation lives."""

    name: str
    model_cfg: ModelConfig
    """The base model (for an adapter) or the model itself when `model_path` is None."""
    model_path: Path | None
    seed: int
    run_id: str | None
    """The training run to log into; None: the evaluation opens a run of its own."""
    eval_dir: Path

    @property
    def is_adapter(self) -> bool:
        return self.model_path is not None and (self.model_path / "adapter_config.json").is_file()


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one evaluation (also logged to MLflow)."""

    run_id: str | None
    aggregate: Aggregate
    metrics: dict[str, float]
    generations_path: Path
    judgements_path: Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+()-]+", "_", text)


def load_items(eval_cfg: EvalConfig, cache_dir: str | Path) -> list[EvalItem]:
    """The eval set: a local file, a (cached) download, or the generated demo set."""
    if eval_cfg.path is not None:
        path = Path(eval_cfg.path)
    elif eval_cfg.url is not None:
        path = download(
            eval_cfg.url, Path(cache_dir) / "eval" / f"{eval_cfg.name}.json", eval_cfg.sha256
        )
    else:
        path = write_jsonl(
            generate_eval_set(eval_cfg.demo_per_class),
            Path(cache_dir) / "eval" / f"demo-{eval_cfg.demo_per_class}.jsonl",
        )
    items = load_eval_set(path)
    return items[: eval_cfg.limit] if eval_cfg.limit else items


def resolve_target(cfg: Config) -> Target:
    """What `run=` / `model_path=` name, or the configured base model."""
    if cfg.run is not None and cfg.model_path is not None:
        raise ConfigError("give run= or model_path=, not both")
    if cfg.run is not None:
        run = find_run(client_for(cfg.tracking), cfg.tracking, cfg.run)
        info = run.client.get_run(run.run_id)
        if "model_path" not in info.data.tags:
            raise ConfigError(
                f"run={cfg.run!r} has no saved model (tag model_path): train it first"
            )
        model_path = Path(info.data.tags["model_path"])
        if not model_path.exists():
            raise ConfigError(f"run={cfg.run!r}: its model {model_path} is not on this machine")
        trained = OmegaConf.load(run.client.download_artifacts(run.run_id, "config/resolved.yaml"))
        model_cfg = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(ModelConfig), trained.model)
        )
        return Target(
            name=info.info.run_name,
            model_cfg=model_cfg,
            model_path=model_path,
            seed=int(trained.training.seed),
            run_id=run.run_id,
            eval_dir=model_path.parent / "eval" / cfg.eval.name,
        )
    if cfg.model_path is not None:
        path = Path(cfg.model_path)
        if not path.is_dir():
            raise ConfigError(f"model_path={cfg.model_path!r} is not a directory")
        name = f"eval:{path.resolve().parent.name}/{path.name}"
    else:
        path, name = None, cfg.model.name
    return Target(
        name=name,
        model_cfg=cfg.model,
        model_path=path,
        seed=cfg.training.seed,
        run_id=None,
        eval_dir=Path(cfg.eval.output_dir) / _slug(name) / cfg.eval.name,
    )


def load_for_generation(target: Target, cache_dir: str | Path):
    """The model (an adapter merged into its base, for speed) and its tokenizer."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    path = target.model_path
    if target.model_cfg.tokenizer.kind == "tiny" or path is None:
        tokenizer = build_tokenizer(target.model_cfg, cache_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path)
    if path is None or target.is_adapter:
        model = build_model(target.model_cfg, tokenizer, dtype=dtype, seed=target.seed)
        if path is not None:
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device), tokenizer


def _generation_key(cfg: Config, target: Target) -> str:
    # Kept answers are reused only for the same model and the same eval set and decoding.
    return f"{config_hash(OmegaConf.structured(cfg), ('eval',))}:{target.model_path}"


def _read_generations(path: Path, key: str) -> dict[int, str]:
    meta = path.with_suffix(".meta.json")
    if not path.is_file() or not meta.is_file() or json.loads(meta.read_text())["key"] != key:
        return {}
    answers = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):  # a line cut by an interruption is generated again
                row = json.loads(line)
                answers[row["index"]] = row["answer"]
    return answers


def generate_missing(
    cfg: Config,
    target: Target,
    items: Sequence[EvalItem],
    path: Path,
    kept: dict[int, str],
) -> list[str]:
    """Answers for every item: `kept` (read from `path`) are reused, the rest are generated and
    appended as each batch finishes (an interrupted evaluation loses at most one batch)."""
    key = _generation_key(cfg, target)
    answers = dict(kept)
    todo = [i for i in range(len(items)) if i not in answers]
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not answers:
            path.write_text("")
            path.with_suffix(".meta.json").write_text(json.dumps({"key": key}))
        model, tokenizer = load_for_generation(target, cfg.cache_dir)
        with path.open("a", encoding="utf-8") as f:
            for j, answer in generate_answers(
                model,
                tokenizer,
                [items[i].question for i in todo],
                cfg.eval.decoding,
                batch_size=cfg.eval.batch_size,
                seed=cfg.eval.seed,
            ):
                i = todo[j]
                answers[i] = answer
                row = {"index": i, **_item_fields(items[i]), "answer": answer}
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


def _tracking_context(cfg: Config, target: Target) -> AbstractContextManager[Run]:
    if target.run_id is not None:
        return reopened_run(client_for(cfg.tracking), target.run_id)
    return tracked_run(cfg.tracking, target.name, target.eval_dir, tags={"profile": cfg.profile})


def estimate(cfg: Config) -> tuple[int, int, int]:
    """(items, judge calls, estimated tokens) an evaluation would spend; calls nothing.

    Answers not generated yet count as empty, so their tokens are not in the estimate.
    """
    target = resolve_target(cfg)
    items = load_items(cfg.eval, cfg.cache_dir)
    answers = _read_generations(target.eval_dir / "generations.jsonl", _generation_key(cfg, target))
    judge = build_judge(cfg.judge, cfg.cache_dir)
    requests = [JudgeRequest(item, answers.get(i, "")) for i, item in enumerate(items)]
    calls, tokens = judge.estimate(requests)
    return len(items), calls, tokens


def evaluate(cfg: Config) -> EvalResult:
    """Generate, judge and aggregate; log metrics and artifacts into the target's run."""
    target = resolve_target(cfg)
    items = load_items(cfg.eval, cfg.cache_dir)
    judge = build_judge(cfg.judge, cfg.cache_dir)
    generations = target.eval_dir / "generations.jsonl"
    judgements_path = target.eval_dir / _slug(judge.name) / "judgements.jsonl"
    # Fail fast: a missing key or an unknown judge model must stop us before any generation.
    # Only an evaluation with nothing left to generate or pay for needs no check at all.
    kept = _read_generations(generations, _generation_key(cfg, target))
    if (
        len(kept) < len(items)
        or judge.estimate([JudgeRequest(item, kept[i]) for i, item in enumerate(items)]).calls
    ):
        judge.preflight()
    with _tracking_context(cfg, target) as run:
        answers = generate_missing(cfg, target, items, generations, kept)
        judgements = judge.judge_all(
            [JudgeRequest(i, a) for i, a in zip(items, answers, strict=True)]
        )
        _write_judgements(judgements, judgements_path)
        agg = aggregate(((j.category, j.score) for j in judgements), seed=cfg.eval.seed)
        metrics = {**aggregate_metrics(agg), **judge.stats.as_metrics()}
        run.log_metrics(metrics)
        run.set_tags(
            {
                "eval_judge": judge.name,
                "eval_set": cfg.eval.name,
                "eval_items": len(items),
                "eval_hash": config_hash(OmegaConf.structured(cfg), ("eval", "judge")),
            }
        )
        run.client.log_artifact(run.run_id, str(generations), "eval")
        run.client.log_artifact(run.run_id, str(judgements_path), "eval")
        if agg.missing_categories:
            log.warning(
                "no judged item in %s: the average score is undefined",
                ", ".join(agg.missing_categories),
            )
    return EvalResult(run.run_id, agg, metrics, generations, judgements_path)
