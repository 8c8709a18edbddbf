"""What sweep.py costs per grid point, and how long the whole demo sweep takes.

    .venv/bin/python bench/sweep_overhead.py [--repeats 3] [--steps 6] [--no-demo] [--keep DIR]
        [--smoke]
    .venv/bin/python bench/sweep_overhead.py --repeats 0          # the demo sweep alone

overhead: the same grid points (method=lora,ft × data=0.6m,math_0.25m on the demo profile,
`--steps` optimiser steps, one eval item per class, 4 new tokens) run two ways, each as one
fresh Python process, so that both pay one interpreter start-up and the imports:

* sweep: `python sweep.py -m ...` with the default (sequential) launcher: Hydra's multirun,
  the sweep's parent MLflow run, the skip check of every point (an MLflow search), a config
  composed per job, the per-job log files;
* direct: `python bench/sweep_overhead.py --direct ...`, a loop that composes each point's
  config and calls `lorabench.training.train` then `lorabench.evaluation.evaluate` on it, as a
  hand-written script would, with the process settings the CLI gives every point (its
  `hardware.cpu_threads`, the console's quiet libraries): both sides compute alike.

Both start from a copy of one empty MLflow store (schema creation stays out of both) and share a
data / tokenizer cache warmed by one untimed direct run first; every run trains into fresh
output directories. The repetitions alternate which side goes first; each side's figure is its
median. `overhead_seconds_per_point` = (sweep - direct) / points; the target is < 1 s.

demo: the README's demo sweep, `python sweep.py -m method=lora,ft data=0.6m,2m,4m
profile=demo`, cold (a new store, an empty cache), with every output in the temporary
directory. `demo_sweep_seconds` is its wall time (target <= 360 s on a 2-core CPU); the run
lines split each point into training (from its run's start to its summary metrics, data
preparation and the model build included) and evaluation (generation and judging, until the run
closes), read back from MLflow; `demo_bench_seconds` is the benchmark panel's part of the
evaluations (`bench/seconds` summed over the sweep's runs). Cold includes the demo's tiny base:
the sweep pretrains it first (about 1.5 min, within `demo_other_seconds`;
`demo_pretraining_seconds` is its run's time), unless LORABENCH_PRETRAINED_DIR holds it (then
`demo_pretraining_seconds=0.0`). Without that variable the overhead part's untimed warm-up
pretrains one of its own as well.

Prints `name=value` lines. Everything is written to a temporary directory, removed at the end
unless `--keep` names one. About 8-10 minutes with the defaults on a 2-core CPU. `--smoke` checks
that it all runs, in a few minutes: one repetition of one-step points, and the demo sweep's
points cut to one step and one eval item per class (the same lines).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import parse_with_smoke

from lorabench import contract

REPO = Path(__file__).resolve().parents[1]
GRID = {"method": ["lora", "ft"], "data": ["0.6m", "math_0.25m"]}
DEMO_GRID = ["method=lora,ft", "data=0.6m,2m,4m", "profile=demo"]
SMOKE = {"repeats": 1, "steps": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side (0: demo sweep only)"
    )
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per grid point")
    parser.add_argument("--no-demo", action="store_true", help="skip the full demo sweep")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--direct", nargs="+", help=argparse.SUPPRESS)
    return parse_with_smoke(parser, argv, SMOKE)


def point_overrides(method: str, data: str) -> list[str]:
    return [f"method={method}", f"data={data}"]


def tiny_points(steps: int) -> list[str]:
    """Points of `steps` optimiser steps, evaluated on one item per class, 4 new tokens."""
    return [
        f"training.max_steps={steps}",
        "eval.demo_per_class=1",
        "eval.decoding.max_new_tokens=4",
    ]


def common_overrides(root: Path, store: Path, cache: Path, steps: int) -> list[str]:
    """Tiny points, every output under `root`, the MLflow store `store`."""
    return [
        "profile=demo",
        *tiny_points(steps),
        "training.progress_bar=false",
        f"training.output_dir={root}/out/${{run_name}}",
        f"tracking.tracking_uri=sqlite:///{store}",
        f"tracking.artifact_location={root}/artifacts",
        f"cache_dir={cache}",
        f"eval.output_dir={root}/eval",
    ]


def run_direct(common: list[str]) -> None:
    """The hand-written alternative to sweep.py: train then evaluate each point in turn."""
    from omegaconf import OmegaConf

    from lorabench.config import compose, validate
    from lorabench.console import quiet_libraries
    from lorabench.evaluation import evaluate
    from lorabench.launching.topology import set_cpu_threads
    from lorabench.training import train

    # As the sweep's jobs: without them this side would train with PyTorch's default threads
    # (the demo asks for one), which on a busy CPU is several times slower, not overhead.
    quiet_libraries()
    for method in GRID["method"]:
        for data in GRID["data"]:
            cfg = validate(compose([*common, *point_overrides(method, data)]))
            set_cpu_threads(cfg.hardware)
            run_id = train(cfg).run_id
            evaluate(validate(OmegaConf.merge(OmegaConf.structured(cfg), {"run": run_id})))


def timed(command: list[str], log: Path) -> float:
    """Wall seconds of one process; its output goes to `log`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(command, cwd=log.parent, env=env, stdout=out, stderr=out)
    seconds = time.perf_counter() - start
    if code:
        sys.exit(
            f"{' '.join(command[:3])} ... failed ({code}); see {log}:\n{log.read_text()[-3000:]}"
        )
    return seconds


def empty_store(path: Path) -> Path:
    """An MLflow sqlite store with its tables created."""
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def side(name: str, work: Path, template: Path, cache: Path, steps: int, rep: int) -> float:
    root = work / f"{name}-{rep}"
    root.mkdir()
    store = shutil.copyfile(template, root / "mlflow.db")
    common = common_overrides(root, store, cache, steps)
    if name == "sweep":
        grid = [f"{key}={','.join(values)}" for key, values in GRID.items()]
        sweep_dir = f"hydra.sweep.dir={root}/multirun"
        command = [sys.executable, str(REPO / "sweep.py"), "-m", *grid, *common, sweep_dir]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--direct", *common]
    return timed(command, root / "log.txt")


def overhead(work: Path, repeats: int, steps: int) -> None:
    points = len(GRID["method"]) * len(GRID["data"])
    template = empty_store(work / "template.db")
    cache = work / "cache"
    side("direct", work, template, cache, steps, rep=-1)  # warm the data and tokenizer caches
    times: dict[str, list[float]] = {"sweep": [], "direct": []}
    for rep in range(repeats):
        order = ("sweep", "direct") if rep % 2 == 0 else ("direct", "sweep")
        for name in order:
            times[name].append(side(name, work, template, cache, steps, rep))
            print(f"{name}_seconds_run{rep}={times[name][-1]:.1f}", flush=True)
    sweep, direct = statistics.median(times["sweep"]), statistics.median(times["direct"])
    print(f"points={points}")
    print(f"sweep_seconds={sweep:.1f}")
    print(f"direct_seconds={direct:.1f}")
    print(f"overhead_seconds_per_point={(sweep - direct) / points:.2f}")


def demo(work: Path, overrides: list[str]) -> None:
    """Run the README's demo sweep cold, with `overrides`; print its time and each point's."""
    root = work / "demo"
    root.mkdir()
    store = f"sqlite:///{root}/mlflow.db"
    command = [
        sys.executable,
        str(REPO / "sweep.py"),
        "-m",
        *DEMO_GRID,
        *overrides,
        f"training.output_dir={root}/out/${{run_name}}",
        f"tracking.tracking_uri={store}",
        f"tracking.artifact_location={root}/artifacts",
        f"cache_dir={root}/cache",
        f"eval.output_dir={root}/eval",
        f"hydra.sweep.dir={root}/multirun",
    ]
    seconds = timed(command, root / "log.txt")
    print(f"demo_sweep_seconds={seconds:.1f}", flush=True)
    report_demo(store, seconds)


def is_point(run) -> bool:
    """A grid point's run: not the sweep's parent run, nor a base's (tag `run_kind`: its
    pretraining, e.g. `tiny (pretraining)`, or its evaluation)."""
    tags = run.data.tags
    return contract.TAG_SWEEP not in tags and contract.TAG_RUN_KIND not in tags


def report_demo(store: str, seconds: float) -> None:
    """Each demo point's steps, training and evaluation seconds, read back from MLflow; the
    totals, and the base's pretraining if the sweep made it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lorabench-demo")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    kind = contract.TAG_RUN_KIND
    pretraining = [r for r in runs if r.data.tags.get(kind) == contract.RUN_KIND_PRETRAINING]
    totals = {"train": 0.0, "eval": 0.0}
    bench = sum(r.data.metrics.get(contract.BENCH_SECONDS, 0.0) for r in runs)
    for run in filter(is_point, runs):
        trained = client.get_metric_history(run.info.run_id, "model/total_params")[-1].timestamp
        split = {
            "train": (trained - run.info.start_time) / 1000,
            "eval": (run.info.end_time - trained) / 1000,
        }
        steps = max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
        parts = contract.parse_run_name(run.info.run_name)
        key = f"{parts['method']}_{parts['data']}"
        print(f"demo_{key}_steps={steps}")
        print(f"demo_{key}_train_seconds={split['train']:.1f}")
        print(f"demo_{key}_eval_seconds={split['eval']:.1f}")
        for part in totals:
            totals[part] += split[part]
    pretrained = sum((r.info.end_time - r.info.start_time) / 1000 for r in pretraining)
    print(f"demo_train_seconds={totals['train']:.1f}")
    print(f"demo_eval_seconds={totals['eval']:.1f}")
    print(f"demo_bench_seconds={bench:.1f}")
    print(f"demo_pretraining_seconds={pretrained:.1f}")
    print(f"demo_other_seconds={seconds - totals['train'] - totals['eval']:.1f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.direct:
        run_direct(args.direct)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="sweep_overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"repeats={args.repeats}")
        print(f"steps={args.steps}")
        # Other processes on the machine slow every figure: a load well above 0 here says so.
        print(f"cpus={os.cpu_count()}")
        print(f"load_average_start={os.getloadavg()[0]:.2f}", flush=True)
        if args.repeats > 0:
            overhead(work, args.repeats, args.steps)
        if not args.no_demo:
            demo(work, tiny_points(args.steps) if args.smoke else [])
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
