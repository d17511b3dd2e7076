"""Passwords never shown: one function (``mask_passwords``) serves settings errors, CLI error
lines, the CLI's and the API server's log lines, API error bodies, ``/health`` reasons and
the demo's output. Each place is checked with a URL that carries a password."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.errors import ConfigError, DatabaseError, MaskingFormatter, mask_passwords
from nuru_yield.serving.probes import RegistrySnapshot
from tests.integration.test_api_support import PredictionsDb, serving

SECRET = "SuperSecretPw"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"invalid setting PREDICTIONS_DB_URL='mysql://nuru:{SECRET}@db:3306/nuru': bad",
            "invalid setting PREDICTIONS_DB_URL='mysql://nuru:***@db:3306/nuru': bad",
        ),
        (f"postgresql+psycopg2://nuru:{SECRET}@db/nuru", "postgresql+psycopg2://nuru:***@db/nuru"),
        (
            f"http://admin:{SECRET}@mlflow:5000/api failed",
            "http://admin:***@mlflow:5000/api failed",
        ),
        (f"postgresql://u:p@ss/w#{SECRET}@db/x", "postgresql://u:***@db/x"),  # unescaped @ / #
        (f"postgresql://:{SECRET}@db/x", "postgresql://:***@db/x"),
        (f"s3://bucket/k?X-Amz-Signature={SECRET}&a=1", "s3://bucket/k?X-Amz-Signature=***&a=1"),
        (f"postgresql://db/x?password={SECRET}", "postgresql://db/x?password=***"),
        # Nothing to mask: left as is.
        ("postgresql://nuru@db:5432/nuru", "postgresql://nuru@db:5432/nuru"),
        ("http://mlflow:5000/api/2.0", "http://mlflow:5000/api/2.0"),
        ("scored 20,000 plots", "scored 20,000 plots"),
    ],
)
def test_mask_passwords(text: str, masked: str):
    assert mask_passwords(text) == masked


def test_a_settings_error_shows_no_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREDICTIONS_DB_URL", f"mysql://nuru:{SECRET}@db.example:3306/nuru")
    reset_settings()
    with pytest.raises(ConfigError) as error:
        get_settings()
    assert str(error.value).startswith("invalid setting PREDICTIONS_DB_URL='mysql://nuru:***@")
    assert SECRET not in str(error.value)


def test_a_settings_error_on_a_secret_shows_no_value(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", SECRET)
    monkeypatch.setenv("ALERT_SMTP_PORT", "not-a-port")  # the first error: not the secret
    reset_settings()
    with pytest.raises(ConfigError, match="ALERT_SMTP_PORT='not-a-port'"):
        get_settings()
    from nuru_yield.config import Settings, _first_error_line

    with pytest.raises(Exception) as error:
        Settings.model_validate({"api_key": 12345})  # a secret that fails validation
    assert "API_KEY=***" in _first_error_line(error.value)
    assert "12345" not in _first_error_line(error.value)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PREDICTIONS_DB_URL",)}
    return subprocess.run(
        [str(Path(sys.executable).with_name("nuru-yield")), *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_error_lines_show_no_password(tmp_path: Path):
    bad_setting = _cli(
        "db", "upgrade", NURU_HOME=str(tmp_path), PREDICTIONS_DB_URL=f"mysql://nuru:{SECRET}@db/x"
    )
    assert bad_setting.returncode == 2
    assert bad_setting.stderr.startswith(
        "error: invalid setting PREDICTIONS_DB_URL='mysql://nuru:***@"
    )
    unreachable = f"postgresql+psycopg2://nuru:{SECRET}@127.0.0.1:1/nuru"
    down = _cli("db", "upgrade", NURU_HOME=str(tmp_path), PREDICTIONS_DB_URL=unreachable)
    assert down.returncode == 1
    assert "nuru:***@127.0.0.1:1/nuru" in down.stderr
    assert SECRET not in bad_setting.stderr + down.stderr
    assert "Traceback" not in down.stderr


_LOG_A_URL = f"""
import logging, sys
from nuru_yield.cli import _configure
_configure(verbose=False)
log = logging.getLogger("nuru_yield.test")
log.warning("connecting to %s", "postgresql://nuru:{SECRET}@db/nuru")
try:
    raise RuntimeError("could not open http://admin:{SECRET}@mlflow:5000")
except RuntimeError:
    log.exception("failed")
"""

_SERVE_LOGGING = f"""
import logging, logging.config
from nuru_yield.serving.app import LOG_CONFIG
logging.config.dictConfig(LOG_CONFIG)
for name in ("uvicorn.error", "nuru_yield.serving.app"):
    logging.getLogger(name).error("from %s: postgresql://nuru:{SECRET}@db/nuru", name)
"""


@pytest.mark.parametrize("program", [_LOG_A_URL, _SERVE_LOGGING], ids=["cli", "serve"])
def test_log_lines_show_no_password(program: str, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "***@" in result.stderr
    assert SECRET not in result.stderr


def test_the_masking_formatter_masks_tracebacks_too():
    try:
        raise ValueError(f"bad URL postgresql://u:{SECRET}@h/d")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    line = MaskingFormatter("%(message)s").format(record)
    assert "postgresql://u:***@h/d" in line
    assert SECRET not in line


def test_api_error_bodies_health_reasons_and_models_show_no_password(
    monkeypatch: pytest.MonkeyPatch, nuru_home: Path, caplog: pytest.LogCaptureFixture
):
    registry = RegistrySnapshot.unreachable(f"ConnectionError: http://admin:{SECRET}@mlflow:5000")
    db = PredictionsDb(f"sqlite:///{nuru_home / 'predictions.db'}")
    with serving(monkeypatch, db.url, registry=lambda: registry) as client:

        async def leaky(*_: object, **__: object) -> None:
            raise DatabaseError(f"predictions database unavailable: postgresql://u:{SECRET}@h/d")

        health = client.get("/health")
        models = client.get("/models")
        client.app.state.api.store.latest = leaky
        predict = client.post("/predict", json={"plot_id": 1})
    assert health.json()["status"] == "degraded"
    assert (
        "MLflow registry unavailable: ConnectionError: http://admin:***@mlflow:5000"
        in (health.json()["reasons"])
    )
    assert models.json()["mlflow_error"] == "ConnectionError: http://admin:***@mlflow:5000"
    assert (predict.status_code, predict.json()["detail"]) == (
        503,
        "predictions database unavailable: postgresql://u:***@h/d",
    )
    assert "postgresql://u:***@h/d" in caplog.text
    for shown in (health.text, models.text, predict.text, caplog.text):
        assert SECRET not in shown


def test_the_demo_shows_no_password(capsys: pytest.CaptureFixture[str]):
    from nuru_yield.dev.demo import _step

    _step(2, f"predictions database at schema version 3: postgresql://nuru:{SECRET}@db/nuru")
    out = capsys.readouterr().out
    assert "postgresql://nuru:***@db/nuru" in out
    assert SECRET not in out
