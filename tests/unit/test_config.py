"""Settings: defaults derived from NURU_HOME, and one clear line naming a bad variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.errors import ConfigError


def test_defaults_live_under_nuru_home(nuru_home: Path) -> None:
    settings = get_settings()
    assert settings.nuru_home == nuru_home.resolve()
    assert settings.lake_url == f"file://{nuru_home.resolve()}/lake"
    assert settings.predictions_db_url == f"sqlite:///{nuru_home.resolve()}/predictions.db"
    assert settings.mlflow_tracking_uri == f"sqlite:///{nuru_home.resolve()}/mlflow.db"
    assert settings.scoring_shards == 4
    assert settings.validation_max_bad_share == pytest.approx(0.05)
    assert settings.forwarded_allow_ips == []  # nobody's X-Forwarded-For, loopback's neither


def test_forwarded_allow_ips_takes_addresses_networks_and_a_star(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", " 172.29.57.10, 10.0.0.0/8 ,::1,*")
    reset_settings()
    assert get_settings().forwarded_allow_ips == ["172.29.57.10", "10.0.0.0/8", "::1", "*"]


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("LAKE_URL", "ftp://somewhere", "LAKE_URL"),
        ("LAKE_URL", "s3://", "bucket"),
        ("PREDICTIONS_DB_URL", "mysql://x", "PREDICTIONS_DB_URL"),
        ("SCORING_SHARDS", "many", "SCORING_SHARDS"),
        ("VALIDATION_MAX_BAD_SHARE", "1.5", "VALIDATION_MAX_BAD_SHARE"),
        ("S3_ENDPOINT_URL", "minio:9000", "S3_ENDPOINT_URL"),
        ("FORWARDED_ALLOW_IPS", "172.29.57.10,nginx", "'nginx' is not an IP address"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    reset_settings()
    with pytest.raises(ConfigError) as error:
        get_settings()
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message
    assert error.value.exit_code == 2


def test_settings_are_not_built_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_URL", "ftp://bad")
    code = "import nuru_yield.config, nuru_yield.lake, nuru_yield.cli; print('imported')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout


def test_cli_prints_one_line_and_exit_code_2_for_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAKE_URL", "ftp://bad")
    result = subprocess.run(
        [sys.executable, "-m", "nuru_yield", "sample-data", "--plots", "10"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "LAKE_URL" in result.stderr
    assert "Traceback" not in result.stderr
