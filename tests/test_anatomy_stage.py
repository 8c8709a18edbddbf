"""The anatomy of real trained runs: each matrix's ΔW is the run's weights against those it
started from (the pretrained base; a chained run's base run), its figures equal an independent
SVD of the models loaded in memory, and they are logged to the run once, resumably."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from lorabench import contract
from lorabench.anatomy import stage
from lorabench.anatomy.stage import ANATOMY_DIR, PARTIAL_FILE, anatomy_key, measure_run
from lorabench.anatomy.weights import WeightFiles, matrix_pairs
from lorabench.config import Config, ConfigError, compose, validate
from lorabench.training import TrainResult, train
from tests.helpers.cli import module_cli
from tests.helpers.models import base_model

SHORT = ("training.max_steps=4", "training.save_steps=100", "training.progress_bar=false")
LORA = "tiny+lora(2m)[steps=4]"
FT = "tiny+ft(2m)[steps=4]"
CHAINED = f"{FT}+lora(math_0.25m)[steps=4]"
PAPER_MODULES = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Trained:
    """A LoRA run, an FT run and a LoRA run chained on the FT run, trained once a module."""

    overrides: list[str]
    lora: TrainResult
    ft: TrainResult
    chained: TrainResult

    def config(self, *extra: str) -> Config:
        return validate(compose(["profile=demo", *self.overrides, *extra]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("anatomy")
    overrides = [
        f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
        f"tracking.artifact_location={root}/artifacts",
        f"cache_dir={root}/cache",
        f"training.output_dir={root}/out/${{run_name}}",
    ]

    def run(*extra: str) -> TrainResult:
        return train(validate(compose(["profile=demo", *overrides, *SHORT, *extra])))

    lora = run("method=lora", "data=2m")
    ft = run("method=ft", "data=2m")
    chained = run("method=lora_incremental", "data=math_0.25m", f"base_run='{FT}'")
    return Trained(overrides, lora, ft, chained)


def svd_figures(start: torch.Tensor, end: torch.Tensor) -> tuple[int, float]:
    """Effective rank at 90% energy and relative change, by numpy, as a check."""
    delta = (end - start).double().numpy()
    energy = np.linalg.svd(delta, compute_uv=False) ** 2
    rank = int(np.searchsorted(np.cumsum(energy) / energy.sum(), 0.9 - 1e-9) + 1)
    return rank, float(np.linalg.norm(delta) / np.linalg.norm(start.double().numpy()))


def layers_of(result_layers: Path) -> pd.DataFrame:
    return pd.read_csv(result_layers).set_index("tensor")


def test_a_lora_runs_update_is_its_merged_adapter_of_rank_at_most_r(trained: Trained) -> None:
    cfg = trained.config()
    result = measure_run(cfg, LORA, progress=False)

    layers = layers_of(result.layers)
    assert set(layers["module"]) == set(PAPER_MODULES)
    assert len(layers) == result.metrics[contract.ANATOMY_MATRICES]
    assert (layers["effective_rank"] <= 8).all() and (layers["effective_rank"] >= 1).all()
    # Independently: the base training started from, and PEFT's own merge of the adapter.
    base = base_model(cfg)
    start = {k: v.clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, str(trained.lora.model_path)).merge_and_unload()
    name = "model.layers.0.self_attn.q_proj.weight"
    rank, change = svd_figures(start[name], merged.state_dict()[name])
    assert layers.loc[name, "effective_rank"] == rank
    assert layers.loc[name, "relative_change"] == pytest.approx(change, rel=1e-4)


def test_the_update_is_logged_to_the_run(trained: Trained) -> None:
    cfg = trained.config()
    result = measure_run(cfg, FT, progress=False)

    client = MlflowClient(cfg.tracking.tracking_uri)
    run = client.get_run(trained.ft.run_id)
    for metric in (*contract.ANATOMY_MEASURES.values(), contract.ANATOMY_MATRICES):
        assert run.data.metrics[metric] == pytest.approx(result.metrics[metric])
    assert contract.anatomy_metric("q_proj", "effective_rank") in run.data.metrics
    assert run.data.tags[contract.TAG_ANATOMY_HASH] == anatomy_key(
        cfg, run.data.tags[contract.TAG_WEIGHTS_DIGEST]
    )
    logged = client.download_artifacts(trained.ft.run_id, contract.ARTIFACT_ANATOMY_LAYERS)
    assert list(pd.read_csv(logged).columns) == list(contract.ANATOMY_LAYER_COLUMNS)
    spectra = pd.read_csv(
        client.download_artifacts(trained.ft.run_id, contract.ARTIFACT_ANATOMY_SPECTRA)
    )
    assert spectra.groupby("tensor")["singular_value"].is_monotonic_decreasing.all()
    # FT changes every matrix; its update against the base's weights, checked by numpy.
    start = base_model(cfg).state_dict()
    end = AutoModelForCausalLM.from_pretrained(trained.ft.model_path).state_dict()
    name = "model.layers.1.mlp.down_proj.weight"
    rank, change = svd_figures(start[name], end[name])
    layers = layers_of(result.layers)
    assert layers.loc[name, "effective_rank"] == rank
    assert layers.loc[name, "relative_change"] == pytest.approx(change, rel=1e-4)


def test_a_chained_run_is_measured_against_its_base_runs_weights(trained: Trained) -> None:
    result = measure_run(trained.config(), CHAINED, progress=False)

    # Against the FT run's model, the chained LoRA's update is its own adapter: rank <= 8.
    # Against the pretrained base it would hold FT's update too (of far higher rank).
    layers = layers_of(result.layers)
    assert (layers["effective_rank"] <= 8).all()
    start = AutoModelForCausalLM.from_pretrained(trained.ft.model_path).state_dict()
    end = AutoModelForCausalLM.from_pretrained(
        trained.chained.model_path.parent / "merged"
    ).state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert layers.loc[name, "effective_rank"] == svd_figures(start[name], end[name])[0]


def test_a_run_whose_weights_did_not_change_logs_its_counts_only(trained: Trained) -> None:
    # One optimiser step at the warmup's first learning rate, 0: nothing moves.
    cfg = trained.config("method=lora", "data=0.6m", *SHORT[1:], "training.max_steps=1")
    unmoved = train(cfg)

    result = measure_run(trained.config(), unmoved.run_id, progress=False)

    assert result.metrics == {
        contract.ANATOMY_MATRICES: 0.0,
        contract.ANATOMY_UNCHANGED: 12.0,
        contract.ANATOMY_SKIPPED: 0.0,
        contract.ANATOMY_SECONDS: result.metrics[contract.ANATOMY_SECONDS],
    }  # no mean stands for a measure that was not taken
    assert pd.read_csv(result.layers).empty


def test_a_measured_run_is_not_measured_again(trained: Trained) -> None:
    cfg = trained.config()
    first = measure_run(cfg, LORA, progress=False)
    again = measure_run(cfg, LORA, progress=False)

    assert not again.measured_now
    assert again.metrics == pytest.approx(
        {k: v for k, v in first.metrics.items() if k != contract.ANATOMY_SECONDS}
        | {contract.ANATOMY_SECONDS: again.metrics[contract.ANATOMY_SECONDS]}
    )
    other = measure_run(trained.config("anatomy.intruder_top_k=3"), LORA, progress=False)
    assert other.measured_now  # other settings: measured again


def test_an_interrupted_measurement_resumes_from_its_partial_file(trained: Trained) -> None:
    cfg = trained.config("anatomy.spectrum_length=5")
    weights = MlflowClient(cfg.tracking.tracking_uri).get_run(trained.lora.run_id)
    key = anatomy_key(cfg, weights.data.tags[contract.TAG_WEIGHTS_DIGEST])
    partial = trained.lora.model_path.parent / ANATOMY_DIR / PARTIAL_FILE
    name = "model.layers.0.self_attn.v_proj.weight"
    planted = {
        **{"tensor": name, "layer": 0, "module": "v_proj", "rows": 1, "cols": 1},
        **{"effective_rank": 77, "relative_change": 0.5, "intruders": 0},
        **{"delta_norm": 1.0, "base_norm": 2.0, "spectrum": [1.0]},
    }
    partial.parent.mkdir(exist_ok=True)
    partial.write_text(json.dumps({"key": key, **planted}) + '\n{"key": "cut sh')

    result = measure_run(cfg, LORA, progress=False)

    layers = layers_of(result.layers)
    assert layers.loc[name, "effective_rank"] == 77  # kept from the partial file, not redone
    assert (layers.drop(index=name)["effective_rank"] <= 8).all()
    assert not partial.exists()


def test_a_run_whose_starting_weights_are_gone_is_named(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run as its store records it, but with its base's directory no longer on this machine.
    found = stage.spec_of_run(trained.config().tracking, LORA)
    gone = replace(found.spec, base=replace(found.spec.base, pretrained=str(tmp_path / "gone")))
    monkeypatch.setattr(stage, "spec_of_run", lambda *_: replace(found, spec=gone))

    with pytest.raises(ConfigError, match=r"started from, .*gone, are not on this machine"):
        measure_run(trained.config("anatomy.energy=0.8"), LORA, progress=False)


def test_matrices_whose_shapes_differ_are_skipped_and_counted(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    q, embed = "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"
    save_file({q: torch.ones(4, 3), embed: torch.ones(4, 3)}, a / "model.safetensors")
    save_file({q: torch.ones(4, 3), embed: torch.ones(5, 3)}, b / "model.safetensors")

    pairs, skipped = matrix_pairs(
        WeightFiles(a, "a"), WeightFiles(b, "b"), ["q_proj", "embed_tokens"]
    )

    assert [p.tensor for p in pairs] == ["model.layers.0.self_attn.q_proj.weight"]
    assert pairs[0].layer == 0 and pairs[0].module == "q_proj"
    assert skipped == ["model.embed_tokens.weight"]


def test_the_command_line_measures_a_run_by_name(trained: Trained, tmp_path: Path) -> None:
    result = module_cli(
        "lorabench.anatomy",
        "profile=demo",
        *trained.overrides,
        f"run='{CHAINED}'",
        "anatomy.targets=attention",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert int(float(lines[contract.ANATOMY_MATRICES])) == 2 * 3  # q, k, v in 2 layers
    assert Path(lines["layers"]).is_file()


def test_the_command_line_names_a_missing_run(trained: Trained, tmp_path: Path) -> None:
    result = module_cli(
        "lorabench.anatomy", "profile=demo", *trained.overrides, "run=nope", cwd=tmp_path
    )

    assert result.returncode == 1
    assert "nope" in result.stderr
