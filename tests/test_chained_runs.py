"""Chained runs are trained and evaluated on their true base: the evaluated model of
`tiny+ft(2m)+lora(math_0.25m)` is the FT run's weights plus the adapter, at any chain depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from peft import PeftModel
from transformers import AutoModelForCausalLM

from lorabench import contract
from lorabench.config import Config, ConfigError, compose, validate
from lorabench.data.prompts import encode_prompt
from lorabench.demo.pretraining import resolved_model
from lorabench.evaluation import evaluate
from lorabench.evaluation.targets import resolve_target
from lorabench.modeling.base import build_model, build_tokenizer
from lorabench.training import TrainResult, train

SHORT = ("training.max_steps=6", "training.save_steps=100", "training.progress_bar=false")
PROMPT = "请把下面的句子翻译成英文：今天天气很好。"
FT = "tiny+ft(2m)[steps=6]"
LORA = f"{FT}+lora(math_0.25m)[steps=6]"
LORA2 = f"{LORA}+lora(0.6m)[steps=6]"


@dataclass
class Chain:
    """Three stages trained once per test session: FT → LoRA on it → LoRA on that."""

    overrides: list[str]
    ft: TrainResult
    lora: TrainResult
    lora2: TrainResult
    root: Path

    def config(self, *extra: str) -> Config:
        return validate(compose(["profile=demo", *self.overrides, *extra]))


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("chain")
    overrides = [
        f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
        f"tracking.artifact_location={root}/artifacts",
        f"cache_dir={root}/cache",
        f"eval.output_dir={root}/eval",
        f"training.output_dir={root}/out/${{run_name}}",
        "eval.demo_per_class=2",
        "eval.decoding.max_new_tokens=6",
    ]

    def run(*extra: str) -> TrainResult:
        return train(validate(compose(["profile=demo", *overrides, *SHORT, *extra])))

    ft = run("method=ft", "data=2m")
    lora = run("method=lora_incremental", "data=math_0.25m", f"base_run='{FT}'")
    lora2 = run("method=lora_incremental", "data=0.6m", f"base_run='{LORA}'")
    return Chain(overrides, ft, lora, lora2, root)


def logits(model: torch.nn.Module, cfg: Config) -> torch.Tensor:
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def merged(base: torch.nn.Module, adapter: Path) -> torch.nn.Module:
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def evaluated_model(cfg: Config) -> torch.nn.Module:
    """What the evaluation of `cfg.run` loads."""
    model, _ = resolve_target(cfg).spec.load(cfg.cache_dir)
    return model


def raw_base(cfg: Config) -> torch.nn.Module:
    model_cfg = resolved_model(cfg)  # the pretrained tiny base training started from
    return build_model(model_cfg, build_tokenizer(model_cfg, cfg.cache_dir), seed=42)


def test_a_chained_lora_run_is_evaluated_on_the_ft_runs_weights(chain: Chain) -> None:
    cfg = chain.config(f"run='{LORA}'")
    got = logits(evaluated_model(cfg), cfg)

    ft_weights = AutoModelForCausalLM.from_pretrained(chain.ft.model_path)
    expected = logits(merged(ft_weights, chain.lora.model_path), cfg)
    wrong = logits(merged(raw_base(cfg), chain.lora.model_path), cfg)

    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, wrong, atol=1e-3)


def test_a_chain_of_depth_three_resolves_stage_by_stage(chain: Chain) -> None:
    cfg = chain.config(f"run='{LORA2}'")
    got = logits(evaluated_model(cfg), cfg)

    ft_weights = AutoModelForCausalLM.from_pretrained(chain.ft.model_path)
    stage2 = merged(ft_weights, chain.lora.model_path)
    expected = logits(merged(stage2, chain.lora2.model_path), cfg)
    skipped_middle = logits(
        merged(AutoModelForCausalLM.from_pretrained(chain.ft.model_path), chain.lora2.model_path),
        cfg,
    )
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, skipped_middle, atol=1e-3)


def test_training_records_the_effective_base(chain: Chain) -> None:
    client = MlflowClient(chain.config().tracking.tracking_uri)
    run = client.get_run(chain.lora2.run_id)
    base = run.data.tags[contract.TAG_BASE_MODEL]
    assert base == str(chain.lora.model_path.parent / "merged")
    assert run.data.tags[contract.TAG_BASE_RUN_ID] == chain.lora.run_id
    assert run.data.params["model.pretrained"] == base


def test_evaluating_a_chained_run_generates_from_its_true_model(chain: Chain) -> None:
    cfg = chain.config(f"run='{LORA}'")
    result = evaluate(cfg)
    meta = result.generations_path.with_suffix(".meta.json").read_text()
    assert str(chain.ft.model_path) in meta  # the adapter's base is the FT run's model
    assert set(result.metrics) >= {
        contract.EVAL_AVERAGE_SCORE,
        contract.EVAL_TRUNCATED_ANSWERS,
        contract.eval_parse_failures("others"),
    }


def test_a_base_run_that_has_not_finished_is_refused_before_training(chain: Chain) -> None:
    with pytest.raises(ConfigError, match=r"base_run='tiny\+ft\(4m\)'.*no run"):
        train(chain.config("method=lora", "data=math_0.25m", "base_run='tiny+ft(4m)'", *SHORT))


def test_a_run_whose_base_is_gone_is_refused_naming_it(chain: Chain, tmp_path: Path) -> None:
    cfg = chain.config(f"run='{LORA}'")
    moved = chain.ft.model_path.with_name("moved")
    chain.ft.model_path.rename(moved)
    try:
        with pytest.raises(ConfigError, match=r"the base its adapter was trained on.*is missing"):
            resolve_target(cfg)
    finally:
        moved.rename(chain.ft.model_path)
