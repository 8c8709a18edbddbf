"""Weight-update anatomy's cost: the decompositions of one matrix, projected to LLaMA-7B.

    .venv/bin/python bench/anatomy_svd.py [--size 4096] [--repeats 3] [--device cpu|cuda]
        [--smoke]

Times `lorabench.anatomy.measures.anatomy_of` (one `svdvals` of ΔW, one SVD of the tuned and
one of the base weight) on a random float32 `--size` × `--size` base and a tuned weight near
it, and one `torch.linalg.svd` alone on the same base, each `--repeats` times after a small
untimed warm-up (library and kernel start-up); each figure is the median. `--device cuda`
measures on the GPU when there is one (synchronised before and after each timing), otherwise
on the CPU. No model, no pretrained base.

The 7B projection: LLaMA-7B's adapted matrices are 32 layers × 7 linear projections, 4
attention (4096 × 4096) and 3 MLP (4096 × 11008, or its transpose). An m × n SVD costs about
m·n·min(m, n) flops, so each matrix is the measured square time scaled by
m·n·min(m, n) / size³: an MLP matrix costs 11008/4096 ≈ 2.7 square ones. A rough figure (LAPACK's
and cuSOLVER's speed varies with the shape and the size), for whether a full 7B anatomy is
minutes or hours.

Prints `name=value` lines: `size=`, `repeats=`, `threads=` (torch's CPU threads), `device=`
(where it measured: cpu or cuda), `gpu=` (the GPU's name, or `unavailable`), `svd_seconds=`
(one full SVD), `anatomy_seconds=` (one `anatomy_of`), `matrices_7b=224`,
`projected_7b_seconds=` and `projected_7b_hours=` (`anatomy_of` on all 224 of LLaMA-7B's
matrices). About 5-10 minutes with the defaults on a 2-core CPU, seconds on a GPU; `--smoke`
runs it in seconds at size 256 (the same lines).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from benchutil import parse_with_smoke

from lorabench.anatomy.measures import anatomy_of

SMOKE = {"size": 256, "repeats": 1}

LAYERS_7B = 32
SHAPES_7B = ((4096, 4096),) * 4 + ((4096, 11008),) * 3
"""One LLaMA-7B layer's adapted projections: q, k, v, o; gate, up, down (down is 11008 × 4096,
the same cost)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="rows and columns of the matrices")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each (median)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to measure; cuda falls back to the CPU when there is no GPU",
    )
    args = parse_with_smoke(parser, argv, SMOKE)
    if args.size < 2 or args.repeats < 1:
        parser.error("--size must be >= 2 and --repeats >= 1")
    return args


def median_seconds(work: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The median wall time of `repeats` calls of `work`, the device synchronised around each."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        work()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def projected_7b_seconds(square_seconds: float, size: int) -> float:
    """`square_seconds` (one size × size matrix) scaled to LLaMA-7B's 224 matrices by the
    m·n·min(m, n) cost of an SVD."""
    per_layer = sum(m * n * min(m, n) for m, n in SHAPES_7B) / size**3
    return LAYERS_7B * per_layer * square_seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if args.device == "cuda" and gpu else "cpu")
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(args.size, args.size, generator=generator)
    tuned = base + 0.01 * torch.randn(args.size, args.size, generator=generator)
    base, tuned = base.to(device), tuned.to(device)

    small = base[:64, :64]
    anatomy_of(small, small + 1)  # warm-up: solver libraries, kernels, workspaces
    synchronize(device)
    svd_seconds = median_seconds(
        lambda: torch.linalg.svd(base, full_matrices=False), args.repeats, device
    )
    anatomy_seconds = median_seconds(lambda: anatomy_of(base, tuned), args.repeats, device)
    projected = projected_7b_seconds(anatomy_seconds, args.size)

    print(f"size={args.size}")
    print(f"repeats={args.repeats}")
    print(f"threads={torch.get_num_threads()}")
    print(f"device={device.type}")
    print(f"gpu={torch.cuda.get_device_name().replace(' ', '_') if gpu else 'unavailable'}")
    print(f"svd_seconds={svd_seconds:.3f}")
    print(f"anatomy_seconds={anatomy_seconds:.3f}")
    print(f"matrices_7b={LAYERS_7B * len(SHAPES_7B)}")
    print(f"projected_7b_seconds={projected:.0f}")
    print(f"projected_7b_hours={projected / 3600:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
