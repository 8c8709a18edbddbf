"""The tuning method's one home: everything that differs between LoRA and full fine-tuning.

Training, chaining, evaluation and planning ask the method object (`method_for(cfg.method)`, or
`method_of_dir(path)` for a saved result) instead of testing `cfg.method.lora` themselves: what
dtype the weights load in (and whether in 4 bits), whether the method applies to the model, how
the model is wrapped, which optimiser trains it, what is saved and logged, how a saved result
becomes a plain model again, and how many FLOPs a token costs.

A QLoRA adapter is evaluated (and merged, for a chained run) on the base it was trained on: the
4-bit base, loaded and quantised as in training (`QUANTIZATION_FILE` records how), its weights
dequantised, then the adapter merged into them (`dequantised`). Merged this way the model's
logits equal those of the 4-bit base with the adapter unmerged, up to float rounding (the tests
measure it); merged into the full-precision base instead, it would be scored as another model.

LoRA's variants are options of `LoRA`, each passed to peft's own implementation: rank and alpha,
target-module presets resolved per architecture (`TARGET_PRESETS`), DoRA (`use_dora`), rsLoRA
(`use_rslora`), PiSSA (`init_lora_weights="pissa"`), LoRA+ (`create_loraplus_optimizer`) and
QLoRA (a 4-bit base through `BitsAndBytesConfig`). A new kind of PEFT method is a new class here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from peft.optimizers import create_loraplus_optimizer
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers.pytorch_utils import Conv1D

from lorabench.config.schema import LoraConfig, MethodConfig, QuantizationConfig
from lorabench.contract import METHOD_FT, METHOD_LORA
from lorabench.errors import ConfigError

ADAPTER_CONFIG_FILE = "adapter_config.json"
"""What marks a directory as a PEFT adapter (rather than a full model)."""
INITIAL_ADAPTER_DIR = "adapter_init"
"""Beside a PiSSA adapter: the adapter as initialised, from which the trained one is converted."""
QUANTIZATION_FILE = "quantization.json"
"""In a QLoRA adapter's directory: how its base was quantised in training (`quant_type`,
`double_quant`) and the dtype it was loaded in and computed at (`dtype`)."""

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
_LLAMA_LAYOUT = {
    # The paper's set (attention without its output projection, and the MLP) is the one that
    # gives its reported additional parameters (17.9M on LLaMA-7B, 28.0M on LLaMA-13B).
    "paper": ("q_proj", "k_proj", "v_proj", *_MLP),
    "attention": _ATTENTION,
    # Every linear layer of the transformer blocks: the output head is the vocabulary
    # projection, not a block's, as in peft's own "all-linear".
    "all_linear": (*_ATTENTION, *_MLP),
}
TARGET_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": _LLAMA_LAYOUT,
    "qwen2": _LLAMA_LAYOUT,  # Qwen2 names its projections as LLaMA does (q/k/v carry biases)
}
"""`method.lora.targets` per architecture (`model_type`): the module names each preset adapts."""

LORA_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Embedding,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MultiheadAttention,
    Conv1D,
)
"""The layer types peft's LoRA wraps (peft's `dispatch_default`)."""
DORA_LAYER_TYPES = tuple(t for t in LORA_LAYER_TYPES if t is not nn.MultiheadAttention)
"""The layer types peft's DoRA supports (its MultiheadAttention layer refuses DoRA)."""
FORWARD_FLOPS_PER_TOKEN_PER_PARAM = 2
"""One multiply-add per parameter and token: a forward pass, as activation checkpointing
recomputes it once more in the backward pass."""


class Method(ABC):
    """What a tuning method decides."""

    family: str
    """`contract.METHOD_FT`, or `contract.METHOD_LORA` for LoRA and every variant of it (the
    method presets `dora`, `qlora`, ...): what runs are tagged with, and whose planning
    assumptions a variant without its own takes."""
    saved_dir: str
    """The output directory's sub-directory holding the result."""
    logs_result_artifact: bool
    """Whether the saved result is small enough to log to MLflow as an artifact."""
    flops_per_token_per_param: int
    """Training FLOPs per token and base parameter (6 for full back-propagation)."""

    @abstractmethod
    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        """The dtype the base weights load in, for training at `precision`."""

    def quantization_config(self, precision: torch.dtype) -> BitsAndBytesConfig | None:
        """How the base weights are quantised on loading (default: they are not)."""
        return None

    @property
    def quantised(self) -> bool:
        """Whether the base is held in 4 bits (for a saved result: was, in training)."""
        return False

    def base_loading(self, dtype: torch.dtype) -> dict[str, Any]:
        """`build_model`'s arguments for the base a saved result loads on, to make a model in
        `dtype` (default: the base in `dtype`)."""
        return {"dtype": dtype}

    def check(self, model: PreTrainedModel) -> None:  # noqa: B027
        """Raise ConfigError if the method does not apply to `model` (a meta-device build of
        the base, so that nothing is loaded before the check); default: it always applies."""

    @abstractmethod
    def wrap(
        self, model: PreTrainedModel, *, initialise: bool = True
    ) -> PreTrainedModel | PeftModel:
        """The model to train (with only the method's parameters trainable).

        `initialise=False` skips expensive initialisations that leave the parameters' shapes
        unchanged (PiSSA's SVD): for counting parameters on the meta device.
        """

    def prepare_for_checkpointing(self, model: PreTrainedModel) -> None:  # noqa: B027
        """Adjust the base before `wrap` when activation checkpointing is on (default: no
        change)."""

    def optimizer(
        self, model: PreTrainedModel | PeftModel, args: TrainingArguments
    ) -> torch.optim.Optimizer | None:
        """The optimiser to train with; None: the Trainer's own (AdamW over the trainable
        parameters at `args.learning_rate`)."""
        return None

    def record_initial(self, model: PreTrainedModel | PeftModel, saved: Path) -> None:  # noqa: B027
        """Before training (main process): keep what `save` needs from the model as
        initialised (default: nothing)."""

    def save(self, trainer: Trainer, saved: Path) -> None:
        """Write the trained result to `saved` (every rank calls it: ZeRO-3 gathers)."""
        trainer.save_model(str(saved))

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

    family = METHOD_FT
    saved_dir = "model"
    logs_result_artifact = False  # gigabytes: the model_path tag points at it instead
    flops_per_token_per_param = 6

    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        # Plain AMP needs fp32 master weights; DeepSpeed keeps its own fp32 copy, so there the
        # half dtype saves host memory (8 ranks × 27 GB of fp32 LLaMA-7B fit few nodes).
        return precision if deepspeed else torch.float32

    def wrap(self, model: PreTrainedModel, *, initialise: bool = True) -> PreTrainedModel:
        model.requires_grad_(True)
        return model

    def load_trained(
        self, base: PreTrainedModel | None, saved: Path, dtype: torch.dtype
    ) -> PreTrainedModel:
        return AutoModelForCausalLM.from_pretrained(saved, dtype=dtype)


class LoRA(Method):
    """Low-rank adapters through peft on a frozen base (optionally 4-bit: QLoRA), with peft's
    variants; the result is an adapter directory that loads on the original base."""

    family = METHOD_LORA
    saved_dir = "adapter"
    logs_result_artifact = True
    # The frozen base needs no weight gradients: forward (2) + activation gradients (2).
    flops_per_token_per_param = 4

    def __init__(
        self,
        lora: LoraConfig,
        quantization: QuantizationConfig | None = None,
        trained_dtype: torch.dtype | None = None,
    ) -> None:
        self.lora = lora
        self.quantization = quantization
        self.trained_dtype = trained_dtype
        """A saved QLoRA adapter's: the dtype its base was loaded in and computed at."""

    def load_dtype(self, precision: torch.dtype, deepspeed: bool) -> torch.dtype:
        return precision  # the frozen base may sit in half precision

    def quantization_config(self, precision: torch.dtype) -> BitsAndBytesConfig | None:
        q = self.quantization
        if q is None:
            return None
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=precision,
        )

    @property
    def quantised(self) -> bool:
        return self.quantization is not None

    def base_loading(self, dtype: torch.dtype) -> dict[str, Any]:
        if self.quantization is None:
            return super().base_loading(dtype)
        # The same 4-bit weights as in training: loaded in the training dtype (the one they were
        # quantised from) and quantised alike, where bitsandbytes runs on this machine.
        trained = self.trained_dtype or dtype
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return {
            "dtype": trained,
            "quantization": self.quantization_config(trained),
            "device_map": {"": device},
        }

    @property
    def _pissa(self) -> bool:
        return self.lora.init.startswith("pissa")

    def target_modules(self, model: PreTrainedModel) -> tuple[str, ...]:
        """The module names to adapt: the `targets` preset for this architecture, or the
        explicit `target_modules`."""
        if self.lora.targets is None:
            return tuple(self.lora.target_modules)
        model_type = model.config.model_type
        presets = TARGET_PRESETS.get(model_type)
        if presets is None:
            raise ConfigError(
                f"method.lora.targets={self.lora.targets}: no target presets for model_type "
                f"{model_type!r} (known: {', '.join(TARGET_PRESETS)}); name the modules with "
                f"method.lora.targets=null method.lora.target_modules=[...] (its linear layers: "
                f"{', '.join(linear_layer_names(model))})"
            )
        return presets[self.lora.targets]

    def peft_config(
        self, target_modules: Sequence[str], *, initialise: bool = True
    ) -> PeftLoraConfig:
        """The peft configuration of the adapters on `target_modules`."""
        init = self.lora.init
        return PeftLoraConfig(
            task_type="CAUSAL_LM",
            r=self.lora.r,
            lora_alpha=self.lora.alpha,
            lora_dropout=self.lora.dropout,
            target_modules=list(target_modules),
            bias=self.lora.bias,
            use_dora=self.lora.use_dora,
            use_rslora=self.lora.use_rslora,
            # peft's True is its default initialisation (B zero, A Kaiming-uniform): cheap.
            init_lora_weights=True if init == "default" or not initialise else init,
        )

    def check(self, model: PreTrainedModel) -> None:
        if self.quantization is not None and find_spec("bitsandbytes") is None:
            raise ConfigError(
                "method.quantization: QLoRA loads the base through bitsandbytes, which is not "
                "installed: pip install 'lorabench[qlora]'"
            )
        targets = self.target_modules(model)
        modules = dict(model.named_modules())
        missing = []
        for target in targets:  # peft's own matching: a module's name or a dotted suffix
            single = self.peft_config([target], initialise=False)
            if not any(check_target_module_exists(single, name) for name in modules):
                missing.append(target)
        if missing:
            raise ConfigError(
                f"method.lora target modules {', '.join(missing)} are not in the "
                f"{model.config.model_type} model: its linear layers are "
                f"{', '.join(linear_layer_names(model))} (method.lora.targets="
                f"{'|'.join(_LLAMA_LAYOUT)} chooses among them per architecture)"
            )
        config = self.peft_config(targets, initialise=False)
        supported, variant, hint = (
            (DORA_LAYER_TYPES, "DoRA", ", or set method.lora.use_dora=false")
            if self.lora.use_dora
            else (LORA_LAYER_TYPES, "LoRA", "")
        )
        unsupported = {
            name: type(module).__name__
            for name, module in modules.items()
            if check_target_module_exists(config, name) and not isinstance(module, supported)
        }
        if unsupported:
            kinds = sorted(set(unsupported.values()))
            shown = ", ".join(list(unsupported)[:4]) + (", ..." if len(unsupported) > 4 else "")
            raise ConfigError(
                f"{variant} cannot adapt layers of type {', '.join(kinds)} ({shown}); it "
                f"supports {', '.join(t.__name__ for t in supported)}: choose other "
                f"method.lora.target_modules{hint}"
            )

    def prepare_for_checkpointing(self, model: PreTrainedModel) -> None:
        model.enable_input_require_grads()  # frozen embeddings would cut the graph

    def wrap(self, model: PreTrainedModel, *, initialise: bool = True) -> PeftModel:
        if getattr(model, "is_loaded_in_4bit", False):
            # QLoRA's recipe: freeze, and keep the unquantised parameters (norms, embeddings)
            # in fp32; activation checkpointing stays the Trainer's (TrainingArguments).
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        config = self.peft_config(self.target_modules(model), initialise=initialise)
        return get_peft_model(model, config)

    def optimizer(
        self, model: PreTrainedModel | PeftModel, args: TrainingArguments
    ) -> torch.optim.Optimizer | None:
        ratio = self.lora.loraplus_lr_ratio
        if ratio is None:
            return None
        # The Trainer's own optimiser class and settings (AdamW, betas, eps), with LoRA+'s
        # parameter groups: B (and DoRA's magnitudes) at `ratio` × the learning rate.
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        kwargs.pop("lr", None)
        return create_loraplus_optimizer(
            model,
            optimizer_cls,
            lr=args.learning_rate,
            loraplus_lr_ratio=ratio,
            loraplus_weight_decay=args.weight_decay,
            **kwargs,
        )

    def record_initial(self, model: PreTrainedModel | PeftModel, saved: Path) -> None:
        if self._pissa:
            # PiSSA moves the principal components out of the base weights; saving converts
            # the trained adapter against this snapshot into a plain LoRA adapter (rank 2r)
            # that loads on the original base.
            model.save_pretrained(str(saved.parent / INITIAL_ADAPTER_DIR))

    def save(self, trainer: Trainer, saved: Path) -> None:
        if not self._pissa:
            super().save(trainer, saved)
        elif trainer.args.should_save:
            trainer.model.save_pretrained(
                str(saved),
                path_initial_model_for_weight_conversion=str(saved.parent / INITIAL_ADAPTER_DIR),
            )
        if self.quantization is not None and trainer.args.should_save:
            quantised = trainer.model.get_base_model().config.quantization_config
            record = {
                "quant_type": self.quantization.quant_type,
                "double_quant": self.quantization.double_quant,
                # LoRA.load_dtype: the base loads in the dtype it computes at.
                "dtype": str(quantised.bnb_4bit_compute_dtype).removeprefix("torch."),
            }
            (saved / QUANTIZATION_FILE).write_text(json.dumps(record) + "\n")

    @property
    def needs_base(self) -> bool:
        return True

    def is_additional(self, parameter_name: str) -> bool:
        return "lora_" in parameter_name  # lora_A, lora_B and DoRA's lora_magnitude_vector

    def load_trained(
        self, base: PreTrainedModel | None, saved: Path, dtype: torch.dtype
    ) -> PreTrainedModel:
        if base is None:
            raise ValueError(f"the adapter {saved} needs its base model")
        if self.quantization is not None:  # `base` is the 4-bit one (`base_loading`)
            base = dequantised(base, dtype)
        return PeftModel.from_pretrained(base, str(saved)).merge_and_unload()


def dequantised(model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """A model loaded in 4 bits as a plain model in `dtype`: each 4-bit weight dequantised in
    the dtype it was quantised from (the values QLoRA's forward computes with), then every
    parameter cast to `dtype`."""
    model = model.dequantize()
    model.is_loaded_in_4bit = False  # transformers' dequantize leaves the flag set
    return model.to(dtype)


def linear_layer_names(model: nn.Module) -> list[str]:
    """The distinct names of the model's linear layers (`q_proj`, ..., `lm_head`), sorted."""
    return sorted(
        {name.rpartition(".")[2] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    )


def method_for(method: MethodConfig) -> Method:
    """The method a config asks for."""
    if method.lora is None:
        return FullFineTuning()
    return LoRA(method.lora, method.quantization)


def method_of_dir(saved: Path) -> Method:
    """The method that produced a saved result directory (an adapter, or a full model)."""
    if not (saved / ADAPTER_CONFIG_FILE).is_file():
        return FullFineTuning()
    record_file = saved / QUANTIZATION_FILE
    if not record_file.is_file():
        return LoRA(LoraConfig())
    record = json.loads(record_file.read_text())
    quantization = QuantizationConfig(record["quant_type"], record["double_quant"])
    return LoRA(LoraConfig(), quantization, getattr(torch, record["dtype"]))
