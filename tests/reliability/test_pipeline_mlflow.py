"""MLflow faults: a tracking server that refuses connections or never answers, a corrupt
store, a model version whose artifacts are gone or garbage. Each is one ``error:`` line in
seconds (the CLI, a real process), and the Airflow retry policy retries an unreachable
server once and a broken registry never."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from nuru_yield.cli import main
from nuru_yield.dev.local_services import free_port
from nuru_yield.errors import RegistryError, RegistryUnavailableError
from tests.fixtures.scoring import RUN_DATE, Registry, write_features
from tests.reliability.pipeline_support import error_lines, runs, score_cli

# A hang detector, not a speed goal: the bound is what "in seconds" must never exceed even
# on a busy 2-core machine (MLflow's own defaults took minutes here).
HANG_SECONDS = 60


def _timed_score(env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    code, _, err = score_cli(env=env)
    return code, err, time.monotonic() - started


def test_a_tracking_server_refusing_connections_is_one_line_in_seconds() -> None:
    write_features()
    uri = f"http://127.0.0.1:{free_port()}"

    code, err, seconds = _timed_score({"MLFLOW_TRACKING_URI": uri})

    print(f"refused tracking server: error after {seconds:.1f}s")  # measured, for the report
    assert code == 1
    assert error_lines(err) == [
        f"error: MLflow tracking server {uri} unreachable: connection refused"
    ]
    assert "Retrying" not in err  # no storm of client retries in the log
    assert seconds < HANG_SECONDS


def test_a_tracking_server_that_never_answers_times_out_in_one_line() -> None:
    write_features()
    with socket.socket() as silent:  # accepts connections (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, err, seconds = _timed_score(
            {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REQUEST_TIMEOUT_SECONDS": "2"}
        )

    print(f"silent tracking server: error after {seconds:.1f}s")
    assert code == 1
    assert error_lines(err) == [
        f"error: MLflow tracking server {uri} unreachable: no answer within 2s"
    ]
    assert seconds < HANG_SECONDS


def test_a_corrupt_store_is_one_line(nuru_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_features()
    (nuru_home / "mlflow.db").write_bytes(b"\x00garbage, not a database" * 100)

    with pytest.raises(SystemExit) as exited:
        main(["score", "--date", str(RUN_DATE)])

    assert exited.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: the MLflow store sqlite:///{nuru_home / 'mlflow.db'} is corrupt: "
        "not a SQLite database"
    )


def _champion_artifacts(nuru_home: Path, registry: Registry, copy: Path) -> Path:
    """Point the champion version at a copy of its artifacts (the originals are shared by
    every test of the session); returns the copy."""
    from nuru_yield.names import MODEL_NAME

    with sqlite3.connect(nuru_home / "mlflow.db") as connection:
        key = (MODEL_NAME, int(registry.champion))
        (location,) = connection.execute(
            "SELECT storage_location FROM model_versions WHERE name = ? AND version = ?", key
        ).fetchone()
        shutil.copytree(urlparse(location).path, copy)
        connection.execute(
            "UPDATE model_versions SET storage_location = ? WHERE name = ? AND version = ?",
            (copy.as_uri(), *key),
        )
    return copy


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_missing_or_corrupt_model_artifacts_are_one_line_and_a_failed_run(
    registry: Registry,
    nuru_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    write_features()
    artifacts = _champion_artifacts(nuru_home, registry, tmp_path / "artifacts")
    main(["score", "--date", str(RUN_DATE), "--shards", "1"])  # the copy is what scores
    capsys.readouterr()
    if damage == "missing":
        shutil.rmtree(artifacts)
    else:
        (artifacts / "model.skops").write_bytes(b"PK\x03\x04 not a zip archive at all")

    with pytest.raises(SystemExit) as exited:
        main(["score", "--date", str(RUN_DATE), "--shards", "1"])

    assert exited.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"error: loading Ensemble_VotingRegressor v{registry.champion} (@champion) failed "
    )
    statuses = [row.status for row in runs().values()]
    assert statuses == ["success", "failed"]  # the served night stays the first run's


def test_the_retry_policy_retries_an_unreachable_registry_once_and_a_broken_one_never() -> None:
    from nuru_yield.orchestration import default_args

    policy = default_args["retry_policy"]
    down = RegistryUnavailableError("MLflow tracking server http://mlflow:5000 unreachable")
    first = policy.evaluate(down, 1, 3)
    assert first.action.value == "retry" and first.retry_delay == dt.timedelta(minutes=5)
    assert policy.evaluate(down, 2, 3).action.value == "fail"
    assert policy.evaluate(RegistryError("store is corrupt"), 1, 3).action.value == "fail"
