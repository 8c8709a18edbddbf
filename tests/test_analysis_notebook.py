"""analysis/scaling_trends.ipynb runs headless on a demo sweep's runs (nbclient), its
parameters injected into the cell tagged `parameters`, as papermill would; the sweep's parent
holds head-to-head verdicts, as the demo's does (`sweep.pairwise=true`), and its runs and their
base row benchmark results (`eval.benchmarks`)."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pandas as pd

from lorabench import contract
from lorabench.analysis.figures import FIGURES
from tests.helpers.analysis import assert_real_image, demo_sweep
from tests.helpers.benchmarks import BASE_WEIGHTS, base_row, log_benchmarks, planted_results
from tests.helpers.stats import pairwise_verdicts

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "scaling_trends.ipynb"


def execute(path: Path, parameters: dict[str, object], cwd: Path):
    """Run a notebook with its `parameters` cell replaced by these assignments."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


def test_notebook_on_a_demo_sweep(store, store_file, tmp_path):
    parent, children = demo_sweep(store, tmp_path / "artifacts")
    labels = ["B", "B", "tie", "A", "B", "B"]
    verdicts = pairwise_verdicts(labels, labels, run_a="tiny+lora(2m)", run_b="tiny+ft(2m)")
    store.log_text(parent, verdicts.to_csv(index=False), contract.ARTIFACT_PAIRWISE_VERDICTS)
    experiment_id = store.get_run(parent).info.experiment_id
    log_benchmarks(store, base_row(store, experiment_id), planted_results(0, 0, seed=0))
    for k, child in enumerate(children):
        store.set_tag(child, contract.TAG_BASE_MODEL, BASE_WEIGHTS)
        log_benchmarks(store, child, planted_results(5 * k, 10 * k, seed=k))
    out = tmp_path / "out"
    nb = execute(
        NOTEBOOK,
        {
            "tracking_uri": f"sqlite:///{store_file}",
            "experiment": "lorabench-demo",
            "parent_run_id": parent,
            "out_dir": str(out),
            "overlay_paper": True,
            "paper_model": None,
        },
        cwd=NOTEBOOK.parent,
    )
    for name in FIGURES:
        assert_real_image(out / "figures" / f"{name}.png")
        assert_real_image(out / "figures" / f"{name}.svg")
    for name in ("table4.csv", "appendix.csv", "runs.csv"):
        table = pd.read_csv(out / name)
        assert sorted(table["run_id"]) == sorted(children)  # one row per run
    rows = [line for line in (out / "table4.md").read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == len(children)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # The report's figures, then the head-to-head cell's win-rate matrix and learned/forgotten.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURES) + 2
    assert_real_image(out / "figures" / "pairwise_win_rates.png")
    assert_real_image(out / "figures" / "forgetting.png")
