"""Tokenizer and base model: built from an architecture, or loaded from pretrained weights."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lorabench.config.schema import ModelConfig
from lorabench.errors import ModelLoadError

if TYPE_CHECKING:
    from lorabench.methods import Method

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts as logged to MLflow (`model/*`)."""

    additional: int
    """Parameters the method adds to the base model (LoRA matrices; 0 for full fine-tuning)."""
    trainable: int
    total: int


def _load_hint(key: str, source: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load {key}={source!r}: {err}\n"
        f"If this machine is offline or the Hub id needs a licence, download the weights in "
        f"Hugging Face format once and point at the directory: {key}=/path/to/model "
        f"(it must contain config.json, the tokenizer files and the weights)."
    )


TOKENIZERS_DIR = "tokenizers"
"""Under `cache_dir`: the project's tiny tokenizers, built once."""


def build_tokenizer(
    model_cfg: ModelConfig, cache_dir: str | Path, *, offline: bool = False
) -> PreTrainedTokenizerBase:
    """Load the pretrained tokenizer, or build/load the project's tiny one.

    `offline`: only what this machine has already (no download, no building the tiny one);
    ModelLoadError when it is not there.
    """
    tok_cfg = model_cfg.tokenizer
    if tok_cfg.kind == "tiny":
        from lorabench.demo.tokenizer import load_or_build_tiny_tokenizer, tiny_tokenizer_dir

        directory = Path(cache_dir) / TOKENIZERS_DIR
        if offline and not tiny_tokenizer_dir(directory, tok_cfg.vocab_size).is_dir():
            raise ModelLoadError(f"the tiny tokenizer is not built yet under {directory}")
        return load_or_build_tiny_tokenizer(directory, tok_cfg.vocab_size)
    source = tok_cfg.name_or_path or model_cfg.pretrained
    key = "model.tokenizer.name_or_path" if tok_cfg.name_or_path else "model.pretrained"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError) as err:
        raise _load_hint(key, source, err) from err
    if tokenizer.pad_token is None:
        # LLaMA ships no pad token; padded positions are masked out of attention and loss.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def model_config(
    model_cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    offline: bool = False,
) -> PretrainedConfig:
    """The architecture: from `model.architecture` when given, else read from `pretrained`
    (`offline`: only from a local directory or the Hub cache, never downloaded)."""
    if model_cfg.architecture:
        fields = dict(model_cfg.architecture)
        model_type = fields.pop("model_type", "llama")
        if tokenizer is not None and model_cfg.pretrained is None:
            # A model built from scratch takes its vocabulary and special ids from its tokenizer.
            fields.update(
                vocab_size=len(tokenizer),
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        elif "vocab_size" not in fields:
            fields["vocab_size"] = model_cfg.tokenizer.vocab_size
        return AutoConfig.for_model(model_type, **fields)
    try:
        return AutoConfig.from_pretrained(model_cfg.pretrained, local_files_only=offline)
    except (OSError, ValueError) as err:
        raise _load_hint("model.pretrained", model_cfg.pretrained, err) from err


def build_model(
    model_cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    meta: bool = False,
    quantization: BitsAndBytesConfig | None = None,
    device_map: str | dict[str, int | str] | None = None,
    offline: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load pretrained weights, or initialise from the architecture (seeded, so every rank agrees).

    A config with `pretrain` and no `pretrained` is refused: its weights are a pretraining's
    (`lorabench.demo.pretraining.resolved_model` points `pretrained` at them).

    With `meta=True` no weights are allocated or downloaded: the model lives on the meta device,
    which is enough to count parameters (of the unquantised weights; `offline`: nor is its
    config, see `model_config`). `quantization` loads the weights quantised (QLoRA) onto
    `device_map`, where bitsandbytes places them itself. `attn_implementation` is
    `model.attn_implementation` for training (None: transformers' choice, sdpa where the
    architecture has it; the meta device takes none, so planning needs no flash-attn).
    """
    if meta:
        with torch.device("meta"):
            config = model_config(model_cfg, offline=offline)
            return AutoModelForCausalLM.from_config(config, dtype=dtype)
    loading = {
        "dtype": dtype,
        "quantization_config": quantization,
        "device_map": device_map,
        "attn_implementation": attn_implementation,
    }
    if model_cfg.pretrained is None:
        return _initialised(model_cfg, tokenizer, seed, loading)
    try:
        return AutoModelForCausalLM.from_pretrained(model_cfg.pretrained, **loading)
    except (OSError, ValueError) as err:
        raise _load_hint("model.pretrained", model_cfg.pretrained, err) from err


def _initialised(
    model_cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase | None,
    seed: int,
    loading: dict[str, Any],
) -> PreTrainedModel:
    """A model of the architecture initialised with `seed`, loaded as `loading` (from_pretrained's
    arguments) says."""
    if model_cfg.pretrain is not None:
        # Never random weights in place of a pretrained base: resolve it first.
        raise ValueError(
            f"model {model_cfg.name} is pretrained (model.pretrain): load it through "
            "lorabench.demo.pretraining.resolved_model, which points model.pretrained at it"
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        model_config(model_cfg, tokenizer),
        dtype=loading["dtype"],
        attn_implementation=loading["attn_implementation"],
    )
    if loading["quantization_config"] is None:
        return model
    # transformers quantises while loading weights only: round-trip the initialised model.
    with tempfile.TemporaryDirectory(prefix="lorabench-quantise-") as folder:
        model.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, **loading)


def count_parameters(model: torch.nn.Module, method: Method) -> ParameterCounts:
    """Count the method's additional, the trainable and all parameters (works on meta; a
    4-bit weight counts as the weight it stands for)."""
    additional = trainable = total = 0
    for name, param in model.named_parameters():
        # A 4-bit weight is stored packed (two values a byte); its quantisation state keeps
        # the weight's real shape.
        quant_state = getattr(param, "quant_state", None)
        n = quant_state.shape.numel() if quant_state is not None else param.numel()
        total += n
        if param.requires_grad:
            trainable += n
        if method.is_additional(name):
            additional += n
    return ParameterCounts(additional=additional, trainable=trainable, total=total)
