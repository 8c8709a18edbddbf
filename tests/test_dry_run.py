"""`dry_run=true`: parameter counts of the real presets on the meta device, with no download."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorabench.config import compose, validate
from lorabench.training import dry_run
from tests.helpers.cli import parse_counts, run_cli


@pytest.mark.parametrize(
    ("model", "paper_millions"),
    [("llama-7b", 17.9), ("llama-13b", 28.0)],
)
def test_lora_preset_gives_the_papers_additional_parameters(
    tmp_path: Path, model: str, paper_millions: float
) -> None:
    # Offline (HF_HUB_OFFLINE=1 in run_cli): the architecture comes from the preset alone.
    result = run_cli("train.py", f"model={model}", "method=lora", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = parse_counts(result.stdout)
    assert round(counts["additional_params"] / 1e6, 1) == paper_millions
    assert counts["trainable_params"] == counts["additional_params"]
    assert counts["total_params"] > 6.7e9


@pytest.mark.parametrize(("model", "billions"), [("llama-7b", 6.74), ("llama-13b", 13.02)])
def test_full_fine_tuning_trains_every_parameter(model: str, billions: float) -> None:
    counts = dry_run(validate(compose([f"model={model}", "method=ft"])))
    assert counts.additional == 0
    assert counts.trainable == counts.total
    assert round(counts.total / 1e9, 2) == billions
