"""Shared fixtures of the API tests: a predictions database (SQLite or a real PostgreSQL)
holding a few known plots, and an app + client built from environment settings."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.db import schema
from nuru_yield.db.engine import dispose_engines, get_engine
from nuru_yield.db.loader import PREDICTION_ARROW_SCHEMA, replace_partition
from nuru_yield.db.migrations import upgrade
from nuru_yield.dev.local_services import stop_process
from nuru_yield.serving.app import create_app
from nuru_yield.serving.probes import RegistrySnapshot
from tests.fixtures.services import free_port, wait_until

API_KEY = "s3cret-key"
NIGHTS = [dt.date(2025, 4, 1) + dt.timedelta(days=i) for i in range(5)]
LATEST_NIGHT = NIGHTS[-1]
OLD_NIGHTS = [dt.date(2024, 11, 1) + dt.timedelta(days=i) for i in range(3)]
SHARE_PLOTS = list(range(10, 60))  # champion + challenger on the latest night only
UNKNOWN_PLOT = 999

REGISTRY = RegistrySnapshot(
    connected=True,
    aliases={"champion": "3", "challenger": "4", "previous": "2"},
    versions=[
        {
            "version": str(number),
            "aliases": aliases,
            "run_id": f"run{number}",
            "status": "READY",
            "created_at": dt.datetime(2025, 3, number, tzinfo=dt.UTC),
            "metrics": {"rmse": 900.0 - 10 * number},
            "tags": {},
        }
        for number, aliases in ((4, ["challenger"]), (3, ["champion"]), (2, ["previous"]))
    ],
)


def prediction(
    night: dt.date,
    plot_id: int,
    model_name: str = "champion",
    season: str = "Long Rains",
    season_year: int = 2025,
) -> dict[str, Any]:
    """A stored row whose yield encodes night, plot and model, so a test can tell them apart."""
    challenger = model_name == "challenger"
    value = 2000.0 + 100 * plot_id + night.day + (0.5 if challenger else 0.0)
    return {
        "run_date": night,
        "plot_id": plot_id,
        "season_year": season_year,
        "season": season,
        "model_name": model_name,
        "model_version": "4" if challenger else "3",
        "county": "Nakuru",
        "days_after_planting": 20 + night.day,
        "predicted_yield_kg_per_ha": value,
        "yield_lower": value - 400,
        "yield_upper": value + 500,
        "interval_level": 0.8,
        "top_drivers": [
            {"feature": "precip_total", "value": 300.0 + night.day, "contribution": 120.0},
            {"feature": "ndvi_mean", "value": 0.61, "contribution": -35.5},
        ],
        "run_id": f"score-{night}",
        "scored_at": dt.datetime.combine(night, dt.time(2), dt.UTC),
        "basis": "blended" if night.day < 5 else "model",
        "normal_kg_per_ha": 2050.0,
        "plot_normal_kg_per_ha": 2110.0,
    }


def known_rows(nights: list[dt.date] = NIGHTS, old_season: bool = True) -> list[dict[str, Any]]:
    rows = []
    for night in nights:
        rows += [prediction(night, 1), prediction(night, 1, "challenger")]
        rows += [prediction(night, 3), prediction(night, 4)]
        if night == LATEST_NIGHT:
            for plot in SHARE_PLOTS:
                rows += [prediction(night, plot), prediction(night, plot, "challenger")]
    for night in OLD_NIGHTS if old_season else []:
        for plot in (2, 3):
            rows.append(prediction(night, plot, season="Short Rains", season_year=2024))
    return rows


PROMOTIONS = [
    {
        "decided_at": dt.datetime(2025, 3, day, tzinfo=dt.UTC),
        "model_name": "Ensemble_VotingRegressor",
        "candidate_version": str(version),
        "previous_version": str(version - 1),
        "alias": "champion",
        "decision": decision,
        "reason": reason,
        "candidate_metrics": {"rmse": 900.0 - 10 * version},
        "champion_metrics": {"rmse": 900.0 - 10 * (version - 1)},
        "dag_run_id": f"manual__{day}",
        "actor": "model_training",
    }
    for day, version, decision, reason in (
        (2, 2, "promoted", "beats champion by 1.2%"),
        (3, 3, "promoted", "beats champion by 1.1%"),
        (4, 4, "rejected", "county Kitui regresses 7%"),
    )
]


COUNTIES = ("Makueni", "Nakuru")


def county_row(
    night: dt.date,
    county: str,
    season: str = "Long Rains",
    season_year: int = 2025,
    **values: Any,
) -> dict[str, Any]:
    """A stored county forecast whose figure encodes night and county."""
    forecast = (700.0 if county == "Makueni" else 2400.0) + night.day
    return {
        **{column.name: None for column in schema.county_forecasts.columns},
        "run_date": night,
        "county": county,
        "season": season,
        "season_year": season_year,
        "model_version": "3",
        "run_id": f"score-{night}",
        "lead_days": 20 + night.day,
        "n_plots": 120,
        "plot_share": 0.9,
        "forecast_kg_per_ha": forecast,
        "lower_kg_per_ha": forecast * 0.7,
        "upper_kg_per_ha": forecast * 1.3,
        "pct_of_5yr_mean": 88.0,
        "lowest_on_record": False,
        "skill_lead_days": 30,
        "skill_nrmse": 0.2,
        "naive_nrmse": 0.25,
        "beats_naive": True,
        "rain_pct_of_normal": 60.0,
        "season_signal": "rain 40% below the county's normal to date (60 mm against 100)",
        "status": "ok",
        "computed_at": dt.datetime.combine(night, dt.time(3), dt.UTC),
        **values,
    }


def county_rows() -> list[dict[str, Any]]:
    """Both counties on the last three nights; Makueni's Short Rains on the last old night."""
    rows = [county_row(night, county) for night in NIGHTS[-3:] for county in COUNTIES]
    rows.append(
        county_row(
            OLD_NIGHTS[-1],
            "Makueni",
            "Short Rains",
            2024,
            n_plots=12,
            status="too_few_plots",
            forecast_kg_per_ha=None,
        )
    )
    return rows


def skill_rows() -> list[dict[str, Any]]:
    """Version 3's hindcast skill for Makueni's Long Rains at 30 and 60 days."""
    return [
        {
            **{column.name: None for column in schema.county_skill.columns},
            "model_name": "Ensemble_VotingRegressor",
            "model_version": "3",
            "county": "Makueni",
            "season": "Long Rains",
            "lead_days": lead,
            "run_date": dt.date(2025, 3, 3),
            "n_seasons": 5,
            "skill_nrmse": nrmse,
            "naive_nrmse": 0.25,
            "beats_naive": nrmse < 0.25,
            "lower_factor": 0.7,
            "upper_factor": 1.3,
            "interval_scope": "pooled",
            "computed_at": dt.datetime(2025, 3, 3, tzinfo=dt.UTC),
        }
        for lead, nrmse in ((60, 0.15), (30, 0.2))
    ]


class PredictionsDb:
    """A predictions database made by the project's own migrations and loader."""

    def __init__(self, url: str) -> None:
        self.url = url
        upgrade(url)
        self.engine = get_engine(url)

    def load(self, rows: list[dict[str, Any]]) -> None:
        """Publish ``rows`` night by night, as batch scoring does."""
        for night in sorted({row["run_date"] for row in rows}):
            table = pa.Table.from_pylist(
                [
                    {**row, "top_drivers": json.dumps(row["top_drivers"])}
                    for row in rows
                    if row["run_date"] == night
                ],
                schema=PREDICTION_ARROW_SCHEMA,
            )
            replace_partition(self.engine, night, table)

    def add_promotions(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.insert(schema.model_promotions), PROMOTIONS)

    def add_counties(self) -> None:
        """The county forecasts of :func:`county_rows` and the skill of :func:`skill_rows`."""
        with self.engine.begin() as connection:
            connection.execute(sa.insert(schema.county_forecasts), county_rows())
            connection.execute(sa.insert(schema.county_skill), skill_rows())


@contextlib.contextmanager
def _database(request: pytest.FixtureRequest, sqlite_dir: Path) -> Iterator[str]:
    """A new, empty database URL: a SQLite file, or a database on the PostgreSQL server."""
    if request.param == "sqlite":
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{sqlite_dir / 'predictions.db'}"
        dispose_engines()
        return
    server = request.getfixturevalue("postgres_server")
    name = f"api_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, nuru_home: Path) -> Iterator[PredictionsDb]:
    """An empty predictions database, once on SQLite and once on a real PostgreSQL."""
    with _database(request, nuru_home) as url:
        yield PredictionsDb(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def known_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictionsDb]:
    """The known plots, loaded once per module and backend: for tests that only read."""
    with _database(request, tmp_path_factory.mktemp("api-db")) as url:
        db = PredictionsDb(url)
        db.load(known_rows())
        db.add_promotions()
        db.add_counties()
        yield db


@contextlib.contextmanager
def serving(
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    registry: Callable[[], RegistrySnapshot] = lambda: REGISTRY,
    raise_server_exceptions: bool = True,
    prepare_registry: Callable[[], object] | None = None,
    **env: object,
) -> Iterator[TestClient]:
    """A running app built from these environment settings (rate limit off unless given),
    with a registry that answers like MLflow would."""
    env = {"PREDICTIONS_DB_URL": db_url, "API_RATE_LIMIT_PER_MINUTE": 0, **env}
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    reset_settings()
    app = create_app(get_settings(), registry_reader=registry, prepare_registry=prepare_registry)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """``make_client(db_url, **serving_options)``: :func:`serving`, closed after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda *args, **kwargs: stack.enter_context(serving(monkeypatch, *args, **kwargs))


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


@dataclass
class ApiServer:
    """A running ``nuru-yield serve`` process."""

    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextlib.contextmanager
def api_server(workdir: Path, **env: object) -> Iterator[ApiServer]:
    """``nuru-yield serve`` as users run it: its own process on a free loopback port, with
    these settings (and no MLflow registry), until ``/health`` answers 200. Stopped with
    SIGTERM afterwards; ``stopped_with`` is then its exit code."""
    port = free_port()
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'no-registry.db'}",
        **{name: str(value) for name, value in env.items()},
    }
    command = [str(Path(sys.executable).with_name("nuru-yield")), "serve", "--port", str(port)]
    stderr = workdir / f"server-{port}.err"
    with open(stderr, "wb") as sink:
        process = subprocess.Popen(
            command, env=environment, cwd=workdir, stdout=subprocess.DEVNULL, stderr=sink
        )
    server = ApiServer(process, f"http://127.0.0.1:{port}", port, stderr)
    try:

        def healthy() -> bool:
            assert process.poll() is None, server.errors()[-2000:]
            return httpx.get(f"{server.base_url}/health").status_code == 200

        wait_until(healthy, "nuru-yield serve", 60)
        yield server
    finally:
        stop_process(process, timeout=30)
