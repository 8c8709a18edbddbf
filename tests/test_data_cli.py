"""`python -m lorabench.data …` as a user runs it: a summary, then a cache hit; bad data ends
with the error alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench.cli import prepare_main, prepared_summary
from lorabench.config import compose, validate
from tests.helpers.checkout import REPO_ROOT


def summary(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_prepare_prints_a_summary_then_hits_the_cache(tmp_path: Path) -> None:
    args = ["profile=demo", "data=0.6m", f"cache_dir={tmp_path}/cache"]

    first = subprocess.run(
        [sys.executable, "-m", "lorabench.data", *args],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert first.returncode == 0, first.stderr
    lines = summary(first.stdout)
    assert lines["data"] == "0.6m"
    assert lines["rows_read"] == lines["rows_valid"] == lines["rows_kept"] == "300"
    assert lines["skipped_bad_json"] == lines["skipped_no_trainable_token"] == "0"
    assert int(lines["tokens"]) > 300 and float(lines["mean_length"]) > 1
    assert float(lines["p95_length"]) >= float(lines["mean_length"])
    assert 0.5 < float(lines["nonpad_share_grouped"]) <= 1
    assert Path(lines["cache_path"]).parent == tmp_path / "cache" / "data"
    assert lines["cache_hit"] == "false"
    assert "tokenising" in first.stderr  # the progress bar

    again = prepared_summary(validate(compose(args)))  # the same set again, in this process
    assert summary("\n".join(again)) == {**lines, "cache_hit": "true"}
    # Hydra's own files stay under the directory the command ran in, which it did not leave.
    assert list((tmp_path / "outputs" / "hydra").glob("*/__main__.log"))


def test_bad_data_ends_with_the_error_alone(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"instruction": "q", "output": "a"}\nnot json\n')
    overrides = [
        "model=tiny",
        "hardware=cpu",
        f"data.sources=[{{path: '{source}'}}]",
        "data.num_samples=null",
        f"cache_dir={tmp_path}/cache",
    ]
    with pytest.raises(SystemExit) as ended:
        prepare_main(compose(overrides))
    # sys.exit with a message: Python prints it alone on stderr and exits with code 1.
    assert ended.value.code.startswith(f"error: {source}: 1 of 2 rows fail validation")
    assert "lines 2 (bad_json)" in ended.value.code
