"""The benchmark stage (`eval.benchmarks`): lm-evaluation-harness scores the judged model on
what tuning may make it lose (`retention`) and should teach (`target`): `bench/<task>/<metric>`.

    check_benchmarks(cfg)              # before any compute: names known, roles given
    run_benchmarks(cfg, target, run)   # after the judge, in the target's run

`tasks` finds and loads lm-eval's tasks (the demo's own: `lorabench.demo.panel`), `results`
turns lm-eval's output into the contract's names, `perplexity` measures the demo's held-out world
text, `stage` runs and logs them.
"""

from lorabench.benchmarks.stage import (
    BenchmarkIncomplete,
    BenchResult,
    bench_hash,
    benchmarked,
    run_benchmarks,
    wanted,
)
from lorabench.benchmarks.tasks import check_benchmarks

__all__ = [
    "BenchResult",
    "BenchmarkIncomplete",
    "bench_hash",
    "benchmarked",
    "check_benchmarks",
    "run_benchmarks",
    "wanted",
]
