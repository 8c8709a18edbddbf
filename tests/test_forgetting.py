"""Learned and forgotten per run (lorabench.analysis.forgetting), read from synthetic benchmark
results in a real sqlite MLflow store: intervals against independent computations (scipy's
paired bootstrap, the normal approximation, hand cases), planted effects, skipped runs, the
report's section, the sweep parent's metrics, determinism. Every output under tmp_path."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from scipy import stats as sps

from lorabench import contract
from lorabench.analysis.benchmarks import BenchmarkError, Subject, load_subjects
from lorabench.analysis.findings import AGREES, CANNOT_TELL, DISAGREES
from lorabench.analysis.forgetting import (
    UNMOVED,
    Estimate,
    analyse,
    contrasts,
    estimate,
    perplexity_change,
    reading,
)
from lorabench.analysis.forgetting_section import FIGURE, SECTION_TITLE, forgetting_markdown
from lorabench.analysis.report import run, write_report
from lorabench.analysis.runs import BASE_METHOD, load_runs
from lorabench.analysis.sweep_records import record_forgetting
from lorabench.config.schema import ReportOptions, StatsConfig
from lorabench.tracking.parents import close_parent
from tests.helpers.analysis import assert_real_image, demo_run, experiment
from tests.helpers.benchmarks import (
    N_RETENTION,
    N_TARGET,
    RETENTION_TASK,
    TARGET_TASK,
    base_row,
    base_values,
    chained_run,
    in_memory,
    log_benchmarks,
    planted_results,
    tuned_run,
)

RET, TGT = contract.BENCH_ROLE_RETENTION, contract.BENCH_ROLE_TARGET
FAST = StatsConfig(bootstrap_samples=400, seed=3)
N_DOCS = 40


# Planted results --------------------------------------------------------------------------------


def world(shift: float) -> np.ndarray:
    """Per document (nll, tokens): `shift` nats more per token than the base's 2.0."""
    tokens = 50 + np.arange(N_DOCS) % 7 * 10
    noise = np.sin(np.arange(N_DOCS)) * 0.1
    return np.column_stack([(2.0 + shift + noise) * tokens, tokens])


def perplexity(docs: np.ndarray) -> float:
    return float(np.exp(docs[:, 0].sum() / docs[:, 1].sum()))


BASE = {RETENTION_TASK: (RET, base_values()[0]), TARGET_TASK: (TGT, base_values()[1])}
# LoRA forgets 15 of 210 at both sizes, FT 60 and 90; both learn the same number of items.
PLAN = {
    ("lora", "0.6m"): (15, 60, 1),
    ("ft", "0.6m"): (60, 60, 2),
    ("lora", "2m"): (15, 100, 3),
    ("ft", "2m"): (90, 100, 4),
}


def subject(name: str, bench, start, *, method="lora", data="2m", chained=False) -> Subject:
    return Subject(name, name, method, "tiny", data, 2000.0, chained, bench, start, start.run_name)


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory, empty_store_template) -> tuple[str, dict[str, str]]:
    """A store with a base row, LoRA and FT at two sizes (LoRA forgets less at equal learning),
    the §4.5 rows on FT(2M), a run without results and one whose base has no base row."""
    folder = tmp_path_factory.mktemp("forgetting")
    shutil.copyfile(empty_store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = experiment(client, "lorabench-demo", folder / "artifacts")
    ids = {"base": base_row(client, exp)}
    log_benchmarks(client, ids["base"], BASE, world(0.0))
    for (method, data), (lost, gained, seed) in PLAN.items():
        run_id = tuned_run(client, exp, method, data)
        log_benchmarks(client, run_id, planted_results(lost, gained, seed), world(0.05 * lost / 15))
        ids[f"{method}({data})"] = run_id
    for method, lost, seed in (("lora", 20, 5), ("ft", 20, 6)):  # §4.5: both forget alike
        run_id = chained_run(client, exp, ids["ft(2m)"], method)
        start = planted_results(*PLAN[("ft", "2m")])
        retention, target = start[RETENTION_TASK][1].copy(), start[TARGET_TASK][1].copy()
        right = np.flatnonzero(retention)
        retention[np.random.default_rng(seed).choice(right, lost, replace=False)] = 0
        results = {RETENTION_TASK: (RET, retention), TARGET_TASK: (TGT, target)}
        log_benchmarks(client, run_id, results, world(0.5))
        ids[f"chained {method}"] = run_id
    ids["unbenchmarked"] = tuned_run(client, exp, "lora", "4m")
    ids["no base row"] = demo_run(client, exp, "ft", "4m", more_tags={"base_model": "/else"})
    log_benchmarks(client, ids["no base row"], planted_results(10, 10, 7))
    return uri, ids


@pytest.fixture(scope="module")
def planted_runs(planted_store) -> pd.DataFrame:
    uri, _ = planted_store
    runs = load_runs(uri, "lorabench-demo")
    return runs[runs["method"] != BASE_METHOD]


@pytest.fixture(scope="module")
def analysed(planted_store, planted_runs):
    return analyse(load_subjects(planted_store[0], planted_runs), FAST)


def change_of(forgetting, name: str):
    (found,) = [c for c in forgetting.changes if c.subject.run_name == name]
    return found


# Intervals against independent computations -----------------------------------------------------


def test_one_task_interval_matches_scipys_paired_bootstrap():
    rng = np.random.default_rng(11)
    start = rng.binomial(1, 0.3, 250).astype(float)
    run = np.where(rng.random(250) < 0.25, 1.0, start)
    sides = (
        in_memory("run", {TARGET_TASK: (TGT, run)}),
        in_memory("base", {TARGET_TASK: (TGT, start)}),
    )
    many = StatsConfig(bootstrap_samples=20_000, seed=0)
    found = estimate(*contrasts(sides, (1, -1), TGT), many)

    reference = sps.bootstrap(
        (run, start),
        lambda a, b, axis: np.mean(a - b, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=20_000,
        method="percentile",
        confidence_level=0.95,
        random_state=np.random.default_rng(99),
    ).confidence_interval
    assert found.value == pytest.approx(np.mean(run - start))
    assert found.ci_low == pytest.approx(reference.low, abs=0.006)
    assert found.ci_high == pytest.approx(reference.high, abs=0.006)


def test_several_tasks_each_count_once_and_the_interval_is_the_normal_one():
    """Hand case: task A's 2 items gain 1 and 0, task B's 4 items 0, 0, 0, 1: the mean over
    tasks is (1/2 + 1/4) / 2 = 0.375, not the pooled 2/6. Large tasks: the interval's half
    width is 1.96 × sqrt(Σ var_t / n_t) / T (the bootstrap's variance, ddof 0)."""
    a, b = "task_a", "task_b"
    run = in_memory("run", {a: (TGT, [1, 0]), b: (TGT, [0, 0, 0, 1])})
    start = in_memory("start", {a: (TGT, [0, 0]), b: (TGT, [0, 0, 0, 0])})
    assert estimate(*contrasts((run, start), (1, -1), TGT), FAST).value == pytest.approx(0.375)

    rng = np.random.default_rng(5)
    diffs = {a: rng.normal(0.1, 1.0, 400), b: rng.normal(0.3, 2.0, 900)}
    run = in_memory("run", {t: (TGT, d) for t, d in diffs.items()})
    start = in_memory("start", {t: (TGT, np.zeros(len(d))) for t, d in diffs.items()})
    found = estimate(*contrasts((run, start), (1, -1), TGT), StatsConfig(bootstrap_samples=20_000))
    se = np.sqrt(sum(np.var(d) / len(d) for d in diffs.values())) / 2
    assert found.value == pytest.approx(np.mean([d.mean() for d in diffs.values()]))
    assert (found.ci_high - found.ci_low) / 2 == pytest.approx(1.96 * se, rel=0.05)


def test_items_are_paired_by_key_and_the_unpaired_counted():
    run = in_memory("run", {TARGET_TASK: (TGT, [1, 1, 1, 0])})
    start = in_memory("start", {TARGET_TASK: (TGT, [0, 1, 0])})  # no item -3
    values, dropped = contrasts((run, start), (1, -1), TGT)
    assert list(values[TARGET_TASK]) == [1, 0, 1] and dropped == 1
    assert (
        contrasts((run, start), (-1, 1), RET)
        == "no retention task in the results of `run` and `start`"
    )


def test_world_perplexity_change_matches_scipy():
    run, start = world(0.3), world(0.0)
    run[:, 0] += np.cos(np.arange(N_DOCS)) * 5  # documents differ in how much they change
    many = StatsConfig(bootstrap_samples=20_000, seed=0)
    found = perplexity_change(in_memory("r", {}, run), in_memory("s", {}, start), many)

    def change(nll_r, tok_r, nll_s, tok_s, axis=-1):
        ppl = lambda nll, tok: np.exp(nll.sum(axis=axis) / tok.sum(axis=axis))  # noqa: E731
        return ppl(nll_r, tok_r) - ppl(nll_s, tok_s)

    reference = sps.bootstrap(
        (run[:, 0], run[:, 1], start[:, 0], start[:, 1]),
        change,
        paired=True,
        vectorized=True,
        n_resamples=20_000,
        method="percentile",
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert found.value == pytest.approx(perplexity(run) - perplexity(start))
    assert found.ci_low == pytest.approx(reference.low, rel=0.03)
    assert found.ci_high == pytest.approx(reference.high, rel=0.03)
    assert found.items == N_DOCS and found.dropped == 0


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(planted_store, planted_runs):
    subjects = load_subjects(planted_store[0], planted_runs)
    first = analyse(subjects, FAST).changes
    again = analyse(list(reversed(subjects)), FAST).changes  # another order: the same
    other = analyse(subjects, StatsConfig(bootstrap_samples=400, seed=4)).changes
    by_name = {c.subject.run_name: c for c in again}
    for c in first:
        assert c.learned == by_name[c.subject.run_name].learned
        assert c.forgotten == by_name[c.subject.run_name].forgotten
    lora = [c for c in first if c.subject.run_name == "tiny+lora(2m)"][0]
    moved = [c for c in other if c.subject.run_name == "tiny+lora(2m)"][0]
    assert lora.forgotten.value == moved.forgotten.value
    assert (lora.forgotten.ci_low, lora.forgotten.ci_high) != (
        moved.forgotten.ci_low,
        moved.forgotten.ci_high,
    )


# Planted effects --------------------------------------------------------------------------------


def test_runs_read_against_their_start_give_the_planted_counts(analysed):
    for (method, data), (lost, gained, _) in PLAN.items():
        change = change_of(analysed, f"tiny+{method}({data})")
        assert change.subject.start_name == "tiny (base)"
        assert change.learned.value == pytest.approx(gained / N_TARGET)
        assert change.forgotten.value == pytest.approx(lost / N_RETENTION)
        assert change.learned.items == N_TARGET and change.forgotten.items == N_RETENTION
        assert change.world.value == pytest.approx(
            perplexity(world(0.05 * lost / 15)) - perplexity(world(0))
        )
        assert change.world.ci_low < change.world.value < change.world.ci_high
    chained = change_of(analysed, "tiny+ft(2m)+lora(math_0.25m)")
    assert chained.subject.start_name == "tiny+ft(2m)" and chained.subject.chained
    assert chained.learned.value == 0 and chained.forgotten.value == pytest.approx(20 / N_RETENTION)


def test_lora_forgetting_less_at_equal_learning_is_found(analysed):
    first_stage = [p for p in analysed.pairs if p.lora.subject.data in ("0.6m", "2m")]
    assert len(first_stage) == 2 and {p.kind for p in first_stage} == {"LoRA vs FT"}
    for pair in first_stage:
        assert pair.learned.value == pytest.approx(0) and pair.learned.side == 0
        assert pair.forgotten.ci_high < 0
        assert (pair.verdict, pair.reading) == (
            AGREES,
            "at equal learning, LoRA forgets less than FT",
        )
    (chained,) = [p for p in analysed.pairs if p.kind == "incremental LoRA vs incremental FT"]
    assert chained.verdict == CANNOT_TELL  # both forget 20 items of FT(2M)'s
    assert analysed.finding.verdict == CANNOT_TELL  # every pair must agree


def test_nothing_differing_cannot_tell():
    base = in_memory("base", BASE)
    lora = subject("tiny+lora(2m)", in_memory("tiny+lora(2m)", planted_results(30, 50, 1)), base)
    ft = subject(
        "tiny+ft(2m)", in_memory("tiny+ft(2m)", planted_results(30, 50, 2)), base, method="ft"
    )
    result = analyse([lora, ft], FAST)
    (pair,) = result.pairs
    assert pair.learned.value == pytest.approx(0) and pair.forgotten.value == pytest.approx(0)
    assert pair.verdict == CANNOT_TELL and result.finding.verdict == CANNOT_TELL
    assert "no difference in forgetting can be told" in pair.reading
    # No world documents on either side: no perplexity change, and nothing said about it.
    assert result.changes[0].world is None
    assert "no Δ world perplexity" not in forgetting_markdown(result)


def test_a_target_no_run_moved_cannot_tell_even_when_lora_forgets_less():
    """Neither run changes a target item (a target task beyond the models): equal learning at
    zero is no reading, however the forgetting differs."""
    base = in_memory("base", BASE)
    lora = subject("tiny+lora(2m)", in_memory("l", planted_results(10, 0, 1)), base)
    ft = subject("tiny+ft(2m)", in_memory("f", planted_results(90, 0, 2)), base, method="ft")
    (pair,) = analyse([lora, ft], FAST).pairs
    assert pair.forgotten.ci_high < 0  # LoRA forgets less: without the rule, "agrees"
    assert pair.verdict == CANNOT_TELL and pair.reading.startswith(UNMOVED)


def test_learning_less_and_forgetting_less_is_no_win():
    base = in_memory("base", BASE)
    lora = subject("tiny+lora(2m)", in_memory("l", planted_results(10, 20, 1)), base)
    ft = subject("tiny+ft(2m)", in_memory("f", planted_results(80, 120, 2)), base, method="ft")
    (pair,) = analyse([lora, ft], FAST).pairs
    assert (pair.verdict, pair.reading) == (
        CANNOT_TELL,
        "LoRA forgets less but also learns less than FT",
    )


@pytest.mark.parametrize(
    ("learned", "forgotten", "verdict"),
    [((-0.1, 0.1), (-0.2, -0.1), AGREES), ((0.1, 0.2), (-0.2, -0.1), AGREES),
     ((-0.1, 0.1), (0.1, 0.2), DISAGREES), ((-0.2, -0.1), (0.1, 0.2), DISAGREES),
     ((0.1, 0.2), (0.1, 0.2), CANNOT_TELL), ((-0.2, -0.1), (-0.1, 0.1), CANNOT_TELL)],
)  # fmt: skip
def test_the_reading_of_two_intervals(learned, forgotten, verdict):
    def est(bounds):
        return Estimate(sum(bounds) / 2, *bounds, items=10, dropped=0)

    assert reading(est(learned), est(forgotten))[0] == verdict


# Skipped runs, bad input ------------------------------------------------------------------------


def test_runs_without_results_or_start_are_listed_with_the_reason(analysed):
    unbenchmarked = change_of(analysed, "tiny+lora(4m)")
    assert "no benchmark results" in unbenchmarked.skipped
    assert unbenchmarked.learned is None and unbenchmarked.forgotten is None
    orphan = change_of(analysed, "tiny+ft(4m)")
    assert orphan.skipped == "no finished base row of its base model (base_model=/else)"
    # LoRA(4M) and FT(4M) pair, and the pair says why it cannot be read.
    (pair,) = [p for p in analysed.pairs if p.lora.subject.data == "4m"]
    assert pair.verdict == CANNOT_TELL and "not analysed" in pair.reading and pair.learned is None


def test_a_start_without_results_is_named(tmp_path, store, store_file):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    base_row(store, exp)  # evaluated, but never benchmarked
    run_id = tuned_run(store, exp, "lora", "2m")
    log_benchmarks(store, run_id, planted_results(10, 10, 1))
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    (found,) = load_subjects(f"sqlite:///{store_file}", runs[runs["method"] != BASE_METHOD])
    assert found.missing == "its starting run `tiny (base)` has no benchmark results"


def test_a_malformed_item_line_names_run_file_and_line(tmp_path, store, store_file):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    run_id = tuned_run(store, exp, "lora", "2m")
    log_benchmarks(store, run_id, planted_results(10, 10, 1))
    text = '{"item": "a", "value": 1}\n{"item": "b", "value": "high"}\n'
    store.log_text(run_id, text, contract.bench_items_artifact(TARGET_TASK))
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    with pytest.raises(BenchmarkError) as err:
        load_subjects(f"sqlite:///{store_file}", runs)
    assert str(err.value) == (
        "run `tiny+lora(2m)`, artifact benchmarks/lorabench_target/items.jsonl, line 2: "
        "`value` is 'high', not a finite number"
    )


# The report, the sweep's parent ---------------------------------------------------------------


def test_the_reports_section_shows_the_hand_counts(planted_store, tmp_path, analysed):
    uri, _ = planted_store
    runs = load_runs(uri, "lorabench-demo")
    files = write_report(
        runs, tmp_path / "report", items=None, forgetting=analysed, overlay_paper=False
    )
    text = files.report.read_text(encoding="utf-8")
    section = text[text.index(SECTION_TITLE) :]
    lora = change_of(analysed, "tiny+lora(0.6m)")
    row = next(line for line in section.splitlines() if line.startswith("| `tiny+lora(0.6m)`"))
    # 60 of 200 target items gained, 15 of 300 retention items lost: by hand.
    assert row.startswith(
        f"| `tiny+lora(0.6m)` | `tiny (base)` | +0.300 [{lora.learned.ci_low:+.3f}, "
    )
    assert f"| +0.050 [{lora.forgotten.ci_low:+.3f}, {lora.forgotten.ci_high:+.3f}] |" in row
    assert row.endswith(f"| {N_TARGET} / {N_RETENTION} / {N_DOCS} |")
    assert "- `tiny+lora(4m)`: no benchmark results" in section
    assert "**Finding**: At equal learning, LoRA forgets less than full fine-tuning" in section
    findings = (tmp_path / "report" / "findings.md").read_text(encoding="utf-8")
    assert "At equal learning, LoRA forgets less than full fine-tuning" in findings
    assert "agrees: LoRA vs FT: `tiny+lora(0.6m)` against `tiny+ft(0.6m)`" in findings
    assert_real_image(tmp_path / "report" / "figures" / f"{FIGURE}.png")
    table = pd.read_csv(tmp_path / "report" / contract.ARTIFACT_FORGETTING_RUNS)
    assert table.set_index("run").loc["tiny+ft(0.6m)", "forgotten"] == pytest.approx(
        60 / N_RETENTION
    )
    assert pd.isna(table.set_index("run").loc["tiny+lora(4m)", "learned"])  # never a 0


def test_a_sweep_logs_learned_and_forgotten_to_its_parent(planted_store, planted_runs):
    uri, ids = planted_store
    client = MlflowClient(uri)
    parent = client.create_run(client.get_run(ids["base"]).info.experiment_id, run_name="sweep",
                               tags={"sweep": "true"}).info.run_id  # fmt: skip
    runs = [client.get_run(r) for r in planted_runs["run_id"]]
    record_forgetting(client, parent, runs, FAST)
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
    metrics = client.get_run(parent).data.metrics
    name = "tiny+lora(2m)"
    assert metrics[contract.forgetting_metric(name, "learned")] == pytest.approx(100 / N_TARGET)
    assert metrics[contract.forgetting_ci_low(name, "forgotten")] < 15 / N_RETENTION
    assert contract.forgetting_metric("tiny+lora(4m)", "learned") not in metrics  # never a 0
    pair = "tiny+lora(2m) vs tiny+ft(2m)"
    assert metrics[contract.forgetting_ci_high(pair, "forgotten_difference")] < 0
    listed = {f.path for f in client.list_artifacts(parent, contract.ARTIFACT_FORGETTING_DIR)}
    assert listed == {contract.ARTIFACT_FORGETTING_RUNS, contract.ARTIFACT_FORGETTING_COMPARISONS}


@pytest.mark.slow
def test_the_report_command_reads_the_benchmarks_itself(planted_store, tmp_path):
    """`python -m lorabench.analysis` (its task, in process): the section from the store alone."""
    uri, _ = planted_store
    options = ReportOptions(
        experiment="lorabench-demo", out=str(tmp_path / "out"), tracking_uri=uri,
        statistics=False, overlay=False, log_to="none",
    )  # fmt: skip
    files = run(options)
    text = files.report.read_text(encoding="utf-8")
    assert SECTION_TITLE in text and "| `tiny+ft(2m)` | `tiny (base)` | +0.500 [" in text
    assert (tmp_path / "out" / contract.ARTIFACT_FORGETTING_COMPARISONS) in files.files


def test_closing_a_sweep_records_learned_and_forgotten(tmp_path, store):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    parent = store.create_run(exp, run_name="sweep", tags={"sweep": "true"}).info.run_id
    log_benchmarks(store, base_row(store, exp), BASE)
    for method, lost in (("lora", 10), ("ft", 40)):
        run_id = tuned_run(store, exp, method, "2m", parent=parent)
        log_benchmarks(store, run_id, planted_results(lost, 50, seed=lost))
    close_parent(store, parent, stats=FAST)
    metrics = store.get_run(parent).data.metrics
    assert metrics[contract.forgetting_metric("tiny+ft(2m)", "forgotten")] == pytest.approx(
        40 / 300
    )
    assert (
        contract.forgetting_metric("tiny+lora(2m) vs tiny+ft(2m)", "learned_difference") in metrics
    )
