"""A run's identity is its config: hashes, names and output directories follow what a config
trains, and a directory never silently serves another config."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lorabench.analysis.runs import parse_run_name
from lorabench.config import ConfigError, compose, validate
from lorabench.identity import (
    check_output_dir,
    config_hash,
    flatten,
    identity,
    record_identity,
)

# Table 4's rows as `experiment=paper_table4` lists them, and the paper's names for them.
PAPER_ROWS = {
    "llama-7b+lora(0.6m)": ["model=llama-7b", "method=lora", "data=0.6m"],
    "llama-7b+lora(2m)": ["model=llama-7b", "method=lora", "data=2m"],
    "llama-7b+lora(4m)": ["model=llama-7b", "method=lora", "data=4m"],
    "llama-13b+lora(2m)": ["model=llama-13b", "method=lora", "data=2m"],
    "llama-7b+ft(0.6m)": ["model=llama-7b", "method=ft", "data=0.6m"],
    "llama-7b+ft(2m)": ["model=llama-7b", "method=ft", "data=2m"],
    "llama-7b+ft(2m)+lora(math_0.25m)": [
        "model=llama-7b",
        "method=lora_incremental",
        "data=math_0.25m",
        "base_run='llama-7b+ft(2m)'",
    ],
    "llama-7b+ft(2m)+ft(math_0.25m)": [
        "model=llama-7b",
        "method=ft_incremental",
        "data=math_0.25m",
        "base_run='llama-7b+ft(2m)'",
    ],
}


def name_of(*overrides: str) -> str:
    return validate(compose(list(overrides))).run_name


@pytest.mark.parametrize("name", PAPER_ROWS)
def test_the_papers_eight_names_are_unchanged(name: str) -> None:
    assert name_of(*PAPER_ROWS[name]) == name


def test_the_paper_experiment_rows_are_the_papers_configs() -> None:
    rows = compose(["experiment=paper_table4"]).sweep.rows
    assert sorted(map(list, rows)) == sorted(PAPER_ROWS.values())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["method.learning_rate=1e-4"], "tiny+lora(0.6m)[lr=0.0001]"),
        (["method.lora.r=64"], "tiny+lora-r64(0.6m)"),
        (["method.lora.r=64", "training.seed=2"], "tiny+lora-r64(0.6m)[seed=2]"),
        (["training.seed=2", "method.learning_rate=0.05"], "tiny+lora(0.6m)[lr=0.05,seed=2]"),
        (["method.weight_decay=0.1"], "tiny+lora(0.6m)[method.weight_decay=0.1]"),
        (["training.max_steps=12"], "tiny+lora(0.6m)[steps=12]"),
        # The base's pretraining is part of the model, so of the run's identity.
        (["model.pretrain.epochs=2"], "tiny+lora(0.6m)[model.pretrain.epochs=2]"),
        # Execution knobs are not training axes: the name (and output directory) stays.
        (["training.logging_steps=5", "training.save_steps=3"], "tiny+lora(0.6m)"),
        (["hardware.micro_batch_size=2", "data.num_proc=1"], "tiny+lora(0.6m)"),
        # A value equal to the preset's is no deviation.
        (["training.seed=42", "method.learning_rate=1e-2"], "tiny+lora(0.6m)"),
    ],
)
def test_names_show_every_axis_that_differs_from_the_presets(overrides, expected) -> None:
    assert name_of("profile=demo", "method=lora", "data=0.6m", *overrides) == expected


def test_an_explicit_run_name_is_kept() -> None:
    assert name_of("profile=demo", "run_name=mine", "method.learning_rate=0.5") == "mine"


def test_a_chained_ft_run_is_named_against_the_incremental_recipe() -> None:
    chained = ["data=math_0.25m", "base_run='llama-7b+ft(2m)'"]
    paper = validate(compose(["method=ft_incremental", *chained]))
    assert (paper.method.learning_rate, paper.method.epochs) == (5e-7, 2)
    plain = name_of("method=ft", *chained)
    assert plain == "llama-7b+ft(2m)+ft(math_0.25m)[epochs=3,lr=5e-6]"
    assert plain != paper.run_name


def test_names_parse_with_their_axes() -> None:
    parsed = parse_run_name("llama-7b+ft(2m)[lr=1e-3]+lora-r64(math_0.25m)[seed=2]")
    assert parsed == {
        "model": "llama-7b",
        "chain": "ft(2m)[lr=1e-3]",
        "method": "lora-r64",
        "data": "math_0.25m",
        "axes": "seed=2",
    }


def test_config_hash_tracks_what_is_computed_not_where_or_how_it_runs() -> None:
    base = compose(["profile=demo"])
    same = compose(
        [
            "profile=demo",
            "tracking.tracking_uri=http://elsewhere:5000",
            "training.logging_steps=7",
            "hardware.micro_batch_size=2",
            "model.attn_implementation=eager",  # the same model, computed another way
            "training.liger_kernel=true",
        ]
    )
    other = compose(["profile=demo", "method.learning_rate=0.5"])
    assert config_hash(base) == config_hash(same)
    assert config_hash(base) != config_hash(other)
    assert config_hash(validate(base)) == config_hash(base)  # typed or not


def test_flatten_uses_dotted_keys() -> None:
    cfg = OmegaConf.create({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"})
    assert flatten(OmegaConf.to_container(cfg)) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_a_directory_of_another_config_is_refused_naming_the_keys(tmp_path: Path) -> None:
    first = identity(compose(["profile=demo"]))
    record_identity(tmp_path, first)
    check_output_dir(tmp_path, first)  # the same config finds its own
    other = identity(compose(["profile=demo", "method.learning_rate=0.5", "training.seed=3"]))
    with pytest.raises(ConfigError) as err:
        check_output_dir(tmp_path, other)
    message = str(err.value)
    assert "method.learning_rate: 0.01 -> 0.5" in message
    assert "training.seed: 42 -> 3" in message
    assert "training.output_dir=" in message and "run_name=" in message


def test_a_trained_directory_without_a_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-5").mkdir()
    with pytest.raises(ConfigError, match="without a record of its config"):
        check_output_dir(tmp_path, identity(compose(["profile=demo"])))
