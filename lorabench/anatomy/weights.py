"""The two weights of each measured matrix: a saved model's safetensors read one tensor at a time
(memory-mapped), so measuring a model holds a few matrices, never the model.

The tuned weights are a run's saved full model, or its adapter merged into its base
(`lorabench.modeling.trained.base_model_dir`, made once and kept beside the adapter); the
starting weights are the base the run trained on as its resolved config records it: a local
directory (a demo base, a chained run's base run), a Hub id read from the local Hugging Face
cache, or a base built from its architecture (saved to a temporary directory first).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import PreTrainedModel

from lorabench.config.schema import AnatomyConfig
from lorabench.errors import ConfigError
from lorabench.methods import TARGET_PRESETS

LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")
"""A transformer block's index in a tensor name (`model.layers.3.self_attn.q_proj.weight`)."""


class WeightFiles:
    """A saved model's weights (`*.safetensors`, one file or shards), one tensor at a time."""

    def __init__(self, directory: Path, label: str) -> None:
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise ConfigError(
                f"{label}: no *.safetensors in {directory} (the anatomy reads safetensors only; "
                "load the model and save it again with save_pretrained)"
            )
        self.directory = directory
        self._file_of: dict[str, Path] = {}
        for path in files:
            with safe_open(path, framework="pt") as f:
                self._file_of.update(dict.fromkeys(f.keys(), path))

    def names(self) -> list[str]:
        """Every tensor's name, sorted."""
        return sorted(self._file_of)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, read from its file's header."""
        with safe_open(self._file_of[name], framework="pt") as f:
            return tuple(f.get_slice(name).get_shape())

    def load(self, name: str) -> torch.Tensor:
        """One tensor, as float32."""
        with safe_open(self._file_of[name], framework="pt") as f:
            return f.get_tensor(name).float()

    def model_type(self) -> str | None:
        """The architecture (`model_type`) its config.json names, if it has one."""
        config = self.directory / "config.json"
        return json.loads(config.read_text()).get("model_type") if config.is_file() else None


@dataclass(frozen=True)
class MatrixPair:
    """One measured matrix: its tensor name, block index and module type."""

    tensor: str
    layer: int | None
    module: str


def measured_modules(anatomy: AnatomyConfig, model_type: str | None) -> tuple[str, ...]:
    """The module names `anatomy.targets` (or `anatomy.modules`) selects for an architecture."""
    if anatomy.targets is None:
        return tuple(anatomy.modules)
    presets = TARGET_PRESETS.get(model_type or "")
    if presets is None:
        raise ConfigError(
            f"anatomy.targets={anatomy.targets}: no module presets for model_type {model_type!r} "
            f"(known: {', '.join(TARGET_PRESETS)}); name them: anatomy.targets=null "
            "anatomy.modules=[q_proj,v_proj,...]"
        )
    return presets[anatomy.targets]


def matrix_pairs(
    base: WeightFiles, tuned: WeightFiles, modules: Sequence[str]
) -> tuple[list[MatrixPair], list[str]]:
    """The tuned model's 2-D weights of `modules` that the base holds with the same shape, and
    the names of those whose shapes differ (or that the base lacks): skipped, not measured."""
    wanted = tuple(f".{m}.weight" for m in modules)
    base_names = set(base.names())
    pairs, skipped = [], []
    for name in tuned.names():
        if not name.endswith(wanted) or len(shape := tuned.shape(name)) != 2:
            continue
        if name not in base_names or base.shape(name) != shape:
            skipped.append(name)
            continue
        layer = LAYER_INDEX.search(name)
        module = name.removesuffix(".weight").rpartition(".")[2]
        pairs.append(MatrixPair(name, None if layer is None else int(layer[1]), module))
    return pairs, skipped


@contextlib.contextmanager
def starting_weights(
    base_dir: Path | None, build: Callable[[], PreTrainedModel], label: str
) -> Iterator[WeightFiles]:
    """The weights a run started from: `base_dir`'s, or (None) those of the model `build()`
    returns, saved to a temporary directory for the block."""
    if base_dir is not None:
        yield WeightFiles(base_dir, label)
        return
    with tempfile.TemporaryDirectory(prefix="lorabench-anatomy-base-") as folder:
        build().save_pretrained(folder)
        yield WeightFiles(Path(folder), label)


def hub_snapshot(repo_id: str, label: str) -> Path:
    """A Hub model's weights from the local Hugging Face cache (nothing is downloaded here)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=["*.safetensors", "*.json"], local_files_only=True
            )
        )
    except LocalEntryNotFoundError as err:
        raise ConfigError(
            f"{label}: its base {repo_id} is not in the Hugging Face cache; fetch it with "
            f"`hf download {repo_id} --include '*.safetensors' '*.json'` (or point HF_HOME at "
            "a cache holding it)"
        ) from err
