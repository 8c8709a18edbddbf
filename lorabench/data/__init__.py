"""Training data: sources → validated rows → seeded exact-size draw → tokenised, cached set,
and the batching (collator, sampler) that feeds it to the Trainer.

    from lorabench.data import prepare_train_data, make_collator
    prepared = prepare_train_data(cfg.data, tokenizer, cfg.method.max_length, cfg.cache_dir)
    prepared.report.metrics()          # data/rows_read, data/skipped_<reason>, ...
    collator = make_collator(cfg.data.batching, tokenizer, cfg.method.max_length)

`python -m lorabench.data data=2m` prepares (and caches) a set from the command line.
"""

from lorabench.data.batching import (
    configured_nonpad_share,
    make_collator,
    nonpad_share,
    sample_lengths,
    trainer_arguments,
)
from lorabench.data.preparation import PreparedData, build_train_dataset, prepare_train_data
from lorabench.data.report import DataReport, SourceReport
from lorabench.data.sampling import demo_size, split_dev
from lorabench.errors import DataError

__all__ = [
    "DataError",
    "DataReport",
    "PreparedData",
    "SourceReport",
    "build_train_dataset",
    "configured_nonpad_share",
    "demo_size",
    "make_collator",
    "nonpad_share",
    "prepare_train_data",
    "sample_lengths",
    "split_dev",
    "trainer_arguments",
]
