"""The Forecasts view's app over HTTP (``nuru_yield.ui.app``), with Airflow's own auth manager
and metadata database: refused without a valid Airflow login, the newest night's page and a
chosen one's, the JSON, the night's Airflow runs linked, an empty and an unreachable database;
the bulletins on SQLite and on a real PostgreSQL. The last test mounts it the way the API
server does: Airflow's own app, with the plugins of ``plugins/``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from nuru_yield.config import reset_settings
from nuru_yield.db import schema
from nuru_yield.db.engine import dispose_engines, get_engine
from nuru_yield.dev.local_services import free_port
from nuru_yield.lake import Lake
from nuru_yield.names import FORECASTS_MOUNT
from tests.fixtures.counties import (
    LATEST,
    NIGHTS,
    NO_SKILL,
    WITHHELD,
    World,
    bulletin_world,
    create_county_tables,
    drop_county_tables,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def auth_manager(airflow_db: Path) -> Iterator[Any]:
    """Airflow's auth manager (the simple one, as configured), as the API server starts it."""
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app

    yield init_auth_manager()
    purge_cached_app()


def token(auth_manager: Any, role: str | None = "viewer", expires_in: int = 600) -> str:
    """A JWT of Airflow's for a user of ``role`` (None: a user without a role)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    user = SimpleAuthManagerUser(username=f"user-{role}", role=role)
    return auth_manager.generate_jwt(user, expiration_time_in_seconds=expires_in)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, nuru_home: Path) -> Iterator[str]:
    """An empty predictions database: a SQLite file, or one on the session's PostgreSQL."""
    if request.param == "sqlite":
        nuru_home.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{nuru_home / 'predictions.db'}"
    else:
        yield request.getfixturevalue("postgres_url")
    dispose_engines()


@pytest.fixture
def lake(nuru_home: Path) -> Lake:
    return Lake(f"file://{nuru_home / 'lake'}")


def view_client(monkeypatch: pytest.MonkeyPatch, db_url: str, lake: Lake) -> TestClient:
    """The view's app with these settings, as the plugin builds it."""
    from nuru_yield.ui.app import create_app

    monkeypatch.setenv("PREDICTIONS_DB_URL", db_url)
    monkeypatch.setenv("LAKE_URL", lake.url)
    reset_settings()
    return TestClient(create_app())


@pytest.fixture
def world(database_url: str, lake: Lake) -> World:
    return bulletin_world(database_url, lake)


@pytest.fixture
def client(
    world: World, lake: Lake, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    """A client logged in as a viewer (the UI's cookie) on the bulletin world."""
    client = view_client(monkeypatch, world.db_url, lake)
    client.cookies.set("_token", token(auth_manager))
    return client


def _rows(page: str) -> dict[str, str]:
    """County -> the attributes of its row in the bulletin table."""
    return dict(re.findall(r'<tr class="([^"]*)" data-county="([^"]+)"', page)[::-1])


def _county_rows(page: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r'<tr class="([^"]*)" data-county="([^"]+)" data-status="([^"]+)">', page)
    return {county: (css, status) for css, county, status in found}


def test_requests_without_a_valid_airflow_login_are_refused(
    world: World, lake: Lake, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = view_client(monkeypatch, world.db_url, lake)

    page = client.get("/")
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert "Log in to Airflow" in page.text and 'href="/auth/login?next=' in page.text
    api = client.get("/api/night")
    assert (api.status_code, api.json()) == (401, {"detail": "Not authenticated"})

    refused = {
        "garbage cookie": client.get("/", cookies={"_token": "not-a-jwt"}),
        "garbage bearer": client.get("/api/night", headers={"Authorization": "Bearer x.y.z"}),
        "expired": client.get(
            "/api/night", cookies={"_token": token(auth_manager, expires_in=-60)}
        ),
        "no role": client.get("/api/night", cookies={"_token": token(auth_manager, role=None)}),
    }
    assert {name: answer.status_code for name, answer in refused.items()} == {
        "garbage cookie": 403,
        "garbage bearer": 403,
        "expired": 401,
        "no role": 403,
    }
    assert "read access to batch_scoring runs" in refused["no role"].json()["detail"]
    for answer in (page, api, *refused.values()):
        assert WITHHELD not in answer.text and NO_SKILL not in answer.text  # no data leaks
    # What the page loads carries no data and needs no login (the UI's navigation icon).
    assert client.get("/static/icon.svg").status_code == 200
    assert client.get("/static/forecasts.js").status_code == 200


def test_the_page_shows_the_newest_nights_bulletin_charts_and_runs(
    client: TestClient, world: World
) -> None:
    answer = client.get("/")

    assert answer.status_code == 200, answer.text[:500]
    page = answer.text
    assert f"<h1>Forecasts — night of {LATEST}</h1>" in page
    assert re.findall(r'<option value="([\d-]+)"', page) == [n.isoformat() for n in NIGHTS[::-1]]
    assert f'<option value="{LATEST}" selected>' in page
    rows = _county_rows(page)
    assert set(rows) == set(world.counties)
    assert rows[WITHHELD] == ("withheld", "too_few_plots")
    assert rows[NO_SKILL] == ("no-skill", "ok")
    assert {status for css, status in rows.values() if not css} == {"ok"}
    notes = dict(
        re.findall(
            r'<li id="[^"]+" data-county="([^"]+)"><strong>[^<]+</strong>: ([^<]+)</li>', page
        )
    )
    assert "a county figure needs at least 30" in notes[WITHHELD]  # the row's own message
    assert "this model has not beaten the county&#39;s average yield" in notes[NO_SKILL]
    assert any("below the county&#39;s normal to date" in note for note in notes.values())
    for chart in ("trajectory", "skill", "map"):
        assert page.count(f'<figure class="chart {chart}"><svg') == 1, chart
    trajectory = page.split('<figure class="chart trajectory">')[1].split("</figure>")[0]
    assert all(f">{county}</text>" in trajectory for county in world.counties)
    assert "no county figure" in trajectory  # the withheld county's panel says so
    assert f"{world.plots:,} plots" in page  # the map draws every plot of this small night
    assert "score-2025-06-10" in page  # the night's scoring run
    assert answer.headers["content-security-policy"].startswith(
        "default-src 'none'; script-src 'self'"
    )
    assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"


def test_a_chosen_night_as_page_and_json(client: TestClient, world: World) -> None:
    night = NIGHTS[3]

    page = client.get("/", params={"night": night.isoformat()}).text
    assert f"<h1>Forecasts — night of {night}</h1>" in page
    assert f'<option value="{night}" selected>' in page
    assert 'class="chart trajectory"' in page
    assert "No map: " in page and "not found" in page  # no prediction log kept for that night

    body = client.get("/api/night", params={"night": night.isoformat()}).json()
    assert body["night"] == night.isoformat()
    assert body["nights"] == [n.isoformat() for n in NIGHTS[::-1]]
    assert body["missing_tables"] == []
    assert {row["run_date"] for row in body["counties"]} == {night.isoformat()}
    assert sorted(row["county"] for row in body["counties"]) == sorted(world.counties)
    # The trajectories run from the season's first night up to the chosen one, no further.
    assert {row["run_date"] for row in body["trajectories"]} == {n.isoformat() for n in NIGHTS[:4]}
    by_county = {row["county"]: row for row in body["counties"]}
    assert by_county[WITHHELD]["forecast_kg_per_ha"] is None
    assert by_county[WITHHELD]["status"] == "too_few_plots"
    assert by_county[NO_SKILL]["beats_naive"] is False  # a boolean on SQLite too
    assert by_county[NO_SKILL]["lowest_on_record"] in (True, False)
    assert len(body["skill"]) == 4 * len(world.counties)
    assert [run["run_id"] for run in body["scoring_runs"]] == [f"score-{night}"]
    assert body["dag_runs"] == []


def test_unknown_and_malformed_nights(client: TestClient) -> None:
    missing = client.get("/", params={"night": "2025-04-16"})
    assert missing.status_code == 404
    assert "no county forecasts and no scoring run on 2025-04-16" in missing.text
    assert '<a href="/">The newest night</a>' in missing.text
    api = client.get("/api/night", params={"night": "2025-04-16"})
    assert api.status_code == 404 and "2025-04-16" in api.json()["detail"]
    assert client.get("/", params={"night": "2025-13-01"}).status_code == 422
    assert client.get("/api/night", params={"night": "tonight"}).status_code == 422


@pytest.fixture
def night_runs(world: World, unpause: Any) -> Iterator[dict[str, str]]:
    """Airflow runs in the metadata database: the latest night's feature and scoring runs
    (keyed by the night), a drift run of another night, and the scoring run
    ``scoring_runs`` names for the latest night although Airflow keyed it by no night."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    runs = {  # name: DAG, run id, the night it is keyed by, the hour it ran (June 10)
        "by id": ("batch_scoring", "manual__param_run", None, 0),
        "features": ("feature_materialization", f"manual__night_{LATEST}__a", LATEST, 1),
        "scoring": ("batch_scoring", f"asset_triggered__{LATEST}T00:20:00+00:00", LATEST, 2),
        "other night": ("drift_monitoring", "manual__other", NIGHTS[0], 3),
    }
    with create_session() as session:
        for dag_id, run_id, night, hour in runs.values():
            session.add(
                DagRun(
                    dag_id=dag_id,
                    run_id=run_id,
                    run_type=DagRunType.MANUAL,
                    state=DagRunState.SUCCESS,
                    run_after=dt.datetime(2025, 6, 10, hour, tzinfo=dt.UTC),
                    partition_key=night.isoformat() if night else None,
                )
            )
    with get_engine(world.db_url).begin() as connection:
        connection.execute(
            sa.update(schema.scoring_runs)
            .where(schema.scoring_runs.c.run_date == LATEST)
            .values(dag_run_id=runs["by id"][1])
        )
    yield {name: run_id for name, (_, run_id, _, _) in runs.items()}
    with create_session() as session:
        session.execute(
            sa.delete(DagRun).where(DagRun.run_id.in_([run[1] for run in runs.values()]))
        )


def test_the_nights_airflow_runs_are_linked(client: TestClient, night_runs: dict[str, str]) -> None:
    body = client.get("/api/night").json()

    # In the night's order of DAGs, each DAG's newest run first; another night's not at all.
    assert [(run["dag_id"], run["run_id"]) for run in body["dag_runs"]] == [
        ("feature_materialization", night_runs["features"]),
        ("batch_scoring", night_runs["scoring"]),
        ("batch_scoring", night_runs["by id"]),
    ]
    page = client.get("/").text
    scoring = "/dags/batch_scoring/runs/asset_triggered__2025-06-10T00%3A20%3A00%2B00%3A00"
    assert f'<a href="{scoring}" data-airflow-route target="_top">' in page
    assert f'href="/dag_runs?partition_key_pattern={LATEST}" data-airflow-route' in page
    assert night_runs["other night"] not in page


@pytest.mark.parametrize("tables", ["without county tables", "with empty county tables"])
def test_an_empty_database_says_there_is_nothing_yet(
    database_url: str,
    lake: Lake,
    auth_manager: Any,
    monkeypatch: pytest.MonkeyPatch,
    tables: str,
) -> None:
    create_county_tables(database_url)
    if tables == "without county tables":
        drop_county_tables(database_url)
    client = view_client(monkeypatch, database_url, lake)
    client.cookies.set("_token", token(auth_manager))

    page = client.get("/")
    assert page.status_code == 200
    assert "No night scored yet" in page.text
    missing = [] if tables == "with empty county tables" else ["county_forecasts", "county_skill"]
    assert re.findall(r"has no <code>(\w+)</code> table yet", page.text) == missing
    body = client.get("/api/night").json()
    assert (body["night"], body["nights"], body["counties"]) == (None, [], [])
    assert body["missing_tables"] == missing


def test_a_scored_night_whose_bulletin_failed_shows_the_runs_message(
    database_url: str, lake: Lake, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_county_tables(database_url)
    started = dt.datetime(2025, 6, 11, 0, 20, tzinfo=dt.UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(schema.scoring_runs),
            {
                "run_id": "score-x",
                "run_date": dt.date(2025, 6, 11),
                "model_name": "Ensemble_VotingRegressor",
                "status": "success",
                "started_at": started,
                "message": "county bulletin failed: no harvest labels",
            },
        )
    client = view_client(monkeypatch, database_url, lake)
    client.cookies.set("_token", token(auth_manager))

    page = client.get("/").text
    assert "<h1>Forecasts — night of 2025-06-11</h1>" in page
    assert "No county forecasts for 2025-06-11." in page
    assert "county bulletin failed: no harvest labels" in page
    assert client.get("/api/night").json()["counties"] == []


def test_an_unreachable_database_is_a_503_with_the_reason_and_no_password(
    lake: Lake, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"postgresql+psycopg://nuru:s3cret@127.0.0.1:{free_port()}/nuru"
    client = view_client(monkeypatch, nowhere, lake)
    client.cookies.set("_token", token(auth_manager))

    for path in ("/", "/api/night"):
        answer = client.get(path)
        assert answer.status_code == 503
        assert "reading the Forecasts view failed" in answer.json()["detail"]
        assert "s3cret" not in answer.text and "***" in answer.text
    dispose_engines()


def test_airflows_api_server_mounts_the_plugin_behind_its_login(
    world: World, lake: Lake, auth_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own app, as ``airflow api-server`` builds it, with the plugins of
    ``plugins/``: the view's app is mounted under its prefix, its entry is in the UI's
    navigation, and a request goes through Airflow's middleware to the view's login check."""
    from airflow.api_fastapi.app import create_app as airflow_app
    from airflow.plugins_manager import get_fastapi_plugins

    monkeypatch.setenv("PREDICTIONS_DB_URL", world.db_url)
    monkeypatch.setenv("LAKE_URL", lake.url)
    reset_settings()
    [view] = [
        app["app"] for app in get_fastapi_plugins()[0] if app["url_prefix"] == FORECASTS_MOUNT
    ]
    monkeypatch.setattr(view, "_app", None)  # built on the first request, from these settings
    client = TestClient(airflow_app(apps="core"))
    viewer = token(auth_manager)

    assert client.get(f"{FORECASTS_MOUNT}/").status_code == 401
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {viewer}"}).json()
    [plugin] = [p for p in plugins["plugins"] if p["name"] == "nuru_forecasts"]
    [entry] = plugin["external_views"]
    assert (entry["name"], entry["href"], entry["url_route"]) == (
        "Forecasts",
        "nuru-forecasts/",
        "forecasts",
    )
    page = client.get(f"{FORECASTS_MOUNT}/", cookies={"_token": viewer})
    assert page.status_code == 200, page.text[:500]
    assert f"<h1>Forecasts — night of {LATEST}</h1>" in page.text
    assert f'<script src="{FORECASTS_MOUNT}/static/forecasts.js" defer>' in page.text
    assert client.get(f"{FORECASTS_MOUNT}/static/forecasts.js").status_code == 200
