"""Every SQL query of the README's cookbook runs against the real schema (SQLite and
PostgreSQL) and returns the rows a user expects from a scored night."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from nuru_yield.db.engine import get_engine
from nuru_yield.db.loader import replace_partition
from nuru_yield.db.migrations import upgrade
from nuru_yield.db.schema import (
    PREDICTION_COLUMNS,
    county_forecasts,
    county_skill,
    drift_reports,
    model_performance,
)

README = Path(__file__).resolve().parents[2] / "README.md"
QUERIES = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
RUN_DATE = dt.date(2025, 6, 15)


def _prediction_rows() -> pa.Table:
    rows = []
    for model_name, offset in (("champion", 0.0), ("challenger", 50.0)):
        for plot_id in (1, 2, 3):
            rows.append(
                {
                    "run_date": RUN_DATE,
                    "plot_id": plot_id,
                    "season_year": 2025,
                    "season": "Long Rains",
                    "model_name": model_name,
                    "model_version": "1" if model_name == "champion" else "2",
                    "county": "Kitui" if plot_id < 3 else "Bungoma",
                    "days_after_planting": 60,
                    "predicted_yield_kg_per_ha": 1000.0 * plot_id + offset,
                    "yield_lower": 500.0 * plot_id,
                    "yield_upper": 1500.0 * plot_id + 100,
                    "interval_level": 0.8,
                    "top_drivers": json.dumps([{"feature": "precip_total", "contribution": 120.0}]),
                    "run_id": "run-1",
                    "scored_at": dt.datetime(2025, 6, 16, 1, tzinfo=dt.UTC),
                    "basis": "model",
                    "normal_kg_per_ha": 1500.0,
                    "plot_normal_kg_per_ha": 1540.0,
                }
            )
    table = pa.Table.from_pylist(rows)
    return table.select(list(PREDICTION_COLUMNS))


def _county_rows(now: dt.datetime) -> list[dict]:
    """Makueni and Bungoma on two nights of the season."""
    rows = []
    for night, county, forecast, pct in (
        (RUN_DATE - dt.timedelta(days=7), "Makueni", 760.0, 95.0),
        (RUN_DATE, "Makueni", 690.0, 86.0),
        (RUN_DATE, "Bungoma", 2950.0, 104.0),
    ):
        rows.append(
            {
                **{column.name: None for column in county_forecasts.columns},
                "run_date": night,
                "county": county,
                "season": "Long Rains",
                "season_year": 2025,
                "model_version": "1",
                "run_id": "run-1",
                "lead_days": 60,
                "n_plots": 300,
                "forecast_kg_per_ha": forecast,
                "lower_kg_per_ha": forecast * 0.7,
                "upper_kg_per_ha": forecast * 1.3,
                "pct_of_5yr_mean": pct,
                "hist_percentile": 40.0,
                "lowest_on_record": False,
                "rain_pct_of_normal": 60.0,
                "beats_naive": True,
                "status": "ok",
                "computed_at": now,
            }
        )
    return rows


def _skill_rows(now: dt.datetime) -> list[dict]:
    return [
        {
            **{column.name: None for column in county_skill.columns},
            "model_name": "Ensemble_VotingRegressor",
            "model_version": "1",
            "county": county,
            "season": "Long Rains",
            "lead_days": lead,
            "run_date": RUN_DATE,
            "n_seasons": 5,
            "skill_mape": 15.0,
            "skill_nrmse": 0.18,
            "naive_nrmse": 0.24,
            "trend_nrmse": 0.3,
            "beats_naive": True,
            "computed_at": now,
        }
        for county in ("Makueni", "Bungoma")
        for lead in (30, 60, 90, 120)
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def scored_database(request: pytest.FixtureRequest, nuru_home: Path) -> sa.Engine:
    url = f"sqlite:///{nuru_home}/predictions.db"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    nuru_home.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    engine = get_engine(url)
    replace_partition(engine, RUN_DATE, _prediction_rows().to_batches())
    now = dt.datetime(2025, 6, 16, 2, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            drift_reports.insert(),
            [
                {
                    "run_date": RUN_DATE,
                    "feature": "precip_total",
                    "county": None,
                    "statistic": "psi",
                    "value": 0.4,
                    "threshold": 0.25,
                    "drifted": True,
                    "status": "drifted",
                    "n_current": 300,
                    "n_reference": 900,
                    "signal": "season signal",
                    "outside_training_share": 0.012,
                    "current_mean": 180.5,
                    "reference_mean": 301.0,
                },
                {
                    "run_date": RUN_DATE,
                    "feature": "gdd_sum",
                    "county": None,
                    "statistic": "psi",
                    "value": 0.1,
                    "threshold": 0.25,
                    "drifted": False,
                    "status": "ok",
                    "n_current": 300,
                    "n_reference": 900,
                    "signal": None,
                    "outside_training_share": 0.008,
                    "current_mean": 410.0,
                    "reference_mean": 402.5,
                },
            ],
        )
        conn.execute(
            model_performance.insert(),
            [
                {
                    "season": "Short Rains",
                    "season_year": 2024,
                    "model_name": "champion",
                    "model_version": "1",
                    "lead_time_days": 60,
                    "rmse": 900.0,
                    "mae": 600.0,
                    "bias": -20.0,
                    "coverage": 0.8,
                    "n": 500,
                    "computed_at": now,
                    "normal_rmse": 1100.0,
                    "mean_forecast": 1200.0,
                    "mean_actual": 1180.0,
                }
            ],
        )
        conn.execute(county_forecasts.insert(), _county_rows(now))
        conn.execute(county_skill.insert(), _skill_rows(now))
        conn.execute(
            sa.text(
                "INSERT INTO scoring_runs (run_id, run_date, model_name, model_version, status, "
                "plots_scored, plots_rejected, started_at, duration_s) VALUES "
                "('run-1', :d, 'Ensemble_VotingRegressor', '1', 'success', 3, 0, :t, 12.5)"
            ),
            {"d": RUN_DATE, "t": now},
        )
    return engine


def test_readme_has_the_cookbook() -> None:
    assert len(QUERIES) >= 5


@pytest.mark.parametrize("query", QUERIES, ids=[q.split("\n")[0][:40] for q in QUERIES])
def test_cookbook_query_runs_and_returns_rows(scored_database: sa.Engine, query: str) -> None:
    with scored_database.connect() as conn:
        rows = conn.execute(sa.text(query.strip().rstrip(";"))).all()
    assert rows, f"no rows from:\n{query}"


def test_forecast_per_county_aggregates_tonights_champion_rows(scored_database: sa.Engine) -> None:
    with scored_database.connect() as conn:
        rows = conn.execute(sa.text(QUERIES[0].strip().rstrip(";"))).mappings().all()
    by_county = {row["county"]: row for row in rows}
    assert by_county["Kitui"]["plots"] == 2
    assert float(by_county["Kitui"]["mean_kg_per_ha"]) == 1500.0
    assert float(by_county["Bungoma"]["mean_kg_per_ha"]) == 3000.0


def _query(title: str) -> str:
    """The cookbook query introduced by the paragraph starting with ``title``."""
    text = README.read_text()
    return re.search(re.escape(title) + r".*?```sql\n(.*?)```", text, flags=re.S).group(1)


def test_the_county_bulletin_query_reads_the_latest_night_lowest_first(
    scored_database: sa.Engine,
) -> None:
    query = _query("The county bulletin of the latest night")
    with scored_database.connect() as conn:
        rows = conn.execute(sa.text(query.strip().rstrip(";"))).mappings().all()
    assert [(row["county"], float(row["kg_per_ha"])) for row in rows] == [
        ("Makueni", 690.0),
        ("Bungoma", 2950.0),
    ]


def test_the_season_so_far_and_the_skill_queries(scored_database: sa.Engine) -> None:
    with scored_database.connect() as conn:
        season = conn.execute(sa.text(_query("One county's season so far").strip().rstrip(";")))
        skill = conn.execute(sa.text(_query("How good the serving model's").strip().rstrip(";")))
        season, skill = season.mappings().all(), skill.mappings().all()
    assert [float(row["kg_per_ha"]) for row in season] == [760.0, 690.0]
    assert [(row["lead_days"], row["counties"]) for row in skill] == [
        (30, 2),
        (60, 2),
        (90, 2),
        (120, 2),
    ]
    assert (
        float(skill[0]["model_nrmse"]) == 0.18 and int(skill[0]["counties_beating_the_mean"]) == 2
    )


def test_forecasts_beside_the_normals_split_location_from_the_season(
    scored_database: sa.Engine,
) -> None:
    (query,) = [q for q in QUERIES if "season_effect" in q]
    with scored_database.connect() as conn:
        rows = conn.execute(sa.text(query.strip().rstrip(";"))).mappings().all()
    kitui = next(row for row in rows if row["county"] == "Kitui")
    assert kitui["plots"] == 2
    assert float(kitui["county_normal"]) == 1500.0 and float(kitui["plot_normal"]) == 1540.0
    assert float(kitui["forecast"]) == 1500.0 and float(kitui["season_effect"]) == -40.0
