"""Preflight: a run that cannot start here fails once, naming the fix, before anything starts."""

from __future__ import annotations

import pytest
import torch

from lorabench.config import compose, validate
from lorabench.preflight import PreflightError, preflight


def test_missing_gpus_name_the_fix(monkeypatch: pytest.MonkeyPatch, isolated: list[str]) -> None:
    cfg = validate(compose(["model=tiny", "hardware=gpu8", *isolated]))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PreflightError, match="has 2: set hardware.num_processes=2"):
        preflight(cfg)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    preflight(cfg)  # the tiny model's tokenizer builds offline: nothing else to fix


def test_an_unloadable_model_names_the_fix(isolated: list[str]) -> None:
    cfg = validate(compose(["hardware=cpu", "model.pretrained=/nowhere/llama", *isolated]))
    with pytest.raises(PreflightError) as caught:
        preflight(cfg)
    message = str(caught.value)
    assert "model.pretrained='/nowhere/llama' cannot be loaded" in message
    assert "model.pretrained=/path/to/model" in message and "profile=demo" in message
    assert "CUDA" not in message  # hardware=cpu asks for no GPU


def test_a_chained_run_needs_its_base_run(demo_config) -> None:
    with pytest.raises(PreflightError, match="base_run"):
        preflight(demo_config("base_run=nowhere"))
