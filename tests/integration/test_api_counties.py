"""The county routes against real databases (SQLite and PostgreSQL): the night's county
table, a county's forecast with its season so far and its model's skill, as-of history,
404s naming the last run, 422s, and the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.integration import test_api_support as support
from tests.integration.test_api_support import (
    LATEST_NIGHT,
    NIGHTS,
    OLD_NIGHTS,
    PredictionsDb,
)

known_db, make_client = support.known_db, support.make_client


def test_the_county_table_of_the_newest_night(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    response = client.get("/counties")

    assert response.status_code == 200
    body = response.json()
    assert (body["run_date"], body["as_of"], body["season"]) == (str(LATEST_NIGHT), None, None)
    assert [row["county"] for row in body["counties"]] == ["Makueni", "Nakuru"]
    makueni = body["counties"][0]
    assert makueni["forecast_kg_per_ha"] == 700.0 + LATEST_NIGHT.day
    assert makueni["lower_kg_per_ha"] == pytest.approx(0.7 * (700.0 + LATEST_NIGHT.day))
    assert makueni["season_signal"].startswith("rain 40% below")
    assert (makueni["status"], makueni["beats_naive"], makueni["lowest_on_record"]) == (
        "ok",
        True,
        False,
    )
    assert makueni["computed_at"].endswith(("Z", "+00:00"))
    assert response.headers["cache-control"] == "no-store"


def test_as_of_gives_the_table_of_that_night(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    earlier = client.get("/counties", params={"as_of": str(NIGHTS[-2])}).json()
    assert earlier["run_date"] == str(NIGHTS[-2])
    assert earlier["counties"][0]["forecast_kg_per_ha"] == 700.0 + NIGHTS[-2].day

    # Between the old Short Rains night and the first county night: the old night.
    old = client.get("/counties", params={"as_of": str(NIGHTS[0])}).json()
    assert old["run_date"] == str(OLD_NIGHTS[-1])
    assert [(row["county"], row["status"]) for row in old["counties"]] == [
        ("Makueni", "too_few_plots")
    ]
    assert old["counties"][0]["forecast_kg_per_ha"] is None

    short = client.get("/counties", params={"season": "Short Rains"})
    assert short.status_code == 404  # the newest night has no Short Rains county


def test_before_any_county_night_is_404_naming_the_last_run(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    response = client.get("/counties", params={"as_of": "2024-01-01"})

    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "no stored county forecast for any county on or before 2024-01-01" in detail
    assert f"the last scoring run was {LATEST_NIGHT}" in detail


def test_a_county_forecast_with_its_season_and_skill(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    response = client.get("/counties/Makueni/forecast")

    assert response.status_code == 200
    body = response.json()
    assert body["forecast"]["run_date"] == str(LATEST_NIGHT)
    assert (body["forecast"]["season"], body["forecast"]["season_year"]) == ("Long Rains", 2025)
    assert [point["run_date"] for point in body["trajectory"]] == [str(n) for n in NIGHTS[-3:]]
    assert [lead["lead_days"] for lead in body["skill"]] == [30, 60]
    assert body["skill"][1]["skill_nrmse"] == 0.15
    assert body["skill"][0]["interval_scope"] == "pooled"


def test_a_county_forecast_as_of_and_by_season(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    as_of = client.get("/counties/Makueni/forecast", params={"as_of": str(NIGHTS[-2])}).json()
    assert as_of["forecast"]["run_date"] == str(NIGHTS[-2])
    assert [point["run_date"] for point in as_of["trajectory"]] == [str(n) for n in NIGHTS[-3:-1]]

    short = client.get("/counties/Makueni/forecast", params={"season": "Short Rains"}).json()
    assert (short["forecast"]["season_year"], short["forecast"]["status"]) == (
        2024,
        "too_few_plots",
    )
    assert short["skill"] == []  # no skill stored for the Short Rains


def test_an_unknown_county_is_404_and_a_bad_one_422(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    unknown = client.get("/counties/Atlantis/forecast")
    assert unknown.status_code == 404
    assert "no stored county forecast for Atlantis" in unknown.json()["detail"]
    with_season = client.get("/counties/Nakuru/forecast", params={"season": "Short Rains"})
    assert "Nakuru (Short Rains)" in with_season.json()["detail"]

    for path, params in [
        ("/counties/Makueni/forecast", {"season": "Winter"}),
        ("/counties/Makueni/forecast", {"as_of": "2025-13-01"}),
        ("/counties", {"season": "Winter"}),
        ("/counties/" + "x" * 65 + "/forecast", {}),
        ("/counties/Make%00ni/forecast", {}),
    ]:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params)


def test_the_county_routes_are_documented(known_db: PredictionsDb, make_client):
    openapi = make_client(known_db.url).get("/openapi.json").json()
    table = openapi["paths"]["/counties"]["get"]
    detail = openapi["paths"]["/counties/{county}/forecast"]["get"]
    assert {"200", "404", "422", "503"} <= set(table["responses"])
    assert {"200", "404", "422", "503"} <= set(detail["responses"])
    assert [p["name"] for p in detail["parameters"]] == ["county", "season", "as_of"]
    example = openapi["components"]["schemas"]["CountyForecast"]["examples"][0]
    assert example["season_signal"].startswith("rain 40% below")
