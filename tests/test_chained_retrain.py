"""A chain follows its base's weights: retraining a base run in place (same name, same output
directory, `training.resume=false`) invalidates the runs trained on it. The next training of a
chained run trains it again from scratch, saying why; its evaluation generates its answers again;
the `merged/` model made from it is made again; and until then it is refused as stale."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from lorabench import contract
from lorabench.config import Config, ConfigError, compose, validate
from lorabench.evaluation import evaluate
from lorabench.evaluation.targets import resolve_target
from lorabench.identity import BASE_WEIGHTS_KEY, config_hash
from lorabench.modeling.trained import MERGED_DIR, RECORD_WEIGHTS
from lorabench.sweeping.points import finished_run
from lorabench.training import TrainResult, train

STEPS = "training.max_steps=2"
FT = "tiny+ft(0.6m)[steps=2]"
LORA = f"{FT}+lora(math_0.25m)[steps=2]"
LORA2 = f"{LORA}+lora(0.6m)[steps=2]"
FT_ARGS = ("method=ft", "data=0.6m", STEPS)
LORA_ARGS = ("method=lora_incremental", "data=math_0.25m", f"base_run='{FT}'", STEPS)
LORA2_ARGS = ("method=lora_incremental", "data=0.6m", f"base_run='{LORA}'", STEPS)
RETRAIN_FT = (*FT_ARGS, f"run_name='{FT}'", "training.seed=1", "training.resume=false")
"""The base retrained in place: its name and directory kept, other weights (another seed)."""


def overrides(root: Path) -> list[str]:
    return [
        "profile=demo",
        f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
        f"tracking.artifact_location={root}/artifacts",
        f"cache_dir={root}/cache",
        f"eval.output_dir={root}/eval",
        f"training.output_dir={root}/out/${{run_name}}",
        "training.save_steps=100",
        "training.progress_bar=false",
        "eval.demo_per_class=1",
        "eval.decoding.max_new_tokens=4",
        # Training and evaluation make a point finished here; its anatomy is another story.
        "sweep.anatomy=false",
    ]


class Collected(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def logged(into: list[str]) -> Iterator[None]:
    """Collect lorabench's log messages (a module fixture cannot use caplog)."""
    handler = Collected(into)
    logger = logging.getLogger("lorabench")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    (file,) = path.glob("*.safetensors")
    return load_file(file)


def generations_key(eval_dir: Path) -> str:
    meta = eval_dir / Path(contract.GENERATIONS_FILE).with_suffix(".meta.json")
    return json.loads(meta.read_text())["key"]


@dataclass
class Story:
    """A chain FT → LoRA → LoRA trained and the LoRA evaluated; then FT retrained in place, and
    the LoRA trained and evaluated again, then the second LoRA."""

    config: Callable[..., Config]
    ft: TrainResult
    lora: TrainResult
    lora2: TrainResult
    finished_before: str | None
    adapter_before: dict[str, torch.Tensor]
    merged_before: dict[str, torch.Tensor]
    key_before: str
    ft_again: TrainResult | None = None
    finished_after_base: str | None = None
    refusal: str = ""
    lora_again: TrainResult | None = None
    lora2_again: TrainResult | None = None
    key_again: str = ""
    logs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    root = tmp_path_factory.mktemp("retrain")

    def config(*extra: str) -> Config:
        return validate(compose([*overrides(root), *extra]))

    ft, lora = train(config(*FT_ARGS)), train(config(*LORA_ARGS))
    lora2 = train(config(*LORA2_ARGS))  # merges the first LoRA into FT: its `merged/`
    result = evaluate(config(*LORA_ARGS, f"run={lora.run_id}"))
    told = Story(
        config=config,
        ft=ft,
        lora=lora,
        lora2=lora2,
        finished_before=finished_run(config(*LORA_ARGS)),
        adapter_before=tensors(lora.model_path),
        merged_before=tensors(lora.output_dir / MERGED_DIR),
        key_before=generations_key(result.generations_path.parent),
    )
    told.ft_again = train(config(*RETRAIN_FT))
    told.finished_after_base = finished_run(config(*LORA_ARGS))
    try:
        resolve_target(config(f"run='{LORA}'"))
    except ConfigError as err:
        told.refusal = str(err)
    with logged(told.logs):
        told.lora_again = train(config(*LORA_ARGS))
        again = evaluate(config(*LORA_ARGS, f"run={told.lora_again.run_id}"))
        told.key_again = generations_key(again.generations_path.parent)
        told.lora2_again = train(config(*LORA2_ARGS))
    return told


def test_a_chained_run_is_finished_until_its_base_is_retrained_in_place(story: Story) -> None:
    assert story.finished_before == story.lora.run_id
    assert story.ft_again.output_dir == story.ft.output_dir  # in place, as a run of its own
    assert story.ft_again.run_id != story.ft.run_id
    assert story.finished_after_base is None  # the next sweep does not skip it
    assert finished_run(story.config(*LORA_ARGS)) == story.lora_again.run_id


def test_a_chained_run_on_a_retrained_base_is_trained_again_saying_why(story: Story) -> None:
    again = story.lora_again
    assert again.output_dir == story.lora.output_dir and again.run_id != story.lora.run_id
    said = [m for m in story.logs if f"base run {FT} was retrained since this run" in m]
    assert said and "weights digest" in said[0] and said[0].endswith("retraining"), story.logs
    adapter = tensors(again.model_path)
    assert any(not torch.equal(adapter[k], story.adapter_before[k]) for k in adapter)
    # Trained from scratch on the retrained base, not resumed: a new run, every step again.
    client = MlflowClient(story.config().tracking.tracking_uri)
    steps = client.get_metric_history(again.run_id, contract.TRAIN_LOSS)
    assert sorted(m.step for m in steps) == [1, 2]


def test_a_stale_chained_run_is_refused_until_it_is_trained_again(story: Story) -> None:
    assert f"base run {FT} was retrained since this run" in story.refusal
    assert resolve_target(story.config(f"run='{LORA}'")).run_id == story.lora_again.run_id


def test_its_evaluation_generates_its_answers_again(story: Story) -> None:
    assert story.key_again != story.key_before
    assert any("answers kept there are of other weights" in m for m in story.logs), story.logs


def test_the_merged_model_of_a_retrained_chained_run_is_made_again(story: Story) -> None:
    merged = tensors(story.lora.output_dir / MERGED_DIR)
    ft = AutoModelForCausalLM.from_pretrained(story.ft.model_path)  # the retrained base
    expected = PeftModel.from_pretrained(ft, str(story.lora_again.model_path)).merge_and_unload()
    for name, value in expected.state_dict().items():
        if name in merged:
            torch.testing.assert_close(merged[name], value)
    assert any(not torch.equal(merged[k], story.merged_before[k]) for k in merged)
    assert any("merged from other weights" in m for m in story.logs), story.logs
    # ... and the run on top of it is trained again too (its base run's digest changed).
    assert story.lora2_again.run_id != story.lora2.run_id


# ---- runs trained before weights digests were recorded ------------------------------------------


def forget_digests(
    client: MlflowClient, base: TrainResult, chained: TrainResult, cfg: Config
) -> None:
    """Make `base` and `chained` look trained before digests were recorded: no digest in the
    base's record; no base digest in the chained run's identity or tags, and its config hash
    (record and tag) without it."""
    edit_json(base.output_dir / contract.COMPLETE_MARKER, lambda r: r.pop(RECORD_WEIGHTS))
    edit_json(chained.output_dir / contract.IDENTITY_FILE, lambda i: i.pop(BASE_WEIGHTS_KEY))
    legacy_hash = config_hash(cfg)
    edit_json(
        chained.output_dir / contract.COMPLETE_MARKER,
        lambda r: r.update(config_hash=legacy_hash),
    )
    client.set_tag(chained.run_id, contract.TAG_CONFIG_HASH, legacy_hash)
    client.delete_tag(chained.run_id, contract.TAG_BASE_WEIGHTS_DIGEST)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    values = read_json(path)
    change(values)
    path.write_text(json.dumps(values))


@dataclass
class Legacy:
    """A chain trained before digests were recorded, on an unchanged base, then again after
    its base was retrained in place."""

    lora: TrainResult
    base_digest: str
    chained_identity: dict
    recomputed_digest: str = ""
    evaluable: str = ""
    kept: TrainResult | None = None
    upgraded_identity: dict = field(default_factory=dict)
    finished: str | None = None
    refusal: str = ""
    retrained: TrainResult | None = None
    logs: list[str] = field(default_factory=list)
    retrain_logs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Legacy:
    root = tmp_path_factory.mktemp("legacy")

    def config(*extra: str) -> Config:
        return validate(compose([*overrides(root), *extra]))

    client = MlflowClient(config().tracking.tracking_uri)
    ft, lora = train(config(*FT_ARGS)), train(config(*LORA_ARGS))
    told = Legacy(
        lora=lora,
        base_digest=read_json(ft.output_dir / contract.COMPLETE_MARKER)[RECORD_WEIGHTS],
        chained_identity=read_json(lora.output_dir / contract.IDENTITY_FILE),
    )
    forget_digests(client, ft, lora, config(*LORA_ARGS))
    with logged(told.logs):
        told.evaluable = resolve_target(config(f"run='{LORA}'")).run_id
        told.kept = train(config(*LORA_ARGS))
    told.recomputed_digest = read_json(ft.output_dir / contract.COMPLETE_MARKER)[RECORD_WEIGHTS]
    told.upgraded_identity = read_json(lora.output_dir / contract.IDENTITY_FILE)
    told.finished = finished_run(config(*LORA_ARGS, "sweep.evaluate=false"))

    ft_again = train(config(*RETRAIN_FT))
    forget_digests(client, ft_again, told.kept, config(*LORA_ARGS))
    try:
        resolve_target(config(f"run='{LORA}'"))
    except ConfigError as err:
        told.refusal = str(err)
    with logged(told.retrain_logs):
        told.retrained = train(config(*LORA_ARGS))
    return told


def test_a_legacy_base_digest_is_computed_on_first_use_and_recorded(legacy: Legacy) -> None:
    assert legacy.recomputed_digest == legacy.base_digest
    assert any("no weights digest recorded" in m for m in legacy.logs), legacy.logs


def test_a_legacy_chained_run_on_its_unchanged_base_is_kept(legacy: Legacy) -> None:
    assert legacy.evaluable == legacy.lora.run_id
    assert legacy.kept.run_id == legacy.lora.run_id
    assert not any("retraining" in m for m in legacy.logs), legacy.logs
    assert legacy.upgraded_identity == legacy.chained_identity  # the base's digest recorded
    assert legacy.finished == legacy.lora.run_id  # found by a sweep under its new config hash


def test_a_legacy_chained_run_whose_base_run_changed_is_trained_again(legacy: Legacy) -> None:
    assert "weights digest not recorded" in legacy.refusal
    assert legacy.retrained.run_id != legacy.lora.run_id
    assert any("weights digest not recorded" in m and m.endswith("retraining")
               for m in legacy.retrain_logs), legacy.retrain_logs  # fmt: skip
