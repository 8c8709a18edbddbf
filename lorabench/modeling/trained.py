"""A trained run's model: the one place that says what to load for a run or a directory.

Training records the base it *actually* started from (for a chained run, the base run's model)
in the run's resolved config and as the `base_model` tag; everything that needs a run's model
(evaluation, a chained run's training, merging) asks `spec_of_run` and loads through
`ModelSpec`, so a chain of any depth resolves stage by stage:

    tiny+ft(2m)                       base: tiny (built from its architecture), saved: model/
    tiny+ft(2m)+lora(math_0.25m)      base: outputs/tiny+ft(2m)/model, saved: adapter/
    tiny+ft(2m)+lora(math_0.25m)+ft(x) base: outputs/tiny+ft(2m)+lora(math_0.25m)/merged

An adapter is merged into its base in one place (`base_model_dir`), once, beside the adapter.

A base retrained in place keeps its name and directory, so a run's weights are identified by
their digest (`weights_digest`), computed once when training finishes and kept in the run's
completion record: a chained run's identity holds its base run's digest (`training_identity`),
and a chained run whose base was retrained since is stale (refused as a base or for evaluation,
trained again by its own training command).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from mlflow.entities import Run as StoredRun
from omegaconf import OmegaConf
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lorabench import contract
from lorabench.config.schema import Config, ModelConfig, TrackingConfig
from lorabench.errors import ConfigError
from lorabench.identity import BASE_WEIGHTS_KEY, digest, identity
from lorabench.methods import Method, method_of_dir
from lorabench.modeling.base import build_model, build_tokenizer
from lorabench.tracking.runs import client_for, find_run

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
"""Beside an adapter: the adapter merged into its base (made once, for chained runs)."""
MERGED_RECORD = "merged_from.json"
"""In `merged/`: the weights digest of the run it was merged from (remade when it differs)."""
RECORD_WEIGHTS = "weights_digest"
"""The completion record's field holding the saved model's weights digest."""
WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json", "adapter_config.json")
"""What a saved model's digest reads: its weights and the configs they load with."""
NOT_WEIGHTS = frozenset({"training_args.bin"})
"""Saved beside the weights by the Trainer, but no part of the model."""


def weights_digest(saved: Path, base_weights: str | None = None) -> str:
    """The digest of a saved model's weight files (names and contents) and, for a chained
    run, of its base run's weights: equal digests load the same model."""
    found = {p for pattern in WEIGHT_FILES for p in saved.glob(pattern) if p.is_file()}
    total = hashlib.sha256()
    for path in sorted(p for p in found if p.name not in NOT_WEIGHTS):
        with path.open("rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        total.update(f"{path.name}\0{content}\0".encode())
    if base_weights is not None:
        total.update(f"base\0{base_weights}".encode())
    return total.hexdigest()[:16]


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
    base_weights: str | None = None
    """A chained run's: the weights digest of the base run it trained on (its base's path stays
    the same when that run is retrained in place)."""

    @property
    def method(self) -> Method | None:
        """The method that produced `saved` (None for an untuned base)."""
        return None if self.saved is None else method_of_dir(self.saved)

    def fingerprint(self) -> str:
        """Equal for two specs that load the same weights (part of generation and eval keys)."""
        base = OmegaConf.to_container(OmegaConf.structured(self.base), resolve=True)
        # How the model computes, not which weights it has: keys from before the option stay.
        base.pop("attn_implementation")
        values = [base, self.seed, None if self.saved is None else str(self.saved.resolve())]
        if self.base_weights is not None:  # only chained runs: the keys of others stay as they were
            values.append(self.base_weights)
        return digest(values)

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
        # The base as the adapter was trained on it (QLoRA's in 4 bits).
        loading = {"dtype": dtype} if method is None else method.base_loading(dtype)
        model = build_model(self.base, tokenizer, seed=self.seed, **loading)
        if method is not None:
            model = method.load_trained(model, self.saved, dtype)
        return model, tokenizer


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run and its model."""

    run_id: str
    name: str
    spec: ModelSpec
    weights: str
    """The digest of its model (`weights_digest`)."""


def base_retrained(base: TrainedRun, before: str | None) -> str:
    """Why a run trained on `base` is stale: `base run tiny+ft(2m) was retrained since this run
    (weights digest abc → def)`."""
    was = before or "not recorded"
    return (
        f"base run {base.name} was retrained since this run (weights digest {was} → {base.weights})"
    )


def spec_of_run(tracking: TrackingConfig, ref: str, key: str = "run") -> TrainedRun:
    """The model of a finished run (by id or name), checked to be loadable on this machine and,
    for a chained run, to have trained on its base run's current weights.

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
    base_weights = _trained_on(tracking, info, trained.get("base_run"), label)
    spec = replace(spec, base_weights=base_weights)
    return TrainedRun(run.run_id, info.info.run_name, spec, _weights_of(saved, base_weights))


def _trained_on(
    tracking: TrackingConfig, info: StoredRun, base_ref: str | None, label: str
) -> str | None:
    """The weights digest of the base run a chained run trained on (None: not chained), checked
    to be that base run's current one.

    A run trained before the digests were recorded trained on its base run's current weights
    when its `base_run_id` is that run's id (retraining a base in place opens a new run); the
    digest is then recorded on it.
    """
    if base_ref is None:
        return None
    base = spec_of_run(tracking, base_ref, key="base_run")
    tags = info.data.tags
    before = tags.get(contract.TAG_BASE_WEIGHTS_DIGEST)
    if before is None and tags.get(contract.TAG_BASE_RUN_ID) == base.run_id:
        before = base.weights
        client_for(tracking).set_tag(info.info.run_id, contract.TAG_BASE_WEIGHTS_DIGEST, before)
    if before != base.weights:
        raise ConfigError(
            f"{label}: {base_retrained(base, before)}; train it again (its own training "
            "command, or the sweep that trains it, retrains it from scratch)"
        )
    return before


def _weights_of(saved: Path, base_weights: str | None) -> str:
    """The weights digest of the model now in `saved`, from its completion record; computed
    on first use and recorded there for a run trained before the digests were."""
    path = saved.parent / contract.COMPLETE_MARKER
    record = json.loads(path.read_text()) if path.is_file() else {}
    if RECORD_WEIGHTS in record:
        return record[RECORD_WEIGHTS]
    log.info("%s: no weights digest recorded (trained before they were); computing it", saved)
    weights = weights_digest(saved, base_weights)
    if record:
        _write_atomically(path, json.dumps({**record, RECORD_WEIGHTS: weights}, indent=2))
    return weights


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` at once (through a temporary file of this writer's own)."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as f:
        f.write(text)
    Path(f.name).replace(path)


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


def base_model_dir(run: TrainedRun, cache_dir: str | Path) -> Path:
    """A full model directory to start a chained run from: a full model as it is, an adapter
    merged into its base once (kept beside the adapter, written atomically, and made again when
    the run's weights differ from those it was merged from)."""
    spec = run.spec
    if not spec.method.needs_base:
        return spec.saved
    merged = spec.saved.parent / MERGED_DIR
    record = merged / MERGED_RECORD
    made_from = json.loads(record.read_text())[RECORD_WEIGHTS] if record.is_file() else None
    if made_from == run.weights:
        return merged
    if merged.is_dir():
        was = made_from or "not recorded"
        log.warning(
            "%s was merged from other weights (digest %s → %s): merging again",
            merged,
            was,
            run.weights,
        )
    model, tokenizer = spec.load(cache_dir)
    staging = Path(tempfile.mkdtemp(dir=merged.parent, prefix=".merging-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / MERGED_RECORD).write_text(json.dumps({RECORD_WEIGHTS: run.weights}))
    _swap_in(staging, merged)
    return merged


def _swap_in(staging: Path, target: Path) -> None:
    """Put the directory `staging` in place of `target` (moving an older one aside first)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
        try:
            target.replace(old / target.name)
        except OSError:  # another process moved it first
            pass
    try:
        staging.replace(target)
    except OSError:  # another process merged it first
        shutil.rmtree(staging, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def base_run_of(cfg: Config) -> TrainedRun | None:
    """The finished run a chained config starts from (None when it is not chained)."""
    if cfg.base_run is None:
        return None
    return spec_of_run(cfg.tracking, cfg.base_run, key="base_run")


def training_identity(cfg: Config, base: TrainedRun | None) -> dict[str, Any]:
    """A training's identity (`lorabench.identity.identity`), with a chained run's base run's
    weights digest: a base retrained in place keeps its name, not its weights."""
    values = identity(cfg)
    if base is not None:
        values[BASE_WEIGHTS_KEY] = base.weights
    return values


def training_hash(cfg: Config) -> str:
    """The `config_hash` of a training: equal for two that train the same model."""
    return digest(training_identity(cfg, base_run_of(cfg)))


def effective_base(cfg: Config, base: TrainedRun | None) -> ModelConfig:
    """The model config training starts from: a demo base's pretrained weights
    (`lorabench.demo.pretraining`), or the base run's model (`base`, from `base_run_of`)."""
    if base is None:
        from lorabench.demo.pretraining import (
            resolved_model,  # it trains: import it only when needed
        )

        return resolved_model(cfg)
    return replace(cfg.model, pretrained=str(base_model_dir(base, cfg.cache_dir)))
