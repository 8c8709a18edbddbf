"""The Trainer, with the length-grouped sampler given the sample lengths as a list.

transformers hands its `LengthGroupedSampler` the dataset's `length` column as `dataset[name]`,
which in datasets 4+ is a lazy column the sampler then reads element by element (under a
millisecond each: tens of minutes per epoch and rank at 2M rows). Here the column is read once
from its Arrow buffer (`lorabench.data.sample_lengths`) and the sampler gets the plain list;
the order it draws is the same.
"""

from __future__ import annotations

import datasets
import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from lorabench.data import sample_lengths
from lorabench.data.encoding import LENGTH_COLUMN


class LengthListTrainer(Trainer):
    """`transformers.Trainer` whose length-grouped samplers hold the lengths as a list."""

    def _get_train_sampler(
        self, train_dataset: datasets.Dataset | None = None
    ) -> torch.utils.data.Sampler | None:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return _with_length_list(super()._get_train_sampler(train_dataset), dataset)

    def _get_eval_sampler(self, eval_dataset: datasets.Dataset) -> torch.utils.data.Sampler | None:
        return _with_length_list(super()._get_eval_sampler(eval_dataset), eval_dataset)


def _with_length_list(
    sampler: torch.utils.data.Sampler | None, dataset: object
) -> torch.utils.data.Sampler | None:
    if (
        isinstance(sampler, LengthGroupedSampler)
        and isinstance(dataset, datasets.Dataset)
        and LENGTH_COLUMN in dataset.column_names
    ):
        sampler.lengths = sample_lengths(dataset).tolist()
    return sampler
