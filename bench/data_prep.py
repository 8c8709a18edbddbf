"""Data preparation at BELLE's scale: a synthetic BELLE-shaped corpus through the real pipeline.

    .venv/bin/python bench/data_prep.py [--samples 2000000] [--num-proc 2] [--smoke]

Writes N instruction rows (default 2,000,000, the size of train_2M_CN) as JSON Lines into a
temporary directory: Chinese text drawn from the characters of the project's demo corpus with
punctuation, lognormal lengths like BELLE's (instruction median 24 characters, an input on 30%
of rows, output median 120 and mean about 180 characters, a long tail), and one row in a
thousand with an empty output (skipped and reported, as real data has some). Then prepares it
exactly as `data=2m` does, with this file as the source: the tiny tokenizer, max length 1024,
`data.num_proc` processes, every valid row kept (`num_samples: null`).

Prints `name=value` lines: the corpus (`samples=`, `corpus_gb=`), `prep_seconds=` (read,
validate, tokenise, write the cache) and `prep_cpu_seconds=` (its CPU time, workers included:
with other work on the machine, `load_average_1min=` before and after, the CPU time says what
the cores alone would take), `samples_per_second=` (rows read / prep_seconds),
`tokenizer_only_samples_per_second=` (the tokenizer alone on the same valid rows: each row's
templated prompt and EOS-anchored response texts, read from an Arrow file and tokenised in one
batched call per batch of the size preparation's `datasets.map` uses, by the same tokenizer in
`--num-proc` processes, and nothing else), `ratio_to_tokenizer=` (samples_per_second over it:
1.0 would be preparation at the tokenizer's own speed),
`cached_seconds=` (the same call again, served by the cache), `peak_rss_gb=` (this process and
its workers together during both calls, as PSS so that pages the forked workers share with it
count once, sampled every 2 s; `peak_rss_sum_gb=` is the plain RSS sum, every 0.2 s), the
prepared set
(`rows_kept=`, `tokens=`, `mean_length=`, `p95_length=`), and the share of non-pad tokens of
each batching mode at micro batch 4 (the gpu8 preset's): `nonpad_share_padded=` (pad to max
length), `nonpad_share_grouped=` (length-grouped, sampler batch = micro batch, no gradient
accumulation: the least grouping the Trainer does), `nonpad_share_packed=`, and
`nonpad_share_default=` (the mode `data.batching` defaults to). Targets on a 2-core machine:
peak RSS <= 4 GB, preparation <= 10 min, cached <= 10 s, default share >= 0.95,
ratio_to_tokenizer >= 0.8 (measured side by side in one run: other load on the machine slows
both). `--smoke` runs it in seconds on 2,000 rows (the same lines).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import psutil
import transformers
from benchutil import parse_with_smoke

from lorabench.config import compose, validate
from lorabench.data import nonpad_share, prepare_train_data, sample_lengths
from lorabench.data.prompts import batch_ids, format_prompt
from lorabench.data.report import DataReport
from lorabench.demo.corpus import generate_train_samples
from lorabench.modeling.base import build_tokenizer

MICRO_BATCH = 4
"""The gpu8 preset's micro batch."""
PUNCTUATION = "，，，。。、；：？！"
BAD_ROW_EVERY = 1000
MAP_BATCH = 1000
"""`datasets.map`'s default batch size, which preparation's tokenisation uses."""
SMOKE = {"samples": 2 * BAD_ROW_EVERY}
"""Enough rows for skipped ones (and their lines) too."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_with_smoke(parser, argv, SMOKE)
    if args.samples < 1 or args.num_proc < 1:
        parser.error("--samples and --num-proc must be >= 1")
    return args


def text_pool(rng: np.random.Generator, size: int = 4_000_000) -> str:
    """Random Chinese text from the demo corpus's characters, a punctuation mark every ~10."""
    rows = generate_train_samples(3000, seed=0)
    chars = sorted(set(re.findall(r"[\u4e00-\u9fff]", json.dumps(rows, ensure_ascii=False))))
    pool = np.array(chars)[rng.integers(0, len(chars), size)]
    marks = rng.random(size) < 0.1
    pool[marks] = np.array(list(PUNCTUATION))[rng.integers(0, len(PUNCTUATION), marks.sum())]
    return "".join(pool)


def write_corpus(path: Path, samples: int, seed: int) -> None:
    """BELLE-shaped instruction rows as JSON Lines, generated and written in chunks."""
    rng = np.random.default_rng(seed)
    pool = text_pool(rng)
    chunk = 100_000

    def spans(n: int, median: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.maximum(1, rng.lognormal(np.log(median), sigma, n).astype(int))
        lengths = np.minimum(lengths, 4000)
        return rng.integers(0, len(pool) - lengths), lengths

    with path.open("w", encoding="utf-8") as f:
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            fields = [spans(n, 24, 0.6), spans(n, 40, 0.8), spans(n, 120, 0.9)]
            has_input = rng.random(n) < 0.3
            for i in range(n):
                (io, il), (xo, xl), (oo, ol) = ((o[i], ln[i]) for o, ln in fields)
                bad = (start + i) % BAD_ROW_EVERY == BAD_ROW_EVERY - 1
                row = {
                    "instruction": pool[io : io + il],
                    "input": pool[xo : xo + xl] if has_input[i] else "",
                    "output": "" if bad else pool[oo : oo + ol],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


class PeakRss:
    """Peak resident memory of this process and all its descendants together, sampled.

    `peak` sums PSS (proportional set size: a page shared by k processes counts 1/k in each),
    the memory the process tree really holds; `peak_rss_sum` sums plain RSS, which counts the
    pages forked workers share with their parent once per process (an upper bound). Reading
    PSS makes the kernel walk every mapping (tens of ms per process), so it is sampled every
    `pss_interval` seconds and the cheap RSS every `interval`; memory here grows and shrinks
    over seconds, not milliseconds.
    """

    def __init__(self, interval: float = 0.2, pss_interval: float = 2.0) -> None:
        self.interval = interval
        self.pss_every = max(1, round(pss_interval / interval))
        self.peak = 0
        self.peak_rss_sum = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _sum(read) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += read(proc)
            except psutil.NoSuchProcess:
                continue  # a worker that ended between listing and reading
        return total

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self.peak_rss_sum = max(self.peak_rss_sum, self._sum(lambda p: p.memory_info().rss))
            if tick % self.pss_every == 0:
                self.peak = max(self.peak, self._sum(lambda p: p.memory_full_info().pss))
            tick += 1
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished workers."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usages)


def print_prepared(
    report: DataReport, lengths: np.ndarray, max_length: int, default_batching: str
) -> None:
    """The prepared set's `name=value` lines: rows, tokens, lengths, each batching's share."""
    print(f"rows_read={report.rows_read}")
    print(f"rows_kept={report.rows_kept}")
    for reason, n in report.skipped.items():
        if n:
            print(f"skipped_{reason}={n}")
    print(f"tokens={report.tokens}")
    print(f"mean_length={report.mean_length:.1f}")
    print(f"p95_length={report.p95_length:.1f}")
    shares = {
        mode: nonpad_share(lengths, mode, micro_batch_size=MICRO_BATCH, max_length=max_length)
        for mode in ("padded", "grouped", "packed")
    }
    for mode, share in shares.items():
        print(f"nonpad_share_{mode}={share:.4f}")
    print(f"nonpad_share_default={shares[default_batching]:.4f}")


def template_texts(corpus: Path, workdir: Path, tokenizer, num_proc: int) -> datasets.Dataset:
    """Each valid row's texts as preparation tokenises them: the templated prompt and the
    response after the EOS string (untimed set-up of the tokenizer-only measurement)."""
    rows = datasets.Dataset.from_json(str(corpus), cache_dir=str(workdir / "json"))
    eos = tokenizer.eos_token

    def texts(batch: dict[str, list[str]]) -> dict[str, list[list[str]]]:
        pairs = zip(batch["instruction"], batch["input"], batch["output"], strict=True)
        return {"texts": [[format_prompt(i + x), eos + o] for i, x, o in pairs if o.strip()]}

    return rows.map(texts, batched=True, remove_columns=rows.column_names, num_proc=num_proc)


_SHARD: tuple[datasets.Dataset, object] | None = None
"""What a forked tokenizer-only worker reads: the texts and the tokenizer."""


def _tokenize_shard(args: tuple[int, int]) -> int:
    index, shards = args
    assert _SHARD is not None
    dataset, tokenizer = _SHARD
    shard = dataset.shard(num_shards=shards, index=index, contiguous=True)
    for batch in shard.iter(batch_size=MAP_BATCH):
        flat = [text for texts in batch["texts"] for text in texts]
        batch_ids(tokenizer, flat)  # the call preparation makes
    return len(shard)


def tokenizer_only_rate(texts: datasets.Dataset, tokenizer, num_proc: int) -> float:
    """Rows per second of the tokenizer alone on `texts`, in `num_proc` forked processes."""
    global _SHARD
    _SHARD = (texts, tokenizer)
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(num_proc) as pool:
        rows = sum(pool.map(_tokenize_shard, [(i, num_proc) for i in range(num_proc)]))
    return rows / (time.perf_counter() - start)


def make_corpus(args: argparse.Namespace, workdir: Path) -> Path:
    """Write the synthetic corpus; print its size and the machine's load."""
    corpus = workdir / "belle_synthetic.jsonl"
    start = time.perf_counter()
    write_corpus(corpus, args.samples, args.seed)
    print(f"load_average_1min={os.getloadavg()[0]:.1f}")  # other work sharing the cores
    print(f"samples={args.samples}")
    print(f"corpus_gb={corpus.stat().st_size / 1e9:.2f}")
    print(f"generate_seconds={time.perf_counter() - start:.1f}", flush=True)
    return corpus


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    workdir = Path(tempfile.mkdtemp(prefix="lorabench-data-prep-"))
    try:
        corpus = make_corpus(args, workdir)

        cfg = validate(
            compose(
                [
                    "model=tiny",
                    "hardware=cpu",
                    "data=2m",
                    f"data.sources=[{{path: '{corpus}', format: instruction}}]",
                    f"data.num_proc={args.num_proc}",
                    f"method.max_length={args.max_length}",
                    f"cache_dir={workdir / 'cache'}",
                ]
            )
        )
        tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)

        def prepare():
            return prepare_train_data(cfg.data, tokenizer, cfg.method.max_length, cfg.cache_dir)

        with PeakRss() as rss:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            prepared = prepare()
            prep_seconds = time.perf_counter() - start
            prep_cpu = cpu_seconds() - cpu_start
            start = time.perf_counter()
            cached = prepare()
            cached_seconds = time.perf_counter() - start
        assert cached.report.cache_hit and len(cached.dataset) == len(prepared.dataset)

        texts = template_texts(corpus, workdir, tokenizer, args.num_proc)
        tokenizer_rate = tokenizer_only_rate(texts, tokenizer, args.num_proc)

        report = prepared.report
        rate = report.rows_read / prep_seconds
        print(f"prep_seconds={prep_seconds:.1f}")
        print(f"prep_cpu_seconds={prep_cpu:.1f}")
        print(f"samples_per_second={rate:.0f}")
        print(f"tokenizer_only_samples_per_second={tokenizer_rate:.0f}")
        print(f"ratio_to_tokenizer={rate / tokenizer_rate:.2f}")
        print(f"cached_seconds={cached_seconds:.2f}")
        print(f"load_average_1min={os.getloadavg()[0]:.1f}")
        print(f"peak_rss_gb={rss.peak / 1e9:.2f}")
        print(f"peak_rss_sum_gb={rss.peak_rss_sum / 1e9:.2f}")
        print_prepared(report, sample_lengths(cached.dataset), args.max_length, cfg.data.batching)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
