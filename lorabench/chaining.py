"""Chained runs: training that starts from another run's result (the paper's incremental rows,
e.g. `llama-7b+ft(2m)+lora(math_0.25m)` starts from `llama-7b+ft(2m)`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from lorabench.config.schema import Config, ModelConfig
from lorabench.errors import ConfigError
from lorabench.tracking import client_for, find_run

MERGED_DIR = "merged"


def run_name(model: str, method: str, data: str, base_run: str | None) -> str:
    """The paper's run names: `llama-7b+lora(2m)`, `llama-7b+ft(2m)+lora(math_0.25m)`."""
    return f"{base_run or model}+{method}({data})"


def resolve_base_model(cfg: Config) -> tuple[str, Path]:
    """The base run's id and a full model directory to start from.

    A full fine-tuning result is used as it is; a LoRA adapter is merged into its own base once
    (kept beside the adapter), so the new run trains on a plain model.
    """
    client = client_for(cfg.tracking)
    run = find_run(client, cfg.tracking, cfg.base_run)
    info = client.get_run(run.run_id)
    if info.info.status != "FINISHED" or "model_path" not in info.data.tags:
        raise ConfigError(
            f"base_run={cfg.base_run!r} ({run.run_id}) has not finished training; train it first"
        )
    path = Path(info.data.tags["model_path"])
    if not path.is_dir():
        raise ConfigError(f"base_run={cfg.base_run!r}: its model {path} is not on this machine")
    if not (path / "adapter_config.json").is_file():
        return run.run_id, path
    merged = path.parent / MERGED_DIR
    if not merged.is_dir():
        trained = OmegaConf.load(client.download_artifacts(run.run_id, "config/resolved.yaml"))
        base_cfg = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(ModelConfig), trained.model)
        )
        _merge_adapter(base_cfg, int(trained.training.seed), path, merged, cfg.cache_dir)
    return run.run_id, merged


def _merge_adapter(
    base_cfg: ModelConfig, seed: int, adapter: Path, dest: Path, cache_dir: str
) -> None:
    from peft import PeftModel

    from lorabench.modeling import build_model, build_tokenizer

    tokenizer = build_tokenizer(base_cfg, cache_dir)
    base = build_model(base_cfg, tokenizer, seed=seed)
    model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".merging-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.replace(dest)
    except OSError:  # another process merged it first
        shutil.rmtree(staging, ignore_errors=True)
