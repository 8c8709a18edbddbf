"""The anatomy's cost in a plan line: how many matrices `anatomy` measures for a grid point and
how long their decompositions take, from the model's matrix shapes and a measured SVD time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lorabench.anatomy.weights import measured_modules
from lorabench.config.schema import Config
from lorabench.console import format_seconds

REFERENCE_SIZE = 4096
"""`plan.anatomy_svd_seconds` is the time of one SVD of a square matrix of this size."""
DECOMPOSITIONS = 3
"""Per matrix: ΔW's singular values, the tuned and the starting weight's full SVDs."""

Shapes = Mapping[str, tuple[tuple[int, int], ...]]
"""A module name (`q_proj`) → the shapes of its weights, one per layer."""


def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[tuple[int, int], ...]]:
    """The shapes of a model's 2-D weights by module name (a meta model will do; a PEFT-wrapped
    one's adapted layers by their own name, their adapters left out)."""
    shapes: dict[str, list[tuple[int, int]]] = {}
    for name, weight in model.named_parameters():
        if weight.ndim != 2 or not name.endswith(".weight") or ".lora_" in name:
            continue
        module = name.removesuffix(".weight").removesuffix(".base_layer").rpartition(".")[2]
        shapes.setdefault(module, []).append(tuple(weight.shape))
    return {name: tuple(found) for name, found in shapes.items()}


@dataclass(frozen=True)
class AnatomyEstimate:
    """A grid point's anatomy: its matrices, where they are decomposed, and for how long."""

    matrices: int
    device: str
    """`cpu` or `gpu`: where the decompositions run (`anatomy.device`)."""
    seconds: float | None
    """None when `plan.anatomy_svd_seconds` has no time for the device."""

    def describe(self) -> str:
        """The plan line's part: `anatomy 192 matrices ≈ 4.41 h on cpu`."""
        head = f"anatomy {self.matrices} matrices"
        if self.seconds is None:
            return (
                f"{head} on {self.device}, time not estimated (plan.anatomy_svd_seconds."
                f"{self.device} unset: bench/anatomy_svd.py measures it)"
            )
        if self.seconds < 1:
            took = "< 1s"
        elif self.seconds < 90 * 60:
            took = format_seconds(self.seconds)
        else:
            took = f"{self.seconds / 3600:.3g} h"
        return f"{head} ≈ {took} on {self.device}"


def estimate_anatomy(cfg: Config, shapes: Shapes, model_type: str | None) -> AnatomyEstimate:
    """The anatomy's matrices for `cfg`'s model and the time of their decompositions: each
    m×n matrix costs `DECOMPOSITIONS` SVDs at m·n·min(m, n) / 4096³ of the reference one."""
    # `auto` runs on the GPU the point has (the sweep's process holds it), as the stage does.
    setting = cfg.anatomy.device
    on_gpu = setting.startswith("cuda") or (setting == "auto" and cfg.hardware.gpu is not None)
    device = "gpu" if on_gpu else "cpu"
    modules = measured_modules(cfg.anatomy, model_type)
    found = [shape for module in modules for shape in shapes.get(module, ())]
    work = sum(m * n * min(m, n) for m, n in found) / REFERENCE_SIZE**3 * DECOMPOSITIONS
    per_svd = cfg.plan.anatomy_svd_seconds.get(device)
    return AnatomyEstimate(len(found), device, None if per_svd is None else work * per_svd)
