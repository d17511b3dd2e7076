"""County bulletins end to end on SQLite and on a real PostgreSQL: the champion's county
hindcast skill, a scored night's ``county_forecasts`` (figures checked against the plot
forecasts, the raw areas and the stored skill), the view, the bulletin files, a rerun, and a
county step that fails without un-publishing the night."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.lake import Lake
from tests.fixtures.scoring import Registry

# Sample data 2019–2024 (labels to 2023: five seasons of each kind, enough for a track
# record); the night is in the 2024 Long Rains.
NIGHT = dt.date(2024, 6, 30)
PLOTS = 240


@pytest.fixture(scope="session")
def county_lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nuru_yield.sample_data.generator import generate_to_lake

    root = tmp_path_factory.mktemp("county-lake") / "lake"
    generate_to_lake(Lake(root.as_uri()), plots=PLOTS, start_year=2019, end_year=2024, seed=11)
    return root


@pytest.fixture
def county_lake(
    county_lake_template: Path, nuru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Lake:
    """This test's copy of the lake, with county thresholds for its few plots a county."""
    shutil.copytree(county_lake_template, nuru_home / "lake")
    monkeypatch.setenv("COUNTY_MIN_PLOTS", "5")
    monkeypatch.setenv("COUNTY_MIN_LABELS", "5")
    reset_settings()
    return Lake.from_settings()


def _frame(sql: str, **params: object) -> pd.DataFrame:
    from nuru_yield.db.engine import get_engine

    with get_engine().connect() as connection:
        result = connection.execute(sa.text(sql), params)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


@pytest.mark.slow
def test_the_champions_skill_and_a_nights_county_forecasts(
    county_lake: Lake, registry: Registry, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nuru-yield skill` (building the training set it needs), then a scored night."""
    from nuru_yield.cli import main
    from nuru_yield.features.materialize import materialize
    from nuru_yield.names import bulletin_csv_path, bulletin_html_path, county_hindcasts_path
    from nuru_yield.scoring.run import score

    main(["skill", "--date", NIGHT.isoformat()])
    printed = capsys.readouterr().out.splitlines()
    materialize(NIGHT, lake=county_lake)
    night = score(NIGHT, lake=county_lake)

    # The skill: five seasons of each kind left out in turn, four leads, both baselines.
    assert printed[0].startswith(
        f"county skill of Ensemble_VotingRegressor v{registry.champion}: hindcasts leaving out "
        "each of 10 seasons (2019 Long Rains, 2019 Short Rains,"
    )
    assert printed[1].split() == [
        "season",
        "days",
        "counties",
        "MAPE",
        "NRMSE",
        "mean",
        "trend",
        "beats",
        "the",
        "mean",
    ]
    stored = _frame("SELECT * FROM county_skill")
    assert len(stored) > 0
    assert set(stored["model_version"]) == {registry.champion}
    assert sorted(stored["lead_days"].unique()) == [30, 60, 90, 120]
    rated = stored[stored["skill_nrmse"].notna()]
    assert len(rated) and (rated["n_seasons"] >= 4).all()
    assert rated["naive_nrmse"].notna().all() and rated["trend_nrmse"].notna().all()
    assert (rated["lower_factor"] <= 1).all() and (rated["upper_factor"] >= 1).all()
    hindcasts = county_lake.read_parquet(county_hindcasts_path(NIGHT)).to_pandas()
    assert set(hindcasts["lead_days"]) == {30, 60, 90, 120}
    assert len(hindcasts) >= len(rated)

    # The night: one row per county-season scored, its figure the area-weighted mean.
    assert night.counties_error is None and night.county_rows > 0
    rows = _frame("SELECT * FROM county_forecasts ORDER BY county, season")
    plots = _frame(
        "SELECT plot_id, season, season_year, county, predicted_yield_kg_per_ha, "
        "days_after_planting FROM predictions WHERE model_name = 'champion'"
    )
    keys = ["county", "season", "season_year"]
    assert len(rows) == night.county_rows == len(plots.groupby(keys))
    assert set(rows["run_id"]) == {night.run_id} and set(rows["model_version"]) == {
        registry.champion
    }
    areas = county_lake.read_parquet(
        "raw/plots.parquet", columns=["plot_id", "season", "season_year", "area_ha"]
    ).to_pandas()
    plots = plots.merge(areas, on=["plot_id", "season", "season_year"])
    for row in rows.itertuples(index=False):
        mine = plots[(plots["county"] == row.county) & (plots["season"] == row.season)]
        assert row.n_plots == len(mine)
        weights = mine["area_ha"].to_numpy()
        expected = np.sum(weights * mine["predicted_yield_kg_per_ha"]) / weights.sum()
        assert row.forecast_kg_per_ha == pytest.approx(expected)
        assert row.production_t == pytest.approx(expected * weights.sum() / 1000)
        assert row.lead_days == round(float(np.median(mine["days_after_planting"])))
        assert 0 < row.plot_share <= 1
        assert row.status in {"ok", "short_record", "no_skill"}
        if row.skill_lead_days is not None and not pd.isna(row.skill_lead_days):
            factors = stored[
                (stored["county"] == row.county)
                & (stored["season"] == row.season)
                & (stored["lead_days"] == row.skill_lead_days)
            ].iloc[0]
            assert row.lower_kg_per_ha == pytest.approx(expected * factors["lower_factor"])
            assert row.upper_kg_per_ha == pytest.approx(expected * factors["upper_factor"])
    assert rows["pct_of_5yr_mean"].notna().any() and rows["hist_percentile"].notna().any()
    assert rows["rain_pct_of_normal"].notna().all()  # five earlier years of weather
    latest = _frame("SELECT county, run_date FROM latest_county_forecasts")
    assert len(latest) == len(rows)

    assert night.bulletin_uri == county_lake.uri(bulletin_html_path(NIGHT))
    page = county_lake.read_bytes(bulletin_html_path(NIGHT)).decode()
    assert all(county in page for county in rows["county"])
    table = pd.read_csv(io.BytesIO(county_lake.read_bytes(bulletin_csv_path(NIGHT))))
    assert len(table) == len(rows)
    run = _frame("SELECT status, message, timings FROM scoring_runs")
    assert run["status"].tolist() == ["success"] and run["message"].isna().all()


@pytest.mark.slow
def test_a_failed_county_step_leaves_the_night_published(
    county_lake: Lake, registry: Registry, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuru_yield.features.materialize import materialize
    from nuru_yield.scoring import run
    from nuru_yield.scoring.counties import publish_counties

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the county step broke")

    materialize(NIGHT, lake=county_lake)
    monkeypatch.setattr(run, "publish_counties", broken)
    night = run.score(NIGHT, lake=county_lake)

    assert night.counties_error == "published; the county bulletin failed: the county step broke"
    assert night.county_rows is None and night.bulletin_uri is None
    assert night.plots_scored == len(_frame("SELECT plot_id FROM predictions")) > 0
    status = _frame("SELECT status, message FROM scoring_runs")
    assert status.values.tolist() == [["success", night.counties_error]]
    assert _frame("SELECT county FROM county_forecasts").empty
    with pytest.raises(RuntimeError, match="the county step broke"):
        run.county_bulletin(night, lake=county_lake)  # the DAG task fails while it fails

    monkeypatch.setattr(run, "publish_counties", publish_counties)
    written = run.county_bulletin(night, lake=county_lake)

    assert written is not None and written.rows == len(
        _frame("SELECT county FROM county_forecasts")
    )
    assert _frame("SELECT status, message FROM scoring_runs").values.tolist() == [["success", None]]
    assert run.county_bulletin(run.score(NIGHT, lake=county_lake), lake=county_lake) is None
