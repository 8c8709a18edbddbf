"""End to end: a 3-seed demo sweep of two points (LoRA and FT), judged by the reference judge
and, again, by the OpenAI judge over HTTP (a local fake server, with repeats), produces every
statistics section in the report and the statistics artifacts on the sweep's parent run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lorabench.config import compose, validate
from lorabench.evaluation import evaluate
from tests.helpers.cli import report_cli, run_cli
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import Action, FakeOpenAIServer
from tests.helpers.runs import runs_of

FAST = ("training.max_steps=6", "eval.demo_per_class=2", "eval.decoding.max_new_tokens=4")


def _hashed_score(body: dict) -> Action:
    """A reply whose score (0.0 .. 1.0) depends on the prompt: a judge that disagrees."""
    text = body["messages"][-1]["content"]
    score = int(hashlib.sha1(text.encode()).hexdigest(), 16) % 11 / 10
    return Action(content=f"得分：{score:.1f} 理由：合成的评分。")


@pytest.mark.slow
def test_seed_sweep_judged_twice_gives_every_statistics_section(
    tmp_path: Path, isolated, store, monkeypatch
) -> None:
    args = ["-m", "profile=demo", "method=lora,ft", "data=math_0.25m", "training.seed=1,2,3"]
    args += [a for a in isolated if not a.startswith("training.output_dir=")]
    args += [*FAST, f"training.output_dir={tmp_path}/out/${{run_name}}"]
    swept = run_cli("sweep.py", *args, cwd=tmp_path, timeout=1200)
    assert swept.returncode == 0, swept.stderr[-4000:]
    (parent,) = [r for r in runs_of(store) if r.data.tags.get("sweep") == "true"]
    stats = {a.path for a in store.list_artifacts(parent.info.run_id, "statistics")}
    assert {"statistics/replicates.csv", "statistics/comparisons.csv"} <= stats
    # The offline judge's runs cost nothing, and the sweep's total says so.
    assert parent.data.metrics["sweep/judge_cost_usd"] == 0
    # Its 6 runs' judge and its head-to-head judge.
    assert parent.data.tags["sweep_judge_cost"] == "$0.0000 over 7 judge ledgers"

    monkeypatch.setenv(KEY_ENV, "sk-test")
    children = [r for r in runs_of(store) if "sweep" not in r.data.tags]
    assert len(children) == 6
    with FakeOpenAIServer(api_key="sk-test", responder=_hashed_score) as server:
        judge = [
            "judge=openai",
            f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}",
        ]
        for run in children:
            overrides = [*isolated, *FAST, "profile=demo", f"run={run.info.run_id}"]
            evaluate(validate(compose([*overrides, *judge, "judge.repeats=2"])))

    out = tmp_path / "report"
    result = report_cli(
        f"parent_run={parent.info.run_id}",
        "experiment=lorabench-demo",
        f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"out={out}",
        "pairs=['tiny+lora(math_0.25m)[seed=1,steps=6] vs tiny+ft(math_0.25m)[seed=1,steps=6]']",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = (out / "report.md").read_text(encoding="utf-8")
    section = text[text.index("## Statistics") :]
    print(section)  # the section as a user sees it (pytest -s)
    assert "| `tiny+lora(math_0.25m)[steps=6]` | reference:f1 | 3 |" in section
    assert (
        "| LoRA vs FT | `tiny+lora(math_0.25m)[steps=6]` | `tiny+ft(math_0.25m)[steps=6]`"
        in section
    )
    assert "| named | `tiny+lora(math_0.25m)[seed=1,steps=6]`" in section
    assert "fewer than the curve's 2 parameters" in section  # one data size per method
    assert "| openai:gpt-3.5-turbo | reference:f1 | all |" in section
    assert "diff [openai:gpt-3.5-turbo]" in section and "diff [reference:f1]" in section
    assert "repeats measure only the server's nondeterminism" in section
    assert "Plain and length-adjusted averages" in section
    (out / "statistics-section.md").write_text(section, encoding="utf-8")
