"""Batching: the collators of each mode, the non-pad share (checked against what the collators
really produce), packing with no attention across samples, and the Trainer settings."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from lorabench.config import compose, validate
from lorabench.data import make_collator, nonpad_share, sample_lengths, trainer_arguments
from lorabench.data.prompts import IGNORE_INDEX, tokenize_conversation
from lorabench.modeling.base import build_model
from lorabench.training.trainer import LengthListTrainer
from tests.helpers.local_tokenizers import tiny_tokenizer

MAX_LENGTH = 64


def toy_dataset(lengths: list[int]) -> datasets.Dataset:
    """Rows shaped like prepared ones: ids 5.., the first half of each sample masked."""
    rows = []
    for n in lengths:
        ids = list(range(5, 5 + n))
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]
        rows.append({"input_ids": ids, "labels": labels, "length": n})
    return datasets.Dataset.from_list(rows)


def test_nonpad_share_by_hand() -> None:
    lengths = [1, 2, 3, 10]
    kwargs = {"micro_batch_size": 2, "max_length": 10}
    assert nonpad_share(lengths, "padded", **kwargs) == pytest.approx(16 / 40)
    assert nonpad_share(lengths, "packed", **kwargs) == 1.0
    # One mega-batch of 4, sorted longest first: [10, 3] and [2, 1] → 2·10 + 2·2 positions.
    assert nonpad_share(lengths, "grouped", sampler_batch_size=4, **kwargs) == pytest.approx(
        16 / 24
    )
    # A last, smaller batch is padded to its own longest sample: [4, 3] and [2].
    share = nonpad_share(
        [4, 2, 3], "grouped", micro_batch_size=2, max_length=9, sampler_batch_size=3
    )
    assert share == pytest.approx(9 / 10)


@pytest.mark.parametrize("batching", ["padded", "grouped", "packed"])
def test_nonpad_share_is_what_the_collators_produce(batching: str) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, MAX_LENGTH, size=203).tolist()
    dataset = toy_dataset(lengths)
    micro = 4
    if batching == "grouped":  # the Trainer's sampler, with the same seed
        order = get_length_grouped_indices(
            lengths, micro, generator=torch.Generator().manual_seed(7)
        )
    else:
        order = rng.permutation(len(lengths)).tolist()
    collate = make_collator(batching, tiny_tokenizer(), MAX_LENGTH)
    real = positions = 0
    for start in range(0, len(order), micro):
        batch = collate([dataset[i] for i in order[start : start + micro]])
        assert "length" not in batch
        positions += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else positions
        if batching == "padded":
            assert batch["input_ids"].shape[1] == batch["labels"].shape[1] == MAX_LENGTH
    if batching == "packed":
        real = sum(lengths)
    share = nonpad_share(
        sample_lengths(dataset), batching, micro_batch_size=micro, max_length=MAX_LENGTH, seed=7
    )
    assert share == pytest.approx(real / positions)


def test_padding_is_never_trained() -> None:
    batch = make_collator("grouped", tiny_tokenizer(), MAX_LENGTH)(
        [toy_dataset([3])[0], toy_dataset([8])[0]]
    )
    assert batch["labels"][0, 3:].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"][0].tolist() == [1] * 3 + [0] * 5


@pytest.fixture(scope="module")
def tiny_model():
    # Plumbing only: the tiny architecture at random initialisation, no pretrained base needed.
    cfg = validate(compose(["profile=demo", "model.pretrain=null"]))
    return build_model(cfg.model, tiny_tokenizer(), seed=0).eval()


def samples() -> list[dict[str, list[int]]]:
    tokenizer = tiny_tokenizer()
    conversations = [
        [("你好", "你好！很高兴见到你。")],
        [("What is 2+3?", "5"), ("And times 4?", "20")],
        [("把下面的词翻译成英文：", "apple")],
    ]
    rows = []
    for turns in conversations:
        example = tokenize_conversation(tokenizer, turns, MAX_LENGTH)
        rows.append({"input_ids": example.input_ids, "labels": example.labels})
    return rows


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_forward_equals_separate_unpadded_forwards(tiny_model, attention: str) -> None:
    tiny_model.set_attn_implementation(attention)
    rows = samples()
    packed = make_collator("packed", tiny_tokenizer(), MAX_LENGTH)(rows)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        # use_cache=False as in training (TrainingArguments.use_cache): with a cache, transformers
        # does not look for packed sequences in the position ids.
        logits = tiny_model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        start = 0
        for row in rows:
            alone = tiny_model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False)
            n = len(row["input_ids"])
            torch.testing.assert_close(logits[start : start + n], alone.logits[0])
            start += n
        # Without per-sample positions the samples would see each other: the check can fail.
        leaky = tiny_model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        assert not torch.allclose(leaky[start - n :], logits[start - n :], atol=1e-4)


@pytest.mark.parametrize("attention", ["sdpa", "flash_attention_2"])
def test_packed_batches_restart_positions_per_sample_and_tell_flash_the_boundaries(
    attention: str,
) -> None:
    rows = samples()
    lengths = [len(row["input_ids"]) for row in rows]
    batch = make_collator("packed", tiny_tokenizer(), MAX_LENGTH, attn_implementation=attention)(
        rows
    )
    expected = torch.tensor([i for n in lengths for i in range(n)])
    assert torch.equal(batch["position_ids"][0], expected)  # no position runs across samples
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    boundaries = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}
    if attention == "sdpa":
        assert not boundaries & set(batch)  # sdpa and eager find the samples in the positions
        return
    # FlashAttention's variable-length kernel attends within [cu[i], cu[i+1]) only.
    starts = np.cumsum([0, *lengths]).tolist()
    for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
        assert batch[key].dtype == torch.int32 and batch[key].tolist() == starts
    assert batch["max_length_q"] == batch["max_length_k"] == max(lengths)
    # Each sample's first label is the separator: no sample predicts the next one's start.
    assert batch["labels"][0, starts[:-1]].eq(IGNORE_INDEX).all()


def test_packed_and_padded_batches_give_the_same_loss(tiny_model) -> None:
    tiny_model.set_attn_implementation("sdpa")
    rows = samples()
    losses = {}
    with torch.no_grad():
        for batching in ("packed", "grouped", "padded"):
            batch = make_collator(batching, tiny_tokenizer(), MAX_LENGTH)(rows)
            losses[batching] = tiny_model(**batch, use_cache=False).loss.item()
    assert losses["packed"] == pytest.approx(losses["grouped"], rel=1e-5)
    assert losses["padded"] == pytest.approx(losses["grouped"], rel=1e-5)


def test_trainer_groups_by_the_length_column_and_feeds_the_model_its_columns(
    tmp_path: Path, tiny_model
) -> None:
    dataset = toy_dataset([3, 30, 5, 28, 4, 31, 6, 29] * 50)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to="none",
        **trainer_arguments("grouped"),
    )
    trainer = Trainer(
        model=tiny_model,
        args=args,
        train_dataset=dataset,
        data_collator=make_collator("grouped", tiny_tokenizer(), MAX_LENGTH),
    )
    loader = trainer.get_train_dataloader()
    sampler = loader.base_dataloader.batch_sampler.sampler
    assert isinstance(sampler, LengthGroupedSampler)
    assert list(sampler.lengths) == list(dataset["length"])  # read, not recomputed from ids
    batches = list(loader)
    assert set(batches[0]) == {"input_ids", "labels", "attention_mask"}
    share = sum(int(b["attention_mask"].sum()) for b in batches) / sum(
        b["input_ids"].numel() for b in batches
    )
    assert share > 0.9  # random pairs would give about 0.73 on these lengths


def test_the_project_trainer_hands_its_samplers_the_lengths_as_a_list(
    tmp_path: Path, tiny_model
) -> None:
    dataset = toy_dataset([3, 30, 5, 28, 4, 31, 6, 29] * 5)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to="none",
        **trainer_arguments("grouped"),
    )
    made = {
        cls: cls(model=tiny_model, args=args, train_dataset=dataset, eval_dataset=dataset)
        for cls in (Trainer, LengthListTrainer)
    }
    ours, theirs = made[LengthListTrainer], made[Trainer]
    for sampler in (ours._get_train_sampler(), ours._get_eval_sampler(dataset)):
        assert isinstance(sampler, LengthGroupedSampler)
        assert type(sampler.lengths) is list and sampler.lengths == list(dataset["length"])
    torch.manual_seed(0)
    order = list(theirs._get_train_sampler())
    torch.manual_seed(0)
    assert list(ours._get_train_sampler()) == order  # the same draw, only faster


def test_trainer_arguments_per_mode() -> None:
    assert trainer_arguments("grouped")["train_sampling_strategy"] == "group_by_length"
    assert trainer_arguments("packed")["train_sampling_strategy"] == "random"
    assert all(not trainer_arguments(m)["remove_unused_columns"] for m in ("padded", "packed"))
