"""A demo base model's pretrained weights: from the cache when a valid entry exists, else
pretrained now (said on the console and logged), or refused where no pretraining may run."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from lorabench import contract
from lorabench.config.schema import Config, ModelConfig
from lorabench.demo.pretraining import cache
from lorabench.demo.pretraining.recipe import pretrain_into
from lorabench.errors import ConfigError
from lorabench.launching.topology import DistEnv
from lorabench.modeling.base import build_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedBase:
    """A checked cache entry."""

    path: Path
    record: cache.Record
    built: bool
    """Pretrained by this call (False: found in the cache)."""


def make_command(cfg: Config) -> str:
    """The command that pretrains this config's base ahead of time."""
    return f"python -m lorabench.demo.pretraining profile={cfg.profile} model={cfg.model.name}"


def _lookup(cfg: Config) -> tuple[PreTrainedTokenizerBase, dict, str, Path]:
    """The tokenizer, the key's material, the key and the entry directory of `cfg.model`."""
    model_cfg = cfg.model
    if model_cfg.pretrain is None:
        raise ValueError(f"model {model_cfg.name} has no pretraining config (model.pretrain)")
    tokenizer = build_tokenizer(model_cfg, cfg.cache_dir)
    values = cache.material(model_cfg, tokenizer)
    key = cache.cache_key(values)
    return tokenizer, values, key, cache.entry_dir(cfg.pretrained_dir, model_cfg.name, key)


def cached_base(cfg: Config) -> PretrainedBase | None:
    """The valid cached base of `cfg.model`, or None (nothing is built)."""
    _, values, key, entry = _lookup(cfg)
    if entry.is_dir() and cache.problem(entry, key, values) is None:
        return PretrainedBase(entry, cache.read_record(entry), built=False)
    return None


def ensure_pretrained(cfg: Config, *, build: bool = True, on_demand: bool = True) -> PretrainedBase:
    """The pretrained base of `cfg.model` (which has `pretrain` set): the cached entry of its
    key, or, when there is none or it cannot be trusted (`lorabench.demo.pretraining.cache`),
    one pretrained now. With `build=False` a missing base is an error naming the command that makes
    it. `on_demand` (another stage needs the base) says on the console that it is made now;
    the pretraining command itself passes False."""
    model_cfg = cfg.model
    tokenizer, values, key, entry = _lookup(cfg)
    root = entry.parent
    if entry.is_dir() and cache.problem(entry, key, values) is None:
        return PretrainedBase(entry, cache.read_record(entry), built=False)
    if not build:
        raise ConfigError(
            f"model {model_cfg.name}: its pretrained base (key {key}) is not in {root}; make it "
            f"first with `{make_command(cfg)}` and the same model.* overrides"
        )
    with cache.building(root, entry.name):
        if entry.is_dir():  # another process may have built it while we waited
            why = cache.problem(entry, key, values)
            if why is None:
                return PretrainedBase(entry, cache.read_record(entry), built=False)
            log.warning("pretrained base %s %s: discarding it and pretraining again", entry, why)
            cache.discard(entry)
        else:
            log.log(
                logging.WARNING if on_demand else logging.INFO,
                "model %s: no pretrained base for this config in %s yet; pretraining it now "
                "(once per config; `%s` makes it ahead)",
                model_cfg.name,
                root,
                make_command(cfg),
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=root))
        try:
            record = pretrain_into(cfg, tokenizer, key, values, staging, entry)
            cache.write_record(staging, record)
            cache.publish(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("pretrained base %s: %s", entry, record.metrics)
    return PretrainedBase(entry, record, built=True)


def resolved_model(cfg: Config) -> ModelConfig:
    """`cfg.model` as training and evaluation load it: a base with a pretraining config (and no
    weights named) points at its pretrained directory, made now if it is missing, except in a
    process a distributed launcher started (its launching process makes it first)."""
    model_cfg = cfg.model
    if model_cfg.pretrained is not None or model_cfg.pretrain is None:
        return model_cfg
    base = ensure_pretrained(cfg, build=not DistEnv.from_environ().launched)
    return replace(model_cfg, pretrained=str(base.path.resolve()))


def pretrain_tags(model_cfg: ModelConfig) -> dict[str, str]:
    """Tags naming the pretraining a resolved model's weights come from (none for other
    models): its cache key and the run that made it."""
    if model_cfg.pretrain is None or model_cfg.pretrained is None:
        return {}
    record = cache.read_record(Path(model_cfg.pretrained))
    if record is None:  # another directory (e.g. a chained run's model) holds the weights
        return {}
    tags = {contract.TAG_PRETRAIN_KEY: record.key}
    if record.run_id is not None:
        tags[contract.TAG_PRETRAIN_RUN_ID] = record.run_id
    return tags
