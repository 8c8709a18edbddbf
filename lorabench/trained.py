"""A trained run's model: the one place that says what to load for a run or a directory.

Training records the base it *actually* started from (for a chained run, the base run's model)
in the run's resolved config and as the `base_model` tag; everything that needs a run's model
(evaluation, a chained run's training, merging) asks `spec_of_run` and loads through
`ModelSpec`, so a chain of any depth resolves stage by stage:

    tiny+ft(2m)                       base: tiny (built from its architecture), saved: model/
    tiny+ft(2m)+lora(math_0.25m)      base: outputs/tiny+ft(2m)/model, saved: adapter/
    tiny+ft(2m)+lora(math_0.25m)+ft(x) base: outputs/tiny+ft(2m)+lora(math_0.25m)/merged

An adapter is merged into its base in one place (`base_model_dir`), once, beside the adapter.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lorabench import contract
from lorabench.config.schema import Config, ModelConfig, TrackingConfig
from lorabench.errors import ConfigError
from lorabench.identity import digest
from lorabench.methods import Method, method_of_dir
from lorabench.modeling import build_model, build_tokenizer
from lorabench.tracking import client_for, find_run

MERGED_DIR = "merged"
"""Beside an adapter: the adapter merged into its base (made once, for chained runs)."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load: base weights, the trained result on top of them (if any), the seed."""

    base: ModelConfig
    """`pretrained` is a Hub id, a local directory (e.g. another run's model) or None (built
    from `architecture` with `seed`)."""
    saved: Path | None = None
    """A trained adapter or full model directory; None: the base itself."""
    seed: int = 0
    """Initialisation seed of a base built from its architecture."""

    @property
    def method(self) -> Method | None:
        """The method that produced `saved` (None for an untuned base)."""
        return None if self.saved is None else method_of_dir(self.saved)

    def fingerprint(self) -> str:
        """Equal for two specs that load the same weights (part of generation and eval keys)."""
        base = OmegaConf.to_container(OmegaConf.structured(self.base), resolve=True)
        return digest([base, self.seed, None if self.saved is None else str(self.saved.resolve())])

    def describe(self) -> str:
        """One line for logs: `adapter <path> on <base>`."""
        base = self.base.pretrained or f"{self.base.name} (from its architecture, seed {self.seed})"
        if self.saved is None:
            return str(base)
        if self.method.needs_base:
            return f"adapter {self.saved} on {base}"
        return f"model {self.saved}"

    def tokenizer(self, cache_dir: str | Path) -> PreTrainedTokenizerBase:
        """The tokenizer the model was trained with."""
        if self.base.tokenizer.kind != "tiny" and self.saved is not None:
            if not self.method.needs_base:
                return AutoTokenizer.from_pretrained(self.saved)  # saved beside the weights
        return build_tokenizer(self.base, cache_dir)

    def load(
        self, cache_dir: str | Path, dtype: torch.dtype = torch.float32
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The model (an adapter merged into its base) and its tokenizer."""
        tokenizer = self.tokenizer(cache_dir)
        method = self.method
        if method is not None and not method.needs_base:
            return method.load_trained(None, self.saved, dtype), tokenizer
        model = build_model(self.base, tokenizer, dtype=dtype, seed=self.seed)
        if method is not None:
            model = method.load_trained(model, self.saved, dtype)
        return model, tokenizer


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run and its model."""

    run_id: str
    name: str
    spec: ModelSpec


def spec_of_run(tracking: TrackingConfig, ref: str, key: str = "run") -> TrainedRun:
    """The model of a finished run (by id or name), checked to be loadable on this machine.

    `key` names the config key that referred to the run, for the error messages.
    """
    client = client_for(tracking)
    run = find_run(client, tracking, ref, key)
    info = client.get_run(run.run_id)
    tags = info.data.tags
    label = f"{key}={ref!r} ({info.info.run_name}, {run.run_id})"
    if not _training_finished(info.info.status, tags):
        raise ConfigError(
            f"{label} has not finished training (status {info.info.status}); "
            "train it first, e.g. with the same sweep or train.py command"
        )
    saved = Path(tags[contract.TAG_MODEL_PATH])
    if not saved.exists():
        raise ConfigError(
            f"{label}: its model {saved} is not on this machine; copy it there, or retrain "
            "the run here"
        )
    trained = OmegaConf.load(
        client.download_artifacts(run.run_id, contract.ARTIFACT_RESOLVED_CONFIG)
    )
    base = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), trained.model))
    spec = ModelSpec(base=base, saved=saved, seed=int(trained.training.seed))
    if spec.method.needs_base:
        _check_base_present(spec, label)
    return TrainedRun(run.run_id, info.info.run_name, spec)


def _training_finished(status: str, tags: dict[str, str]) -> bool:
    """FINISHED with a model; or left open by an evaluation that was stopped (the run is
    reopened to log scores) while its output directory records finished training."""
    if contract.TAG_MODEL_PATH not in tags:
        return False
    done = Path(tags[contract.TAG_MODEL_PATH]).parent / contract.COMPLETE_MARKER
    return status == "FINISHED" or done.is_file()


def _check_base_present(spec: ModelSpec, label: str) -> None:
    pretrained = spec.base.pretrained
    if pretrained is not None and Path(pretrained).is_absolute() and not Path(pretrained).exists():
        raise ConfigError(
            f"{label}: the base its adapter was trained on, {pretrained}, is missing; "
            "retrain the run it came from (its base run) or restore that directory"
        )


def base_model_dir(spec: ModelSpec, cache_dir: str | Path) -> Path:
    """A full model directory to start a chained run from: a full model as it is, an adapter
    merged into its base once (kept beside the adapter, written atomically)."""
    if spec.saved is None:
        raise ValueError("an untuned base has no model directory of its own")
    if not spec.method.needs_base:
        return spec.saved
    merged = spec.saved.parent / MERGED_DIR
    if merged.is_dir():
        return merged
    model, tokenizer = spec.load(cache_dir)
    staging = Path(tempfile.mkdtemp(dir=merged.parent, prefix=".merging-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.replace(merged)
    except OSError:  # another process merged it first
        shutil.rmtree(staging, ignore_errors=True)
    return merged


def effective_base(cfg: Config) -> tuple[str | None, ModelConfig]:
    """The base run's id (None when not chained) and the model config training starts from: a
    demo base's pretrained weights (`lorabench.pretrain`), or the base run's model."""
    if cfg.base_run is None:
        from lorabench.pretrain import resolved_model  # it trains: import it only when needed

        return None, resolved_model(cfg)
    base = spec_of_run(cfg.tracking, cfg.base_run, key="base_run")
    return base.run_id, replace(cfg.model, pretrained=str(base_model_dir(base.spec, cfg.cache_dir)))
