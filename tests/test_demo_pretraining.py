"""Pretraining the demo bases (lorabench.demo.pretraining): it lowers held-out perplexity, it is
cached by its config and reused, a corrupt or foreign cache entry is rebuilt, never loaded, and a
missing base is made on demand or named with the command that makes it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench import contract
from lorabench.analysis.runs import load_runs
from lorabench.demo.pretraining import base as pretrain_base
from lorabench.demo.pretraining import cache, ensure_pretrained, resolved_model
from lorabench.errors import ConfigError
from lorabench.identity import model_run_name
from lorabench.modeling.base import build_model, build_tokenizer
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.runs import runs_of

# A recipe small enough for a test: a few hundred documents, a dozen optimiser steps.
SMALL = (
    "model.pretrain.documents=300",
    "model.pretrain.heldout_documents=40",
    "model.pretrain.block_size=64",
    "model.pretrain.batch_size=8",
)


@pytest.fixture
def small(demo_config, tmp_path: Path):
    """A demo config with the small recipe, pretraining into this test's own directory."""

    def make(*overrides: str):
        return demo_config(*SMALL, f"pretrained_dir={tmp_path}/pretrained", *overrides)

    return make


def no_pretraining(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("a valid cached base must be loaded, not pretrained again")

    monkeypatch.setattr(pretrain_base, "pretrain_into", fail)


def test_the_demo_recipe_lowers_held_out_perplexity(demo_config) -> None:
    """The `tiny` preset's own recipe (the session's shared base): held-out world text, never
    trained on, is far more predictable after pretraining than at initialisation."""
    metrics = ensure_pretrained(demo_config()).record.metrics
    initial = metrics[contract.PRETRAIN_INITIAL_HELDOUT_PERPLEXITY]
    final = metrics[contract.PRETRAIN_HELDOUT_PERPLEXITY]
    assert initial > 1000  # about the vocabulary's size: a random model's guess
    assert final < 10, (initial, final)


def test_pretraining_is_tracked_as_a_run_of_its_own(small, store, store_file) -> None:
    cfg = small()
    pretrained = ensure_pretrained(cfg)

    assert pretrained.built
    (run,) = runs_of(store, pretraining=True)
    assert run.info.run_name.startswith("tiny (pretraining)[")  # its recipe is not the preset's
    assert run.info.status == "FINISHED" and run.info.run_id == pretrained.record.run_id
    tags = run.data.tags
    assert tags[contract.TAG_RUN_KIND] == contract.RUN_KIND_PRETRAINING
    assert tags[contract.TAG_PRETRAIN_KEY] == pretrained.record.key
    assert Path(tags[contract.TAG_MODEL_PATH]) == pretrained.path.resolve()
    metrics = run.data.metrics
    assert (
        metrics[contract.PRETRAIN_HELDOUT_PERPLEXITY]
        < metrics[contract.PRETRAIN_INITIAL_HELDOUT_PERPLEXITY] / 2
    )
    assert "train/loss" in metrics and run.data.params["model.pretrain.documents"] == "300"
    # Not a row of the study's tables.
    with pytest.raises(Exception, match="no finished run"):
        load_runs(f"sqlite:///{store_file}", "lorabench-demo")


def test_a_second_call_loads_the_cached_base(small, monkeypatch) -> None:
    first = ensure_pretrained(small())
    no_pretraining(monkeypatch)
    second = ensure_pretrained(small())
    assert not second.built and second.path == first.path and second.record == first.record


def test_a_changed_config_pretrains_a_base_of_its_own(small) -> None:
    first = ensure_pretrained(small())
    other = ensure_pretrained(small("model.pretrain.learning_rate=1e-3"))
    assert other.built and other.path != first.path
    assert other.record.key != first.record.key
    assert cache.problem(first.path, first.record.key, first.record.material) is None


@pytest.mark.parametrize("damage", ["weights", "record", "material", "missing file"])
def test_a_corrupt_or_foreign_entry_is_rebuilt_not_loaded(small, damage, caplog) -> None:
    first = ensure_pretrained(small())
    weights = first.path / "model.safetensors"
    record_file = first.path / cache.RECORD_FILE
    if damage == "weights":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "record":
        record_file.write_text("{ not json")
    elif damage == "material":  # an entry made by another config, under this key's name
        record = json.loads(record_file.read_text())
        record["material"]["pretrain"]["learning_rate"] = 0.5
        record_file.write_text(json.dumps(record))
    else:
        weights.unlink()

    with caplog.at_level(logging.WARNING):
        again = ensure_pretrained(small())
    assert again.built and again.path == first.path
    assert "pretraining again" in caplog.text
    assert cache.problem(again.path, again.record.key, again.record.material) is None


def test_where_no_pretraining_may_run_the_error_names_the_command(small) -> None:
    with pytest.raises(ConfigError) as err:
        ensure_pretrained(small(), build=False)
    message = str(err.value)
    assert "model tiny" in message and "is not in" in message
    assert "python -m lorabench.demo.pretraining profile=demo model=tiny" in message


def test_training_and_evaluation_load_the_pretrained_weights(small) -> None:
    cfg = small()
    with pytest.raises(ValueError, match="resolved_model"):  # never random weights silently
        build_model(cfg.model, build_tokenizer(cfg.model, cfg.cache_dir))
    model_cfg = resolved_model(cfg)
    assert Path(model_cfg.pretrained) == ensure_pretrained(cfg).path.resolve()
    model = build_model(model_cfg, build_tokenizer(model_cfg, cfg.cache_dir))
    assert model.num_parameters() == ensure_pretrained(cfg).record.metrics["model/total_params"]


def pretrain_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m lorabench.demo.pretraining ...` as a user runs it (this checkout's package)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lorabench.demo.pretraining", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # three CLI processes: two minutes on a loaded 2-core machine
def test_the_command_pretrains_once(tmp_path: Path, isolated) -> None:
    args = ["profile=demo", "model=tiny", *SMALL, *isolated, f"pretrained_dir={tmp_path}/bases"]
    first = pretrain_command(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "tiny: pretrained: " in first.stdout and "held-out perplexity" in first.stdout
    second = pretrain_command(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "tiny: already pretrained (cached)" in second.stdout
    refused = pretrain_command("model=llama-7b", *isolated, cwd=tmp_path)
    assert refused.returncode == 1 and "nothing to do" in refused.stderr


def test_runs_about_a_base_are_named_after_its_model_and_its_axes() -> None:
    assert model_run_name("tiny+lora(2m)", "tiny", "base") == "tiny (base)"
    named = model_run_name("tiny+lora(2m)[lr=0.1,model.pretrain.epochs=2]", "tiny", "base")
    assert named == "tiny (base)[model.pretrain.epochs=2]"  # the method's axes are not its own
    assert model_run_name("llama-7b+ft(2m)", "llama-7b", "base") == "llama-7b (base)"
