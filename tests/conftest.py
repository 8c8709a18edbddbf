"""Shared fixtures: every test writes under its own tmp_path (outputs, MLflow store, caches).

Plain helpers (running the entry points, reading runs, the fake servers, tokenizers, synthetic
runs) are modules of tests/helpers/, imported as `tests.helpers.<module>`; no test imports from
another test file or from this one."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lorabench.config import Config, compose, validate
from lorabench.config.schema import TrackingConfig
from tests.helpers.benchmarks import NO_PANEL
from tests.helpers.checkout import REPO_ROOT, changes, folder_state
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV

PRETRAINED_DIR_ENV = "LORABENCH_PRETRAINED_DIR"

BELLE_DIR_ENV = "LORABENCH_BELLE_DIR"
"""Where BELLE's eval files are (third-party data: never in the repository)."""
BELLE_FILES = ("eval_set.json", "eval_prompt.json")

_CHECKOUT_STATE = pytest.StashKey[dict[str, str]]()


def _controller(session: pytest.Session) -> bool:
    return not hasattr(session.config, "workerinput")  # not a pytest-xdist worker


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session):
        session.config.stash[_CHECKOUT_STATE] = folder_state(REPO_ROOT)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session naming every file a test added, changed or removed in the checkout's
    runs or reports (`make demo`'s store and the user's own): a test's outputs belong under its
    tmp_path."""
    if not _controller(session) or _CHECKOUT_STATE not in session.config.stash:
        return
    found = changes(session.config.stash[_CHECKOUT_STATE], folder_state(REPO_ROOT))
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line("")
        reporter.write_sep("!", "tests changed the checkout's runs or reports", red=True)
        for line in found[:20]:
            reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def shared_pretrained_bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory of pretrained demo bases for the whole session (LORABENCH_PRETRAINED_DIR,
    which subprocesses inherit): the first test that needs the `tiny` base pretrains it, every
    later one loads it. A directory the developer already points at (their machine's) is kept.
    Under pytest-xdist the workers share one (the cache's build lock makes the others wait)."""
    if os.environ.get(PRETRAINED_DIR_ENV):
        yield Path(os.environ[PRETRAINED_DIR_ENV])
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The workers' temporary roots are siblings in one directory of the run.
        path = tmp_path_factory.getbasetemp().parent / "pretrained"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("pretrained")
    os.environ[PRETRAINED_DIR_ENV] = str(path)
    yield path
    del os.environ[PRETRAINED_DIR_ENV]


@pytest.fixture(scope="session", autouse=True)
def datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `datasets` cache the session's lm-eval tasks write their prepared data to: under the
    session's temporary root (HF_DATASETS_CACHE, which subprocesses inherit), never the user's
    ~/.cache. `datasets` reads the variable once, at import: its config is set too."""
    import datasets.config

    path = tmp_path_factory.getbasetemp() / "hf-datasets"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(path))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", path)
        yield path


@pytest.fixture(scope="session")
def belle_dir() -> Path:
    """BELLE's eval set and judge prompts (`eval_set.json`, `eval_prompt.json`) from
    LORABENCH_BELLE_DIR. Unset: the test skips, naming the variable; set to a directory without
    the files: the test fails, since that is a mistake rather than a choice."""
    value = os.environ.get(BELLE_DIR_ENV)
    if not value:
        wanted = " and ".join(BELLE_FILES)
        pytest.skip(f"{BELLE_DIR_ENV} is not set (a directory with BELLE's {wanted})")
    path = Path(value)
    missing = [name for name in BELLE_FILES if not (path / name).is_file()]
    if missing:
        pytest.fail(f"{BELLE_DIR_ENV}={path} lacks {', '.join(missing)}")
    return path


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh fake API key, exported as JUDGE_KEY_ENV for the test."""
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(JUDGE_KEY_ENV, key)
    return key


@pytest.fixture(scope="session")
def empty_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema created once (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store_file(tmp_path: Path, empty_store_template: Path) -> Path:
    """This test's own MLflow store file, a copy of the empty template."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store_template, path)
    return path


@pytest.fixture
def tracking(tmp_path: Path, store_file: Path) -> TrackingConfig:
    """A tracking config on a fresh store of the test's own (experiment `unit`)."""
    return TrackingConfig(
        tracking_uri=f"sqlite:///{store_file}",
        artifact_location=str(tmp_path / "artifacts"),
        experiment_name="unit",
    )


@pytest.fixture
def isolated(tmp_path: Path, store_file: Path) -> list[str]:
    """Overrides that send every output of a run into tmp_path; the demo's benchmark panel
    left out (seconds at every evaluation): the tests of the panel add `PANEL` after these."""
    return [
        f"training.output_dir={tmp_path}/out",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/artifacts",
        f"cache_dir={tmp_path}/cache",
        f"eval.output_dir={tmp_path}/eval",
        "training.progress_bar=false",
        *NO_PANEL,
    ]


@pytest.fixture
def demo_config(isolated: list[str]):
    """Build a validated demo-profile Config from extra overrides."""

    def make(*overrides: str) -> Config:
        return validate(compose(["profile=demo", *isolated, *overrides]))

    return make


@pytest.fixture
def store(store_file: Path) -> MlflowClient:
    """A client on the test's MLflow store."""
    return MlflowClient(f"sqlite:///{store_file}")


@pytest.fixture(scope="session")
def sp_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaMA-style SentencePiece tokenizer's folder (`tokenizer.model`, a LLaMA checkpoint's
    `tokenizer_config.json`), trained once per session on the demo corpus (well under a second)."""
    # Imported here: transformers and tokenizers take seconds, which a test run that does not
    # need this fixture should not pay.
    from tests.helpers.local_tokenizers import write_llama_style_model

    folder = tmp_path_factory.mktemp("llama-style-sp")
    write_llama_style_model(folder)
    return folder


@pytest.fixture(scope="session")
def sp_tokenizer(sp_folder: Path):
    """The LLaMA-style SentencePiece tokenizer, loaded as transformers loads a LLaMA checkpoint's
    (shared by the session's tests: read it, never change it)."""
    from tests.helpers.local_tokenizers import load_llama_style_tokenizer

    return load_llama_style_tokenizer(sp_folder)
