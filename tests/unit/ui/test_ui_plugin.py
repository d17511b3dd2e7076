"""The plugin of ``plugins/``: every Airflow component imports it (the scheduler, the DAG
processor, each task's process), so importing it must cost nothing but itself; its app is
built on the API server's first request, and a setting that stops it says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nuru_yield.config import reset_settings
from nuru_yield.ui.plugin import ForecastsPlugin, LazyApp

REPO = Path(__file__).resolve().parents[3]

_IMPORT_PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import airflow.plugins_manager  # what loads the plugins imports this first anyway

    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("nuru_forecasts", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)
HEAVY = (
    "matplotlib", "pandas", "pyarrow", "numpy", "sqlalchemy", "jinja2",
    "nuru_yield.ui.app", "nuru_yield.ui.data", "nuru_yield.ui.page",
    "airflow.api_fastapi.core_api", "airflow.models",
)  # fmt: skip


def test_the_plugin_file_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(REPO / "plugins" / "nuru_forecasts.py")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    added = json.loads(done.stdout.strip().splitlines()[-1])
    assert "nuru_yield.ui.plugin" in added  # the probe did import it
    assert [m for m in added if m.startswith(HEAVY)] == []


def test_the_plugin_registers_an_app_and_a_navigation_entry() -> None:
    [app] = ForecastsPlugin.fastapi_apps
    assert app["url_prefix"] == "/nuru-forecasts" and isinstance(app["app"], LazyApp)
    [view] = ForecastsPlugin.external_views
    # Relative to Airflow's base URL: a path prefix in front of Airflow keeps working.
    assert not view["href"].startswith("/") and not view["icon"].startswith("/")
    assert view["href"] == "nuru-forecasts/" and view["destination"] == "nav"


def test_a_setting_that_stops_the_app_is_a_503_with_the_reason_until_it_is_fixed(
    nuru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = LazyApp()
    monkeypatch.setenv("API_DB_URL", "mysql://somewhere/nuru")
    reset_settings()
    client = TestClient(app)  # requests only: a mounted app gets no lifespan events
    answer = client.get("/static/icon.svg")
    assert answer.status_code == 503
    assert answer.text.startswith("Forecasts unavailable: invalid setting API_DB_URL=")

    monkeypatch.delenv("API_DB_URL")
    reset_settings()
    assert client.get("/static/icon.svg").status_code == 200  # built on this request
