"""Memory per GPU of one grid point, and the setting that would make a point that does not fit
fit.

Model states (weights, gradients, optimizer states) are counted per parameter and placed by
ZeRO stage and offload with DeepSpeed's own accounting: for full fine-tuning the totals equal
DeepSpeed's `estimate_zero2_model_states_mem_needs` / `estimate_zero3_model_states_mem_needs`
(the tests check it). Beyond what those estimators cover, frozen parameters (LoRA's base) hold
16-bit weights only, and training without DeepSpeed (plain AMP) keeps fp32 trainable weights,
their gradients and Adam's two moments on every GPU. QLoRA's base holds its linear layers'
weights in 4 bits with their quantisation constants (`QuantisedBase`); the rest of it
(embeddings, the LM head, norms, biases) stays floating point, in fp32 as peft's
`prepare_model_for_kbit_training` upcasts it, or in the training dtype under DeepSpeed, whose
engine casts every floating-point parameter to it.

Activations are measured, not modelled: one forward pass of the run's own model (its method
applied, cast to the training dtype) on the meta device records the bytes autograd keeps for the
backward pass, inside each checkpointable layer and outside them, for one sample of the max
length; a micro batch keeps that many times as much. Attention is measured as CUDA's sdpa runs
it (flash / memory-efficient kernels keep q, k, v, the output and a log-sum-exp), not as the
meta device's reference path, which materialises the score matrix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.modeling_layers import GradientCheckpointingLayer

from lorabench.config.schema import CONF_DIR, Config
from lorabench.errors import LorabenchError, ModelLoadError
from lorabench.identity import digest
from lorabench.methods import method_for
from lorabench.modeling.base import DTYPES, ParameterCounts, count_parameters
from lorabench.planning.anatomy import linear_shapes

GIB = 2**30
FP32_BYTES = 4
HALF_BYTES = 2
QUANTISED_BYTES = 0.5
"""A 4-bit frozen weight (QLoRA's NF4 / FP4), without its quantisation constants."""
QUANT_BLOCK = 64
"""Weights per bitsandbytes 4-bit block, each with an absmax constant of its own."""
NESTED_BLOCK = 256
"""Absmax constants per block of double quantisation, each block with an fp32 absmax."""
ADAM_BYTES = 8
"""Adam's two moments, in fp32, per trainable parameter."""
GATHERED_LAYER_BYTES = 4
"""ZeRO-3's working set per parameter of the largest layer (DeepSpeed's estimator counts it)."""
META_ATTENTION = "lorabench_meta_flash"
"""The attention implementation the meta measurement runs (registered with transformers)."""


class PlanError(LorabenchError):
    """A grid point cannot be planned (the message says why and what to set)."""


# ---- model states -------------------------------------------------------------------------


@dataclass(frozen=True)
class ZeroSettings:
    """What a DeepSpeed config decides about memory; `deepspeed=False`: plain AMP (and DDP)."""

    deepspeed: bool
    stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False

    @classmethod
    def of(cls, path: Path | None) -> ZeroSettings:
        """The settings of a DeepSpeed JSON file (None: no DeepSpeed)."""
        if path is None:
            return cls(deepspeed=False)
        zero = json.loads(path.read_text()).get("zero_optimization", {})

        def offloaded(key: str) -> bool:
            return zero.get(key, {}).get("device", "none") not in ("none", None)

        return cls(
            deepspeed=True,
            stage=int(zero.get("stage", 0)),
            offload_optimizer=offloaded("offload_optimizer"),
            offload_param=offloaded("offload_param"),
        )

    @property
    def offloads(self) -> int:
        """How many kinds of state this moves to the CPU (each costs step time)."""
        return int(self.offload_optimizer) + int(self.offload_param)


@dataclass(frozen=True)
class QuantisedBase:
    """The frozen weights bitsandbytes holds in 4 bits (QLoRA), and how."""

    params: int
    """Every linear layer's weight but the LM head's (`quantised_parameters`)."""
    double_quant: bool

    def bytes(self) -> float:
        """Half a byte a weight, plus an absmax per block of 64: in fp32, or with double
        quantisation in 8 bits, with an fp32 absmax per 256 of those. Counted on the total, as
        if one tensor: each tensor's last blocks round up, which no 7B-13B shape needs; the
        per-tensor constants (code tables, double quantisation's offset) are left out."""
        blocks = self.params / QUANT_BLOCK
        absmax = 1 + FP32_BYTES / NESTED_BLOCK if self.double_quant else FP32_BYTES
        return self.params * QUANTISED_BYTES + blocks * absmax


def quantised_parameters(model: torch.nn.Module) -> int:
    """The weights a 4-bit load quantises: every frozen linear layer's but the output
    embedding's (transformers' bitsandbytes quantiser skips `lm_head`; embeddings and norms are
    no linear layers, and LoRA's matrices are trainable)."""
    head = model.get_output_embeddings()
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m is not head and not m.weight.requires_grad
    )


@dataclass(frozen=True)
class ModelStates:
    """Bytes per GPU of the parameters' own state."""

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def model_states(
    counts: ParameterCounts,
    largest_layer_params: int,
    precision: str,
    zero: ZeroSettings,
    world_size: int,
    quantised: QuantisedBase | None = None,
) -> ModelStates:
    """Weights, gradients and optimizer states on one GPU.

    Under DeepSpeed every parameter is held in the training dtype and each trainable one adds,
    in mixed precision, a 16-bit gradient, an fp32 gradient, an fp32 master copy and Adam's
    moments; ZeRO-1 partitions the optimizer states (with the fp32 gradients), ZeRO-2 the
    gradients too, ZeRO-3 the weights too (plus its gathered largest layer), and offload moves
    the optimizer side or the weights to the CPU. Without DeepSpeed, AMP trains fp32 weights.
    `quantised`: the frozen base is held partly in 4 bits (QLoRA).
    """
    trainable = counts.trainable
    half = precision != "fp32"
    held = HALF_BYTES if half else FP32_BYTES  # a frozen base loads in the training dtype
    frozen = _frozen_bytes(counts.total - trainable, held, zero, quantised)
    if not zero.deepspeed:
        return ModelStates(
            weights=trainable * FP32_BYTES + frozen,
            gradients=trainable * FP32_BYTES,
            optimizer=trainable * ADAM_BYTES,
        )
    n, stage = world_size, zero.stage
    fp32_grad = FP32_BYTES if half else 0  # the optimizer's copy of a 16-bit gradient
    master = FP32_BYTES if half else 0
    weights = trainable * held + frozen
    if stage >= 3:
        weights = 0 if zero.offload_param else weights / n
        weights += GATHERED_LAYER_BYTES * largest_layer_params
    if stage >= 3:
        # DeepSpeed's stage-3 accounting: the fp32 gradient partition only.
        gradients = trainable * FP32_BYTES / n
    elif stage == 2:
        gradients = trainable * (held + fp32_grad) / n
    elif stage == 1:
        gradients = trainable * (held + fp32_grad / n)
    else:
        gradients = trainable * (held + fp32_grad)
    optimizer = trainable * (master + ADAM_BYTES) / (n if stage >= 1 else 1)
    if zero.offload_optimizer:
        optimizer = 0
        # The partitioned gradients go to the CPU with the optimizer; ZeRO-1's full 16-bit
        # gradients stay.
        gradients = trainable * held if stage == 1 else 0
    return ModelStates(weights, gradients, optimizer)


def _frozen_bytes(
    frozen: int, held: int, zero: ZeroSettings, quantised: QuantisedBase | None
) -> float:
    """Bytes of the frozen parameters (before any partitioning)."""
    if quantised is None:
        return frozen * held
    # The rest of a 4-bit base: fp32 (prepare_model_for_kbit_training upcasts 16-bit
    # parameters), which DeepSpeed's engine casts back to the training dtype.
    rest = held if zero.deepspeed else FP32_BYTES
    return quantised.bytes() + (frozen - quantised.params) * rest


def largest_layer_params(model: torch.nn.Module) -> int:
    """The most parameters one module holds itself (DeepSpeed's "largest layer" in
    `deepspeed.runtime.zero.stage3.model_to_params`, which needs real tensors to count totals)."""
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())


# ---- activations ----------------------------------------------------------------------------


class _FlashLikeAttention(torch.autograd.Function):
    """Keeps for backward what flash / memory-efficient attention kernels keep."""

    @staticmethod
    def forward(ctx, query, key, value):
        output = torch.empty_like(query)
        logsumexp = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, output, logsumexp)
        return output

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("the measurement pass is never backpropagated")


def _flash_like_attention(module, query, key, value, attention_mask, **kwargs):
    # transformers' attention functions return (batch, seq, heads, head_dim) and no weights.
    return _FlashLikeAttention.apply(query, key, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(META_ATTENTION, _flash_like_attention)


@dataclass(frozen=True)
class ActivationProfile:
    """Bytes a forward pass keeps for backward, for one sample of the max length."""

    outside_layers: int
    """Embeddings, the final norm, the LM head and the loss."""
    layers: int
    """Every checkpointable layer (decoder layer) together."""
    largest_layer: int
    """The most one layer keeps: what one layer recomputed under checkpointing holds."""
    layer_inputs: int
    """Every layer's inputs: what checkpointing keeps instead of `layers`."""
    largest_tensor: int

    def peak(self, micro_batch: int, checkpointing: bool) -> float:
        """Bytes at the backward pass's peak for a micro batch."""
        kept = self.outside_layers + (
            self.layer_inputs + self.largest_layer if checkpointing else self.layers
        )
        # Backward through the largest kept tensor holds its gradient and its input's at once.
        return micro_batch * (kept + 2 * self.largest_tensor)


def _tensors(values: list | tuple) -> Iterator[torch.Tensor]:
    """The tensors among a call's arguments, inside tuples and lists too (rotary cos/sin)."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, list | tuple):
            yield from _tensors(value)


class _SavedTensors:
    """Counts the distinct storages autograd saves during a forward pass, by layer."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.parameters = {p.untyped_storage()._cdata for p in model.parameters()}
        # Tensors are kept referenced: a freed meta storage's address may be reused.
        self.saved: dict[int, tuple[torch.Tensor, int | None]] = {}
        self.inputs: dict[int, torch.Tensor] = {}
        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.current: int | None = None

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        """saved_tensors_hooks' pack hook: record, and keep the tensor as it is."""
        key = tensor.untyped_storage()._cdata
        if key not in self.parameters and key not in self.saved:
            self.saved[key] = (tensor, self.current)
        return tensor

    def enter(self, module, args, kwargs) -> None:
        """Forward pre-hook of a layer: what it keeps from now on is its own."""
        self.current = id(module)
        for value in _tensors([*args, *kwargs.values()]):
            if value.is_floating_point():
                self.inputs.setdefault(value.untyped_storage()._cdata, value)

    def leave(self, module, args, kwargs, output) -> None:
        """Forward hook of a layer."""
        self.current = None

    def hooks(self) -> Iterator[torch.utils.hooks.RemovableHandle]:
        """Register the layer hooks (remove the handles afterwards)."""
        for layer in self.layers:
            yield layer.register_forward_pre_hook(self.enter, with_kwargs=True)
            yield layer.register_forward_hook(self.leave, with_kwargs=True)

    def profile(self) -> ActivationProfile:
        """What was recorded, summed by where it was kept."""
        per_layer = {id(layer): 0 for layer in self.layers}
        outside = 0
        for tensor, layer in self.saved.values():
            size = tensor.untyped_storage().nbytes()
            if layer is None:
                outside += size
            else:
                per_layer[layer] += size
        return ActivationProfile(
            outside_layers=outside,
            layers=sum(per_layer.values()),
            largest_layer=max(per_layer.values(), default=0),
            layer_inputs=sum(t.untyped_storage().nbytes() for t in self.inputs.values()),
            largest_tensor=max((t.untyped_storage().nbytes() for t, _ in self.saved.values())),
        )


def measure_activations(model: torch.nn.Module, length: int) -> ActivationProfile:
    """Run one sample of `length` tokens through a meta-device model (in training mode, its
    attention replaced by the flash-like measurement) and profile what autograd keeps."""
    # Set on this private meta model only; `set_attn_implementation` accepts only hub kernels
    # for names it does not know.
    model.config._attn_implementation = META_ATTENTION
    model.train()
    saved = _SavedTensors(model)
    handles = list(saved.hooks())
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
            model(input_ids=ids, labels=ids)
    finally:
        for handle in handles:
            handle.remove()
    return saved.profile()


@dataclass(frozen=True)
class ModelProfile:
    """What memory depends on that the model decides: parameters and activations."""

    counts: ParameterCounts
    largest_layer_params: int
    activations: ActivationProfile
    quantisable: int
    """The weights a 4-bit load would quantise (`quantised_parameters`)."""
    model_type: str
    linear_shapes: dict[str, tuple[tuple[int, int], ...]]
    """The linear layers' weight shapes by module name (`planning.anatomy.linear_shapes`)."""


_profiles: dict[str, ModelProfile] = {}


def profile_model(cfg: Config) -> ModelProfile:
    """The profile of the run's model (the dry run's meta model), measured once per model,
    method, precision and max length in a process; nothing is downloaded.

    Raises PlanError when the architecture cannot be read on this machine.
    """
    from lorabench.training import meta_model

    lora = cfg.method.lora
    key = digest([asdict(cfg.model), lora and asdict(lora), cfg.precision, cfg.method.max_length])
    if key in _profiles:
        return _profiles[key]
    try:
        model = meta_model(cfg, offline=True)
    except ModelLoadError as err:
        raise PlanError(
            f"the architecture of model.pretrained={cfg.model.pretrained!r} cannot be read on "
            "this machine without a download; give it as model.architecture (its config.json "
            "fields) or point model.pretrained at a local directory"
        ) from err
    counts = count_parameters(model, method_for(cfg.method))
    largest = largest_layer_params(model)
    quantisable = quantised_parameters(model)
    # DeepSpeed (and AMP's autocast) run every module, adapters included, in the training dtype.
    model.to(DTYPES[cfg.precision])
    activations = measure_activations(model, cfg.method.max_length)
    shapes = linear_shapes(model)
    profile = ModelProfile(
        counts, largest, activations, quantisable, model.config.model_type, shapes
    )
    _profiles[key] = profile
    return profile


# ---- the estimate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """The knobs that trade memory for time, as a grid point has them or a fix would set them."""

    checkpointing: bool
    micro_batch: int
    deepspeed: str | None
    """`hardware.deepspeed`: a preset name or JSON path, or None."""
    zero: ZeroSettings

    @classmethod
    def of(cls, cfg: Config) -> Setting:
        """The grid point's own setting."""
        hw = cfg.hardware
        zero = ZeroSettings.of(cfg.deepspeed_config_path())
        return cls(hw.activation_checkpointing, hw.micro_batch_size, hw.deepspeed, zero)

    def overrides(self, base: Setting) -> list[str]:
        """The command-line overrides that turn `base` into this setting."""
        changed = []
        if self.checkpointing != base.checkpointing:
            changed.append(f"hardware.activation_checkpointing={str(self.checkpointing).lower()}")
        if self.micro_batch != base.micro_batch:
            changed.append(f"hardware.micro_batch_size={self.micro_batch}")
        if self.deepspeed != base.deepspeed:
            changed.append(f"hardware.deepspeed={self.deepspeed}")
        return changed


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of one grid point under one setting."""

    states: ModelStates
    activations: float
    overhead: float
    """Fragmentation on top of the tensors, plus what lives outside torch's allocator."""
    available: float | None
    """The GPU's memory; None without a GPU type (CPU hardware)."""

    @property
    def total(self) -> float:
        return self.states.total + self.activations + self.overhead

    @property
    def fits(self) -> bool | None:
        """Whether it fits the GPU (None without one)."""
        return None if self.available is None else self.total <= self.available


def estimate_memory(
    cfg: Config, profile: ModelProfile, setting: Setting, available: float | None
) -> MemoryEstimate:
    """Memory per GPU of `cfg` under `setting` (its own, or a candidate fix)."""
    q = cfg.method.quantization
    states = model_states(
        profile.counts,
        profile.largest_layer_params,
        cfg.precision,
        setting.zero,
        cfg.hardware.world_size,
        quantised=None if q is None else QuantisedBase(profile.quantisable, q.double_quant),
    )
    activations = profile.activations.peak(setting.micro_batch, setting.checkpointing)
    tensors = states.total + activations
    overhead = tensors * cfg.plan.fragmentation
    if cfg.hardware.device == "cuda":
        overhead += cfg.plan.memory_overhead_gib * GIB  # the CUDA context and its libraries
    return MemoryEstimate(states, activations, overhead, available)


@dataclass(frozen=True)
class Fix:
    """A setting that makes a grid point fit, and its memory then."""

    overrides: list[str]
    memory: MemoryEstimate


def deepspeed_presets() -> list[tuple[str, ZeroSettings]]:
    """The DeepSpeed presets under conf/deepspeed/ and their settings."""
    return [(p.stem, ZeroSettings.of(p)) for p in sorted((CONF_DIR / "deepspeed").glob("*.json"))]


def _candidates(cfg: Config, base: Setting) -> list[Setting]:
    """Every setting reachable from `base` by turning on checkpointing, a smaller micro batch
    that keeps the global batch divisible, or another DeepSpeed preset."""
    per_step = cfg.method.global_batch_size // cfg.hardware.world_size
    micro_batches = [m for m in range(base.micro_batch, 0, -1) if per_step % m == 0]
    zeros = [(base.deepspeed, base.zero)]
    zeros += [(name, zero) for name, zero in deepspeed_presets() if zero != base.zero]
    return [
        replace(base, checkpointing=checkpointing, micro_batch=micro, deepspeed=name, zero=zero)
        for checkpointing in dict.fromkeys((base.checkpointing, True))
        for micro in micro_batches
        for name, zero in zeros
    ]


def _cost(candidate: Setting, base: Setting) -> tuple:
    # Fewest changes first; then what costs least step time: checkpointing (a third more
    # compute), then a smaller micro batch (the largest that fits), then ZeRO-3 (more
    # communication), then offload (the optimizer or weights over PCIe).
    return (
        len(candidate.overrides(base)),
        candidate.zero.offloads,
        candidate.zero.stage > base.zero.stage,
        -candidate.micro_batch,
    )


def find_fix(cfg: Config, profile: ModelProfile, available: float) -> Fix | None:
    """The cheapest setting that makes `cfg` fit `available` bytes, or None."""
    base = Setting.of(cfg)
    for candidate in sorted(_candidates(cfg, base), key=lambda c: _cost(c, base)):
        if candidate == base:
            continue
        memory = estimate_memory(cfg, profile, candidate, available)
        if memory.fits:
            return Fix(candidate.overrides(base), memory)
    return None
