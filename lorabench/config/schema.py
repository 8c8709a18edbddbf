"""Typed configuration schema.

Hydra composes YAML from `conf/` on top of these dataclasses, so a misspelt key or a value of the
wrong type fails at composition, naming the key. Value checks (ranges, divisibility, files that
must exist) run in `Config.__post_init__`, i.e. when `validate()` turns the composed DictConfig into
these objects, before any model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from lorabench.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
DEVICES = ("cpu", "cuda")
LAUNCHERS = ("python", "torchrun", "deepspeed")
TOKENIZER_KINDS = ("pretrained", "tiny")
DATA_FORMATS = ("instruction", "conversations")
DATA_DOMAINS = ("general", "math")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
"""The repository's Hydra config directory (DeepSpeed JSON files live under it)."""


@dataclass
class TokenizerConfig:
    """Where the tokenizer comes from."""

    kind: str = "pretrained"
    """`pretrained`: AutoTokenizer; `tiny`: the project BPE built from its demo corpus."""
    name_or_path: str | None = None
    """Hub id or local path; None means the model's `pretrained`."""
    vocab_size: int = 2048
    """Vocabulary size of the `tiny` tokenizer (ignored for `pretrained`)."""


@dataclass
class ModelConfig:
    """The base model."""

    name: str = MISSING
    """Short name used in run names, e.g. `llama-7b`."""
    pretrained: str | None = None
    """Hub id or local directory of the weights; None builds a randomly initialised model from
    `architecture` (the tiny demo model)."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """LlamaConfig fields. Used to build from config, and for dry runs, so that counting the
    parameters of LLaMA-7B needs no download. Empty: read the config from `pretrained`."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


@dataclass
class LoraConfig:
    """LoRA adapter settings (peft.LoraConfig)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)
    bias: str = "none"


@dataclass
class MethodConfig:
    """The tuning method and its optimisation hyper-parameters (the paper's Tables 2 and 3)."""

    name: str = MISSING
    """`lora` or `ft`; used in run names."""
    lora: LoraConfig | None = None
    """LoRA settings; None means full-parameter fine-tuning."""
    epochs: float = MISSING
    global_batch_size: int = MISSING
    """Sequences per optimiser step over all processes; gradient accumulation is derived."""
    learning_rate: float = MISSING
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 1024
    precision: str = "bf16"


@dataclass
class DataSourceConfig:
    """One training data source: a Hub dataset or a local JSON / JSON Lines file."""

    hub: str | None = None
    path: str | None = None
    split: str = "train"
    format: str = "instruction"
    """`instruction` (instruction/input/output) or `conversations` (multi-turn)."""


@dataclass
class DataConfig:
    """A training data scale of the study."""

    name: str = MISSING
    """Used in run names: `0.6m`, `2m`, `4m`, `math_0.25m`."""
    num_samples: int = MISSING
    """Exact number of samples drawn (seeded) from the sources."""
    sources: list[DataSourceConfig] = field(default_factory=list)
    domain: str = "general"
    demo_fraction: float | None = None
    """When set (by `profile=demo`), train on the project's generated demo corpus with
    round(num_samples * demo_fraction) samples instead of the sources."""
    seed: int = 42


@dataclass
class HardwareConfig:
    """Where and how training runs."""

    name: str = MISSING
    device: str = "cpu"
    num_processes: int = 1
    """Processes (GPUs) per node."""
    num_nodes: int = 1
    micro_batch_size: int = 1
    """Sequences per process per forward pass."""
    launcher: str = "python"
    deepspeed: str | None = None
    """DeepSpeed config: a name under conf/deepspeed/ (`zero2`, `zero3`) or a JSON file path."""
    precision: str | None = None
    """Overrides the method's precision (CPUs cannot run fp16)."""
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_nodes


@dataclass
class TrackingConfig:
    """MLflow settings."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    """Artifact root for experiments this project creates (local stores only)."""
    experiment_name: str = "lorabench"
    enabled: bool = True


@dataclass
class TrainingConfig:
    """Run-time knobs that are not hyper-parameters of the study."""

    output_dir: str = MISSING
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 200
    save_total_limit: int = 2
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: train the method's epochs)."""
    resume: bool = True
    """Resume from the last checkpoint in `output_dir`, into the same MLflow run."""
    progress_bar: bool = True


@dataclass
class Config:
    """The root configuration that `conf/config.yaml` composes."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    method: MethodConfig = MISSING
    hardware: HardwareConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    profile: str = "paper"
    run_name: str = MISSING
    cache_dir: str = ".cache/lorabench"
    dry_run: bool = False
    """Build the model on the meta device, print parameter counts, and exit."""

    def __post_init__(self) -> None:
        _check_model(self.model)
        _check_method(self.method)
        _check_data(self.data)
        _check_hardware(self.hardware)
        self.deepspeed_config_path()  # existence check
        _check_training(self.training)
        self.gradient_accumulation_steps()  # divisibility check
        if self.hardware.device == "cpu" and self.precision == "fp16":
            raise ConfigError(
                "method.precision=fp16 cannot run on hardware.device=cpu; "
                "set hardware.precision=fp32 or bf16"
            )

    @property
    def precision(self) -> str:
        """Effective precision: the hardware's override, else the method's."""
        return self.hardware.precision or self.method.precision

    def gradient_accumulation_steps(self) -> int:
        """Derive accumulation from global batch = micro batch × world size × accumulation."""
        per_step = self.hardware.micro_batch_size * self.hardware.world_size
        if self.method.global_batch_size % per_step:
            raise ConfigError(
                f"method.global_batch_size={self.method.global_batch_size} is not divisible by "
                f"hardware.micro_batch_size × processes = {self.hardware.micro_batch_size} × "
                f"{self.hardware.world_size} = {per_step}"
            )
        return self.method.global_batch_size // per_step

    def deepspeed_config_path(self) -> Path | None:
        """The DeepSpeed JSON file named by `hardware.deepspeed`, or None."""
        name = self.hardware.deepspeed
        if name is None:
            return None
        candidate = Path(name)
        if candidate.suffix != ".json":
            candidate = CONF_DIR / "deepspeed" / f"{name}.json"
        if not candidate.is_file():
            raise ConfigError(f"hardware.deepspeed={name!r}: no such file {candidate}")
        return candidate


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r}: {why}")


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(key, value, f"must be one of {', '.join(allowed)}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        _fail(key, value, "must be > 0")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        _fail(key, value, "must be >= 0")


def _check_model(m: ModelConfig) -> None:
    _one_of("model.tokenizer.kind", m.tokenizer.kind, TOKENIZER_KINDS)
    if m.pretrained is None and not m.architecture:
        _fail("model.pretrained", None, "give a Hub id or local path, or model.architecture")
    if m.tokenizer.kind == "pretrained" and not (m.tokenizer.name_or_path or m.pretrained):
        _fail("model.tokenizer.name_or_path", None, "a pretrained tokenizer needs a Hub id or path")
    _positive("model.tokenizer.vocab_size", m.tokenizer.vocab_size)


def _check_method(m: MethodConfig) -> None:
    _positive("method.learning_rate", m.learning_rate)
    _positive("method.epochs", m.epochs)
    _positive("method.global_batch_size", m.global_batch_size)
    _positive("method.max_length", m.max_length)
    _non_negative("method.warmup_steps", m.warmup_steps)
    _non_negative("method.weight_decay", m.weight_decay)
    if not 0 <= m.warmup_ratio < 1:
        _fail("method.warmup_ratio", m.warmup_ratio, "must be in [0, 1)")
    if m.warmup_steps and m.warmup_ratio:
        _fail("method.warmup_ratio", m.warmup_ratio, "set warmup_steps or warmup_ratio, not both")
    _one_of("method.lr_scheduler", m.lr_scheduler, SCHEDULERS)
    _one_of("method.precision", m.precision, PRECISIONS)
    if m.lora is not None:
        _positive("method.lora.r", m.lora.r)
        _positive("method.lora.alpha", m.lora.alpha)
        if not 0 <= m.lora.dropout < 1:
            _fail("method.lora.dropout", m.lora.dropout, "must be in [0, 1)")
        if not m.lora.target_modules:
            _fail("method.lora.target_modules", [], "name at least one module")


def _check_data(d: DataConfig) -> None:
    _positive("data.num_samples", d.num_samples)
    _one_of("data.domain", d.domain, DATA_DOMAINS)
    if d.demo_fraction is not None and not 0 < d.demo_fraction <= 1:
        _fail("data.demo_fraction", d.demo_fraction, "must be in (0, 1]")
    if d.demo_fraction is None and not d.sources:
        _fail("data.sources", [], "name at least one source (or use profile=demo)")
    for i, s in enumerate(d.sources):
        key = f"data.sources[{i}]"
        if (s.hub is None) == (s.path is None):
            _fail(key, {"hub": s.hub, "path": s.path}, "set exactly one of hub and path")
        _one_of(f"{key}.format", s.format, DATA_FORMATS)


def _check_hardware(h: HardwareConfig) -> None:
    _one_of("hardware.device", h.device, DEVICES)
    _one_of("hardware.launcher", h.launcher, LAUNCHERS)
    _positive("hardware.num_processes", h.num_processes)
    _positive("hardware.num_nodes", h.num_nodes)
    _positive("hardware.micro_batch_size", h.micro_batch_size)
    _non_negative("hardware.dataloader_num_workers", h.dataloader_num_workers)
    if h.precision is not None:
        _one_of("hardware.precision", h.precision, PRECISIONS)


def _check_training(t: TrainingConfig) -> None:
    _positive("training.logging_steps", t.logging_steps)
    _positive("training.save_steps", t.save_steps)
    _positive("training.save_total_limit", t.save_total_limit)
    if t.max_steps == 0 or t.max_steps < -1:
        _fail("training.max_steps", t.max_steps, "must be -1 (use epochs) or > 0")
