"""The bulletin files: a self-contained page (no script, nothing from the network, every
name escaped, charts as inline SVG) and the rows as CSV."""

from __future__ import annotations

import datetime as dt
import io
import re

import pandas as pd

from nuru_yield.counties.render import bulletin_csv, bulletin_html, percent_chart
from nuru_yield.db.schema import county_forecasts

RUN_DATE = dt.date(2025, 4, 10)
HOSTILE = 'Kitui <script>alert("x")</script>'


def _rows() -> pd.DataFrame:
    base = {column.name: None for column in county_forecasts.columns}
    rows = [
        {
            **base,
            "run_date": RUN_DATE,
            "county": county,
            "season": "Long Rains",
            "season_year": 2025,
            "model_version": "7",
            "run_id": "20250410-abc",
            "lead_days": 24,
            "n_plots": 300,
            "plot_share": 0.95,
            "forecast_kg_per_ha": forecast,
            "lower_kg_per_ha": forecast * 0.75,
            "upper_kg_per_ha": forecast * 1.3,
            "pct_of_5yr_mean": pct,
            "lowest_on_record": pct < 70,
            "skill_lead_days": 30,
            "skill_seasons": 5,
            "skill_mape": 18.0,
            "skill_nrmse": nrmse,
            "naive_nrmse": 0.25,
            "trend_nrmse": 0.3,
            "beats_naive": nrmse < 0.25,
            "rain_pct_of_normal": 60.0 if county == HOSTILE else 98.0,
            "season_signal": "rain 40% below the county's normal to date (60 mm against 100)"
            if county == HOSTILE
            else None,
            "status": "ok",
            "computed_at": dt.datetime(2025, 4, 11, tzinfo=dt.UTC),
        }
        for county, forecast, pct, nrmse in (
            (HOSTILE, 650.0, 66.0, 0.31),
            ("Bungoma", 2900.0, 104.0, 0.12),
        )
    ]
    rows.append(
        {
            **base,
            "run_date": RUN_DATE,
            "county": "Embu",
            "season": "Long Rains",
            "season_year": 2025,
            "model_version": "7",
            "run_id": "20250410-abc",
            "n_plots": 8,
            "status": "too_few_plots",
            "message": "only 8 plots scored: a county figure needs at least 30",
            "computed_at": dt.datetime(2025, 4, 11, tzinfo=dt.UTC),
        }
    )
    return pd.DataFrame(rows)


def sample_page() -> str:
    rows = _rows()
    earlier = rows.assign(
        run_date=RUN_DATE - dt.timedelta(days=7),
        forecast_kg_per_ha=rows["forecast_kg_per_ha"] * 1.1,
    )
    trajectory = pd.concat([earlier, rows])
    summary = pd.DataFrame(
        [
            {
                "season": "Long Rains",
                "lead_days": 30,
                "counties": 2,
                "skill_mape": 18.0,
                "skill_nrmse": 0.21,
                "naive_nrmse": 0.25,
                "trend_nrmse": 0.3,
                "beats_naive": 1,
            }
        ]
    )
    return bulletin_html(rows, trajectory, summary, RUN_DATE)


def test_the_page_is_self_contained_and_escapes_every_name() -> None:
    page = sample_page()

    assert "<script" not in page and "<link" not in page and " src=" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert "Kitui &lt;script&gt;" in page
    assert page.count("<svg") == 3  # % of normal, and one season-so-far chart per figure


def test_the_page_says_what_a_reader_needs() -> None:
    page = sample_page()

    assert "County maize bulletin — 2025-04-10" in page
    assert "rain 40% below the county&#39;s normal to date" in page
    assert "Where the model has not beaten the county's average" in page
    assert "normalised RMSE 0.31 against 0.25" in page
    assert 'data-county="Embu" data-status="too_few_plots"' in page
    assert "only 8 plots scored" in page
    assert "lowest on record" in page
    assert "1 of 2" in page  # counties beating the mean, by lead


def test_the_percent_chart_draws_each_county_with_a_comparison() -> None:
    chart = percent_chart(_rows())
    assert chart.count("<circle") == 2  # Embu has no figure
    assert "66% of the five-year mean (below 80%)" in chart


def test_the_csv_holds_every_column_and_row() -> None:
    rows = _rows()
    back = pd.read_csv(io.BytesIO(bulletin_csv(rows)))

    assert list(back.columns) == [column.name for column in county_forecasts.columns]
    assert back["county"].tolist() == rows["county"].tolist()
    assert back["run_date"].unique().tolist() == ["2025-04-10"]
    assert back.loc[2, "forecast_kg_per_ha"] != back.loc[2, "forecast_kg_per_ha"]  # empty → NaN
