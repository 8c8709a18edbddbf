"""The tuning method's one home: everything that differs between LoRA and full fine-tuning.

Training, chaining, evaluation and planning ask the method object (`method_for(cfg.method)`, or
`method_of_dir(path)` for a saved result) instead of testing `cfg.method.lora` themselves: what
dtype the weights load in, how the model is wrapped, what is saved and logged, how a saved result
becomes a plain model again, and how many FLOPs a token costs. A new PEFT variant is a new class
here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, PreTrainedModel

from lorabench.config.schema import LoraConfig, MethodConfig

ADAPTER_CONFIG_FILE = "adapter_config.json"
"""What marks a directory as a PEFT adapter (rather than a full model)."""
FORWARD_FLOPS_PER_TOKEN_PER_PARAM = 2
"""One multiply-add per parameter and token: a forward pass, as activation checkpointing
recomputes it once more in the backward pass."""


class Method(ABC):
    """What a tuning method decides."""

    name: str
    saved_dir: str
    """The output directory's sub-directory holding the result."""
    logs_result_artifact: bool
    """Whether the saved result is small enough to log to MLflow as an artifact."""
    flops_per_token_per_param: int
    """Training FLOPs per token and base parameter (6 for full back-propagation)."""

    @abstractmethod
    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        """The dtype the base weights load in, for training at `precision`."""

    @abstractmethod
    def wrap(self, model: PreTrainedModel) -> PreTrainedModel | PeftModel:
        """The model to train (with only the method's parameters trainable)."""

    def prepare_for_checkpointing(self, model: PreTrainedModel) -> None:  # noqa: B027
        """Adjust the base before `wrap` when activation checkpointing is on (default: no
        change)."""

    @abstractmethod
    def load_trained(
        self, base: PreTrainedModel | None, saved: Path, dtype: torch.dtype
    ) -> PreTrainedModel:
        """The trained model as a plain model: `saved` merged into `base` if it needs one."""

    def is_additional(self, parameter_name: str) -> bool:
        """Whether a parameter is one the method adds to the base (counted as additional)."""
        return False

    def step_flops_per_token_per_param(self, checkpointing: bool) -> int:
        """FLOPs a training step executes per token and parameter: the method's, plus the
        forward pass that activation checkpointing recomputes."""
        return self.flops_per_token_per_param + (
            FORWARD_FLOPS_PER_TOKEN_PER_PARAM if checkpointing else 0
        )

    @property
    def needs_base(self) -> bool:
        """Whether a saved result is loaded on top of its base model."""
        return False


class FullFineTuning(Method):
    """Every parameter trained; the result is a complete model."""

    name = "ft"
    saved_dir = "model"
    logs_result_artifact = False  # gigabytes: the model_path tag points at it instead
    flops_per_token_per_param = 6

    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        # Plain AMP needs fp32 master weights; DeepSpeed keeps its own fp32 copy, so there the
        # half dtype saves host memory (8 ranks × 27 GB of fp32 LLaMA-7B fit few nodes).
        return precision if deepspeed else torch.float32

    def wrap(self, model: PreTrainedModel) -> PreTrainedModel:
        model.requires_grad_(True)
        return model

    def load_trained(
        self, base: PreTrainedModel | None, saved: Path, dtype: torch.dtype
    ) -> PreTrainedModel:
        return AutoModelForCausalLM.from_pretrained(saved, dtype=dtype)


class LoRA(Method):
    """Low-rank adapters through peft on a frozen base; the result is an adapter directory."""

    name = "lora"
    saved_dir = "adapter"
    logs_result_artifact = True
    # The frozen base needs no weight gradients: forward (2) + activation gradients (2).
    flops_per_token_per_param = 4

    def __init__(self, lora: LoraConfig) -> None:
        self.lora = lora

    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        return precision  # the frozen base may sit in half precision

    def prepare_for_checkpointing(self, model: PreTrainedModel) -> None:
        model.enable_input_require_grads()  # frozen embeddings would cut the graph

    def peft_config(self) -> PeftLoraConfig:
        """The peft configuration of the adapters."""
        return PeftLoraConfig(
            task_type="CAUSAL_LM",
            r=self.lora.r,
            lora_alpha=self.lora.alpha,
            lora_dropout=self.lora.dropout,
            target_modules=list(self.lora.target_modules),
            bias=self.lora.bias,
        )

    def wrap(self, model: PreTrainedModel) -> PeftModel:
        return get_peft_model(model, self.peft_config())

    @property
    def needs_base(self) -> bool:
        return True

    def is_additional(self, parameter_name: str) -> bool:
        return "lora_" in parameter_name

    def load_trained(
        self, base: PreTrainedModel | None, saved: Path, dtype: torch.dtype
    ) -> PreTrainedModel:
        if base is None:
            raise ValueError(f"the adapter {saved} needs its base model")
        return PeftModel.from_pretrained(base, str(saved)).merge_and_unload()


def method_for(method: MethodConfig) -> Method:
    """The method a config asks for."""
    return FullFineTuning() if method.lora is None else LoRA(method.lora)


def method_of_dir(saved: Path) -> Method:
    """The method that produced a saved result directory (an adapter, or a full model)."""
    if (saved / ADAPTER_CONFIG_FILE).is_file():
        return LoRA(LoraConfig())
    return FullFineTuning()
