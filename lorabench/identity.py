"""A run's identity is its config: which keys make two trainings different, the run name that
shows them, and the check that an output directory holds the config it is asked for.

The identity is the flattened resolved config restricted to what changes the trained model
(`IDENTITY_KEYS`): the model, the method, the data, the seed, the step limit and the precision.
Keys that change how a run executes (logging, checkpoints, processes, tracking, progress bars)
are not part of it, so a run may be resumed on other hardware or with another logging interval.

The run name shows every identity key whose value differs from the named presets (the config
composed from the same config-group choices and nothing else), so two configs that train
differently never share a name, and the presets' own config keeps the paper's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from omegaconf import DictConfig, OmegaConf

from lorabench import contract
from lorabench.config.schema import CONF_DIR
from lorabench.errors import ConfigError

IDENTITY_KEYS = (
    "model",
    "method",
    "data",
    "base_run",
    "training.seed",
    "training.max_steps",
    "hardware.precision",
)
"""Config keys (and everything below them) that define what a training computes."""
NOT_IDENTITY = (
    "data.num_proc",
    "data.max_bad_fraction",
    "method.usual_learning_rates",
    "model.attn_implementation",
)
"""Below `IDENTITY_KEYS` but not what is trained: preparation's processes, its failure
threshold, the learning rates a method is compared at (a reporting range), and the attention
kernels (the same model, computed another way, as on other hardware)."""
UNNAMED_AXES = ("model.pretrained", "model.tokenizer.name_or_path", "model.name", "base_run")
"""Identity keys never spelt out in a name: the name's head already shows the model and base
run, and pointing a preset at a local copy of its weights should keep the preset's name (a
different copy is still caught by the output directory's identity check)."""
AXIS_ALIASES = {
    "method.learning_rate": "lr",
    "method.epochs": "epochs",
    "method.global_batch_size": "batch",
    "method.max_length": "len",
    "method.warmup_steps": "warmup",
    "method.lr_scheduler": "schedule",
    "method.lora.alpha": "alpha",
    "method.lora.dropout": "dropout",
    "method.lora.targets": "targets",
    "method.lora.target_modules": "modules",
    "method.lora.use_dora": "dora",
    "method.lora.use_rslora": "rslora",
    "method.lora.init": "init",
    "method.lora.loraplus_lr_ratio": "loraplus",
    "method.quantization.quant_type": "quant",
    "data.dev_fraction": "dev",
    "training.seed": "seed",
    "training.max_steps": "steps",
    "data.seed": "data_seed",
    "data.num_samples": "samples",
    "data.batching": "batching",
}
"""Short names of common axes in run names; other axes appear as their dotted key."""
RANK_KEY = "method.lora.r"
"""Shown in the method's label (`lora-r64`) rather than in the `[...]` suffix."""
MAX_AXES_LENGTH = 120
"""Longer `[...]` suffixes are replaced by `[config=<hash>]` (file systems limit name length)."""
BASE_WEIGHTS_KEY = "base_run.weights_digest"
"""In a chained run's identity (`lorabench.modeling.trained.training_identity`): its base run's
weights digest, since a base retrained in place keeps its name and directory."""
INCREMENTAL_SUFFIX = "_incremental"
"""A method preset `<name>_incremental` is the named preset of a chained run of that method."""

_GROUPS = frozenset(p.name for p in CONF_DIR.iterdir() if p.is_dir())


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _flat(cfg: DictConfig | Any) -> dict[str, Any]:
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    return flatten(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def identity(cfg: DictConfig | Any) -> dict[str, Any]:
    """The identity keys of a config (a DictConfig or the typed `Config`) and their values."""
    return {
        k: v
        for k, v in sorted(_flat(cfg).items())
        if _under(k, IDENTITY_KEYS) and not _under(k, NOT_IDENTITY)
    }


def digest(values: Mapping[str, Any] | Sequence[Any]) -> str:
    """A stable 16-hex-digit hash of JSON-able values."""
    payload = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig | Any) -> str:
    """Hash of a config's identity: equal for every config that trains the same model."""
    return digest(identity(cfg))


def section_hash(
    cfg: DictConfig | Any, keys: Sequence[str], *extra: Any, exclude: Sequence[str] = ()
) -> str:
    """Hash of the config under `keys` (e.g. `eval`, `judge`) but not under `exclude`, and any
    `extra` values."""
    kept = {k: v for k, v in _flat(cfg).items() if _under(k, keys) and not _under(k, exclude)}
    return digest([kept, *map(str, extra)])


# ---- naming -----------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float):
        text = f"{value:g}"
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].strip('+')}{m[2]}", text)
    if isinstance(value, list | tuple):
        return ".".join(_value_text(v) for v in value)
    return re.sub(r"[^\w.@%-]+", "_", str(value))


def name_axes(actual: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Identity keys whose value differs from the reference's (values the reference leaves to
    the user, `???`, are not differences)."""
    return {
        k: v
        for k, v in actual.items()
        if k not in UNNAMED_AXES and reference.get(k, object()) != v and reference.get(k) != "???"
    }


def run_name(cfg: DictConfig, reference: Mapping[str, Any]) -> str:
    """The run name of `cfg`: the presets' name plus every axis that differs from `reference`."""
    axes = name_axes(identity(cfg), reference)
    method = str(cfg.method.name)
    if RANK_KEY in axes:
        method += f"-r{axes.pop(RANK_KEY)}"
    shown = {AXIS_ALIASES.get(k, k): _value_text(v) for k, v in axes.items()}
    if len(",".join(f"{k}={v}" for k, v in shown.items())) > MAX_AXES_LENGTH:
        shown = {"config": digest(axes)[:10]}
    return contract.format_run_name(
        str(cfg.model.name), method, str(cfg.data.name), cfg.base_run, shown
    )


def preset_overrides(cfg: DictConfig, overrides: Sequence[str]) -> list[str]:
    """The overrides that choose presets (config groups, `base_run`) and nothing else.

    A chained run's method preset is `<method>_incremental` when that preset exists (the
    paper's incremental FT has its own recipe), so a chained run with the first-stage recipe is
    named as a deviation from it.
    """
    kept = []
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key in _GROUPS or key == "base_run":
            kept.append(override)
    if cfg.get("base_run") is not None:
        incremental = f"{cfg.method.name}{INCREMENTAL_SUFFIX}"
        if (CONF_DIR / "method" / f"{incremental}.yaml").is_file():
            kept = [o for o in kept if o.partition("=")[0].lstrip("+~") != "method"]
            kept.append(f"method={incremental}")
    return kept


def name_run(cfg: DictConfig, overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """Fill in `run_name` (when null) from the presets the overrides choose.

    Needs an initialised Hydra (inside an app, or within `initialize_config_dir`).
    """
    if cfg.get("run_name") is not None:
        return cfg
    reference = identity(
        hydra_compose(config_name=config_name, overrides=preset_overrides(cfg, overrides))
    )
    cfg.run_name = run_name(cfg, reference)
    return cfg


# ---- output directories -----------------------------------------------------------------------


def differing_keys(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ between two identities (either side may lack a key)."""
    return sorted(
        k for k in recorded.keys() | requested.keys() if recorded.get(k) != requested.get(k)
    )


def recorded_identity(output_dir: Path) -> dict[str, Any] | None:
    """The identity a directory is trained with (None: it has no record)."""
    record = output_dir / contract.IDENTITY_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def check_output_dir(
    output_dir: Path, requested: Mapping[str, Any], ignore: Sequence[str] = ()
) -> None:
    """Refuse an output directory that holds a run of another config (finished or not), keys
    in `ignore` aside.

    A directory without an identity record but with training in it (a checkpoint, a finished
    model) predates the record and cannot be trusted either.
    """
    recorded = recorded_identity(output_dir)
    if recorded is not None:
        changed = [k for k in differing_keys(recorded, requested) if k not in ignore]
        if not changed:
            return
        shown = ", ".join(f"{k}: {recorded.get(k)!r} -> {requested.get(k)!r}" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(
            f"{output_dir} holds a run trained with another config ({shown}{more}). Keep both: "
            f"set training.output_dir=<another directory> (or run_name=<a name of its own>); "
            f"or retrain this directory from scratch with training.resume=false"
        )
    trained = (output_dir / contract.COMPLETE_MARKER).is_file() or any(
        output_dir.glob("checkpoint-*")
    )
    if trained:
        raise ConfigError(
            f"{output_dir} holds training without a record of its config "
            f"({contract.IDENTITY_FILE}), so it cannot be resumed safely; set "
            f"training.output_dir=<another directory>, or training.resume=false to retrain it"
        )


def record_identity(output_dir: Path, values: Mapping[str, Any]) -> None:
    """Write the identity a directory is trained with (before any training in it), atomically:
    the other ranks of a run may be reading it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(values), indent=2, sort_keys=True, default=str, ensure_ascii=False)
    staged = output_dir / f".{contract.IDENTITY_FILE}.{os.getpid()}.tmp"
    staged.write_text(text + "\n")
    staged.replace(output_dir / contract.IDENTITY_FILE)


def model_run_name(run_name: str, model: str, role: str) -> str:
    """The name of a run about the base model itself (`contract.format_model_run_name`): the
    model's axes of a config's run name (`model.*` keys differing from the presets, or the
    `config=<hash>` that stands for long suffixes), e.g. `tiny (base)[model.pretrain.epochs=2]`."""
    parts = contract.parse_run_name(run_name) or {}
    axes = [
        axis
        for axis in (parts.get("axes") or "").split(",")
        if axis.startswith(("model.", "config="))
    ]
    return contract.format_model_run_name(model, role, ",".join(axes) or None)
