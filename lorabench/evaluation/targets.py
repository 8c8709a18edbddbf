"""What an evaluation scores: a training run's model, a model / adapter directory, or the base
model itself; and the keys under which its answers and scores are kept."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.errors import ConfigError
from lorabench.identity import model_run_name, section_hash
from lorabench.methods import method_of_dir
from lorabench.modeling.trained import ModelSpec, spec_of_run


@dataclass(frozen=True)
class Target:
    """What to evaluate and where its evaluation lives."""

    name: str
    spec: ModelSpec
    """What is loaded (`lorabench.modeling.trained`): base weights, adapter or model, seed."""
    run_id: str | None
    """The training run to log into; None: the evaluation opens a run of its own."""
    eval_dir: Path
    is_base: bool = False
    """The untuned base model itself: its run is the base row (`contract.RUN_KIND_BASE`)."""
    run_tags: dict[str, str] = field(default_factory=dict)
    """Tags the evaluation sets on a run of its own (a base row's kind and weights)."""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+()\[\]=,-]+", "_", text)


def _base(cfg: Config, needed: bool = True):
    """The configured base as it loads: a demo base points at its pretrained weights."""
    if not needed:
        return cfg.model
    from lorabench.demo.pretraining import resolved_model  # it trains: import it only when needed

    return resolved_model(cfg)


def resolve_target(cfg: Config) -> Target:
    """What `run=` / `model_path=` name, or the configured base model (`<model> (base)`)."""
    if cfg.run is not None and cfg.model_path is not None:
        raise ConfigError("give run= or model_path=, not both")
    if cfg.run is not None:
        trained = spec_of_run(cfg.tracking, cfg.run)
        return Target(
            name=trained.name,
            spec=trained.spec,
            run_id=trained.run_id,
            eval_dir=trained.spec.saved.parent / "eval" / cfg.eval.name,
        )
    if cfg.model_path is not None:
        path = Path(cfg.model_path)
        if not path.is_dir():
            raise ConfigError(f"model_path={cfg.model_path!r} is not a directory")
        name = f"eval:{path.resolve().parent.name}/{path.name}"
        base = _base(cfg, needed=method_of_dir(path).needs_base)
        tags = {}
    else:
        from lorabench.demo.pretraining import pretrain_tags

        path, base = None, _base(cfg)
        name = model_run_name(cfg.run_name, cfg.model.name, contract.RUN_KIND_BASE)
        tags = {contract.TAG_RUN_KIND: contract.RUN_KIND_BASE, **pretrain_tags(base)}
    spec = ModelSpec(base=base, saved=path, seed=cfg.training.seed)
    if path is None:
        tags[contract.TAG_BASE_MODEL] = spec.describe()
    return Target(
        name=name,
        spec=spec,
        run_id=None,
        eval_dir=Path(cfg.eval.output_dir) / slug(name) / cfg.eval.name,
        is_base=path is None,
        run_tags=tags,
    )


HOW_SERVED = ("eval.backend", "eval.server", "eval.vllm")
"""Eval keys that say where answers are generated, not what they are: hashed as the engine
(`generation_engine`) instead, so a server's URL, port or concurrency never invalidates them."""
HOW_PACED = (
    "judge.batch",
    "judge.batch_poll_seconds",
    "judge.requests_per_minute",
    "judge.tokens_per_minute",
)
"""Judge keys that say how the calls are sent (synchronously or in a batch, how fast), not
what is asked: a change never invalidates an evaluation (and adding them changed no hash)."""


BENCHMARK_KEYS = (
    "eval.benchmarks",
    "eval.benchmark_roles",
    "eval.world_perplexity",
    "eval.lm_eval",
    "eval.demo_panel",
)
"""Eval keys of the benchmark stage (`lorabench.benchmarks`), hashed into its own `bench_hash`:
they change neither the answers nor the judge's scores (and adding them changed no hash)."""


def generation_engine(cfg: Config) -> str:
    """`hf`, or `server` for both server backends: a vLLM started for the run and one already
    running generate the same answers, while transformers' sampling differs from a server's."""
    return "hf" if cfg.eval.backend == "hf" else "server"


def _engine_extra(cfg: Config) -> tuple[str, ...]:
    # Nothing for hf: keys of answers kept before the backends existed stay valid.
    engine = generation_engine(cfg)
    return () if engine == "hf" else (f"engine={engine}",)


def generation_key(cfg: Config, target: Target) -> str:
    """Kept answers are reused only for the same weights, eval set, decoding and engine."""
    return section_hash(
        cfg,
        ("eval",),
        target.spec.fingerprint(),
        *_engine_extra(cfg),
        exclude=HOW_SERVED + BENCHMARK_KEYS,
    )


def evaluation_hash(cfg: Config, target: Target) -> str:
    """The `eval_hash` tag: eval set, decoding, engine, judge and the evaluated weights."""
    return section_hash(
        cfg,
        ("eval", "judge"),
        target.spec.fingerprint(),
        *_engine_extra(cfg),
        exclude=HOW_SERVED + HOW_PACED + BENCHMARK_KEYS,
    )
