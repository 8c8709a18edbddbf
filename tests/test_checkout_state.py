"""The session check that keeps tests out of the user's runs and reports (conftest's
pytest_sessionfinish) sees every kind of change under those folders, and nothing else."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.checkout import changes, folder_state


def test_a_file_added_changed_or_removed_under_the_user_folders_is_reported(
    tmp_path: Path,
) -> None:
    (tmp_path / "mlruns" / "artifacts").mkdir(parents=True)
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"store")
    (tmp_path / "reports" / "demo").mkdir(parents=True)
    (tmp_path / "reports" / "demo" / "report.md").write_text("# report")
    (tmp_path / "lorabench").mkdir()
    before = folder_state(tmp_path)

    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"store with one more run")
    (tmp_path / "mlruns" / "artifacts" / "abc").mkdir()
    (tmp_path / "mlruns" / "artifacts" / "abc" / "adapter.bin").write_bytes(b"w")
    (tmp_path / "reports" / "demo" / "report.md").unlink()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "train.log").write_text("log")
    (tmp_path / "lorabench" / "not_a_user_folder.py").write_text("")

    assert changes(before, folder_state(tmp_path)) == [
        "added mlruns/artifacts/abc/adapter.bin",
        "changed mlruns/mlflow.db",
        "added outputs/train.log",
        "removed reports/demo/report.md",
    ]


def test_untouched_folders_report_nothing(tmp_path: Path) -> None:
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"store")
    assert changes(folder_state(tmp_path), folder_state(tmp_path)) == []
