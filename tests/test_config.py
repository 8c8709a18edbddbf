"""Config composition: every group option composes; the defaults are the paper's; bad input fails
before any compute, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from lorabench.config import CONF_DIR, ConfigError, compose, validate
from tests.helpers.cli import run_cli
from tests.helpers.runs import runs_of

GROUPS = ("model", "data", "method", "hardware", "tracking", "eval", "judge", "profile")
# Options that need a value the user must supply.
REQUIRED_EXTRA = {("model", "causal-lm"): ["model.name=my-lm", "model.pretrained=/models/my-lm"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x)
)
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    overrides = [f"{group}={option}", *REQUIRED_EXTRA.get((group, option), [])]
    cfg = validate(compose(overrides))
    if group in ("model", "data", "method", "hardware") and (group, option) not in REQUIRED_EXTRA:
        # A method preset `<name>_incremental` is the chained recipe of method `<name>`.
        assert getattr(cfg, group).name == option.removesuffix("_incremental")


@pytest.mark.parametrize("method", ["lora", "ft"])
@pytest.mark.parametrize("data", ["0.6m", "2m", "4m", "math_0.25m"])
def test_demo_profile_composes_for_the_whole_grid(method: str, data: str) -> None:
    cfg = validate(compose(["profile=demo", f"method={method}", f"data={data}"]))
    assert (cfg.model.name, cfg.hardware.device, cfg.precision) == ("tiny", "cpu", "fp32")
    assert cfg.run_name == f"tiny+{method}({data})"
    assert cfg.data.demo_fraction == pytest.approx(0.0005)


def test_defaults_are_the_papers_setup() -> None:
    cfg = validate(compose([]))
    assert (cfg.model.name, cfg.method.name, cfg.data.name) == ("llama-7b", "lora", "2m")
    assert cfg.hardware.world_size == 8 and cfg.hardware.deepspeed == "zero2"
    assert cfg.hardware.gpu == "a100-40gb" and cfg.gpus["a100-40gb"].peak_tflops["bf16"] == 312
    assert cfg.run_name == "llama-7b+lora(2m)"


def test_lora_preset_is_table_3() -> None:
    m = validate(compose(["method=lora"])).method
    assert (m.lora.r, m.lora.alpha, m.lora.dropout) == (8, 16, 0.05)
    assert (m.epochs, m.global_batch_size, m.learning_rate) == (4, 128, 2e-4)
    assert (m.warmup_steps, m.lr_scheduler, m.max_length, m.precision) == (
        100,
        "cosine",
        1024,
        "fp16",
    )


def test_ft_preset_is_table_2() -> None:
    m = validate(compose(["method=ft"])).method
    assert m.lora is None
    assert (m.epochs, m.global_batch_size, m.learning_rate) == (3, 32, 5e-6)
    assert (m.warmup_ratio, m.lr_scheduler, m.max_length, m.precision) == (
        0.03,
        "cosine",
        1024,
        "bf16",
    )


@pytest.mark.parametrize(("method", "accumulation"), [("lora", 4), ("ft", 1)])
def test_gradient_accumulation_is_derived_from_the_global_batch(
    method: str, accumulation: int
) -> None:
    cfg = validate(compose([f"method={method}", "hardware=gpu8"]))
    assert cfg.gradient_accumulation_steps() == accumulation  # 128 = 8×4×4, 32 = 8×4×1


def test_tracking_uri_from_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-server:5000")
    assert validate(compose([])).tracking.tracking_uri == "http://mlflow-server:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert validate(compose([])).tracking.tracking_uri == "sqlite:///mlruns/mlflow.db"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["method.learning_rate=-1"], "method.learning_rate"),
        (["method.epochs=0"], "method.epochs"),
        (["hardware.micro_batch_size=3"], "method.global_batch_size"),
        (["method.lora.dropout=1.5"], "method.lora.dropout"),
        (["method.precision=fp8"], "method.precision"),
        (["hardware=cpu", "hardware.precision=null"], "method.precision=fp16"),
        (["hardware.deepspeed=zero9"], "hardware.deepspeed"),
        (["data.sources=[]"], "data.sources"),
        (["method=ft", "method.warmup_steps=10"], "method.warmup_ratio"),
        (["hardware.gpu=v100"], "hardware.gpu='v100': unknown GPU type; known: a100-40gb"),
        (["hardware=cpu", "hardware.gpu=a100-40gb"], "hardware.gpu"),
        (["gpus.a100-40gb.memory_gib=0"], "gpus.a100-40gb.memory_gib"),
        (["plan.mfu.ft.bf16=1.5"], "plan.mfu.ft.bf16=1.5"),
        (["plan.grouped_nonpad_share=0"], "plan.grouped_nonpad_share=0"),
        (["plan.fragmentation=-0.1"], "plan.fragmentation=-0.1"),
        (["pairwise.language=fr"], "pairwise.language='fr': must be one of zh, en"),
        (["pairwise.margin=1"], "pairwise.margin=1"),
        (["pairwise.pairs=[a b]"], "pairwise.pairs='a b': each pair must read"),
        (["pairwise.baseline=' '"], "pairwise.baseline"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose(overrides))


def test_misspelt_key_is_rejected_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="method.lerning_rate"):
        compose(["method.lerning_rate=1e-4"])


def test_wrong_type_is_rejected_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="method.epochs"):
        compose(["method.epochs=many"])


def test_unknown_group_option_lists_the_available_ones() -> None:
    with pytest.raises(MissingConfigException, match="method/lorra"):
        compose(["method=lorra"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.lerning_rate=1e-4", "method.lerning_rate"),
        ("method.learning_rate=-1", "method.learning_rate=-1.0: must be > 0"),
        ("hardware.micro_batch_size=3", "not divisible"),
    ],
)
def test_cli_rejects_bad_input_before_building_anything(
    tmp_path: Path, isolated: list[str], store, override: str, message: str
) -> None:
    result = run_cli("train.py", "profile=demo", *isolated, override, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "cache").exists()  # no tokenizer was built
    assert runs_of(store) == []  # no run was opened


def test_the_pairwise_prompts_languages_are_the_configs() -> None:
    # The schema names them without importing the judging package.
    from lorabench.config.schema import PAIRWISE_LANGUAGES
    from lorabench.judging.pairwise_prompts import PAIRWISE_LANGUAGES as PROMPT_LANGUAGES

    assert PAIRWISE_LANGUAGES == PROMPT_LANGUAGES
