"""Generation backends side by side: answers/s of the HF backend and of the server backend on
the same tiny model and the same items, in one run.

    .venv/bin/python bench/generation_backends.py [--items 40] [--new-tokens 32] [--concurrency 8]
        [--smoke]

The demo's tiny base, with the pretrained weights training starts from
(`lorabench.demo.pretraining.resolved_model`: pretrained into the temporary directory first,
about 1.5 min
and untimed, unless LORABENCH_PRETRAINED_DIR holds it), is saved as a model directory with the
project tokenizer. The HF backend (`eval.backend=hf`) generates `--items` demo eval questions in
this process, batched (`--batch-size`, left padding); the server backend (`eval.backend=server`)
sends the same questions as token-id prompts through the openai client, `--concurrency` in
flight, to the test suite's completions server (`tests/helpers/completions_server.py`, real HTTP on
127.0.0.1, in its own process) serving that directory. Both use the paper's decoding with
`--new-tokens` new tokens at most.

On a CPU this says little about GPUs: the test server generates one request at a time with
transformers, while vLLM batches the requests in flight continuously with paged attention, the
reason to use it for 1,000 answers of up to 1,024 tokens from a 7B model. What it does show is
the cost of the HTTP round trips and the client relative to generation itself.

Prints `name=value` lines: the settings, `hf_seconds=`, `hf_answers_per_second=`,
`server_seconds=`, `server_answers_per_second=`, `server_to_hf=` (the ratio of the rates), and
`identical_answers=` (how many answers the two backends agree on; nearly greedy decoding, so
most, but batched and single-sequence arithmetic may part at a near tie). `--smoke` runs it
in seconds on tiny sizes (the same lines).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchutil import demo_base, demo_config, parse_with_smoke  # noqa: E402

from lorabench.config.schema import DecodingConfig, ServerConfig  # noqa: E402
from lorabench.demo.corpus import generate_eval_set  # noqa: E402
from lorabench.evaluation.generation import generate_answers  # noqa: E402
from lorabench.evaluation.server_generation import ServerGenerator  # noqa: E402

SERVER_START_TIMEOUT = 300
"""Seconds for the server process to load torch and the model on a busy machine."""
SMOKE = {"items": 4, "new_tokens": 4, "batch_size": 2, "concurrency": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parse_with_smoke(parser, argv, SMOKE)
    if min(args.items, args.new_tokens, args.batch_size, args.concurrency) < 1:
        parser.error("every count must be >= 1")
    return args


@contextmanager
def completions_server(model_dir: Path) -> Iterator[str]:
    """The test completions server in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "tests" / "helpers" / "completions_server.py"),
            str(model_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving NAME at URL", once the model is loaded
        if " at " not in line:
            raise RuntimeError(f"the completions server did not start: {line!r}")
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=SERVER_START_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lorabench-gen-bench-") as folder:
        tokenizer, model = demo_base(demo_config(Path(folder) / "cache"))
        model_dir = Path(folder) / "model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        rows = generate_eval_set(-(-args.items // 10), seed=0)[: args.items]
        questions = [row["question"] for row in rows]
        decoding = DecodingConfig(max_new_tokens=args.new_tokens)
        print(f"items={len(questions)} new_tokens={args.new_tokens}")
        print(f"batch_size={args.batch_size} concurrency={args.concurrency}", flush=True)

        start = time.perf_counter()
        hf = {
            a.index: a.text
            for a in generate_answers(
                model, tokenizer, questions, decoding, batch_size=args.batch_size, progress=False
            )
        }
        hf_seconds = time.perf_counter() - start

        with completions_server(model_dir) as url:
            server = ServerConfig(url=url, concurrency=args.concurrency)
            generator = ServerGenerator(server, url, str(model_dir), tokenizer, decoding, seed=42)
            generator.preflight()
            start = time.perf_counter()
            served = {a.index: a.text for a in generator.generate(questions, progress=False)}
            server_seconds = time.perf_counter() - start

    n = len(questions)
    print(f"hf_seconds={hf_seconds:.1f}")
    print(f"hf_answers_per_second={n / hf_seconds:.2f}")
    print(f"server_seconds={server_seconds:.1f}")
    print(f"server_answers_per_second={n / server_seconds:.2f}")
    print(f"server_to_hf={hf_seconds / server_seconds:.2f}")
    print(f"identical_answers={sum(hf[i] == served[i] for i in range(n))}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
