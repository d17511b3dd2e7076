"""The Forecasts view's pure parts: the plots' map data from a prediction log, the bulletin
lines a reader is told about, and the charts (inline SVG, text kept as text)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake
from nuru_yield.names import prediction_log_path
from nuru_yield.sample_data.counties import COUNTIES
from nuru_yield.ui import charts, page
from nuru_yield.ui.data import read_plot_map
from tests.fixtures.counties import LATEST, NO_SKILL, write_prediction_log


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(f"file://{tmp_path / 'lake'}")


def test_the_map_takes_champion_forecasts_over_their_normal_and_labels_every_county(
    lake: Lake,
) -> None:
    champions = write_prediction_log(lake, LATEST, plots_per_county=50)

    everything = read_plot_map(lake, LATEST)
    assert everything.plots == everything.drawn == champions  # challenger rows left out
    assert everything.unmapped == 0
    assert [label[0] for label in everything.labels] == sorted(c.name for c in COUNTIES)
    box = {c.name: c for c in COUNTIES}
    for county, latitude, longitude in everything.labels:  # where the county's plots are
        assert box[county].latitude[0] <= latitude <= box[county].latitude[1]
        assert box[county].longitude[0] <= longitude <= box[county].longitude[1]
    kitui = box[NO_SKILL]  # its plots are forecast at 60% of normal, the others' at 100%
    inside = (
        (everything.latitude >= kitui.latitude[0]) & (everything.latitude <= kitui.latitude[1])
        & (everything.longitude >= kitui.longitude[0]) & (everything.longitude <= kitui.longitude[1])
    )  # fmt: skip
    assert inside.sum() == 50
    assert np.median(everything.pct_of_normal[inside]) < 75 < np.median(everything.pct_of_normal)

    sampled = read_plot_map(lake, LATEST, max_points=100)
    assert (sampled.plots, sampled.drawn) == (champions, 100)
    assert sampled.labels == everything.labels  # labels count every plot, drawn or not
    assert read_plot_map(lake, LATEST, max_points=100).pct_of_normal.tolist() == (
        sampled.pct_of_normal.tolist()
    )  # the same plots every time


def test_forecasts_without_a_normal_are_counted_off_the_map(lake: Lake) -> None:
    write_prediction_log(lake, LATEST, plots_per_county=10)
    table = lake.read_parquet(prediction_log_path(LATEST))
    normal = table["normal_kg_per_ha"].to_pylist()
    normal[:7] = [None] * 7  # rows scored before the blend carried no normal
    index = table.schema.get_field_index("normal_kg_per_ha")
    lake.write_parquet(
        prediction_log_path(LATEST),
        table.set_column(index, "normal_kg_per_ha", pa.array(normal, pa.float64())),
    )

    plot_map = read_plot_map(lake, LATEST)
    assert (plot_map.plots, plot_map.unmapped) == (120 - 7, 7)
    assert np.isfinite(plot_map.pct_of_normal).all()


def test_a_night_without_a_prediction_log_has_no_map(lake: Lake) -> None:
    with pytest.raises(LakeError, match="not found"):
        read_plot_map(lake, dt.date(2025, 1, 1))


def _row(**changes: object) -> dict:
    row = {
        "county": "Kitui", "season": "Long Rains", "season_year": 2025, "lead_days": 58,
        "n_plots": 120, "plot_share": 0.93, "forecast_kg_per_ha": 612.4,
        "lower_kg_per_ha": 480.0, "upper_kg_per_ha": 790.0, "production_t": 51.2,
        "pct_of_5yr_mean": 71.0, "pct_of_lt_mean": 74.0, "hist_percentile": 8.0,
        "lowest_on_record": False, "lowest3_on_record": True, "rain_pct_of_normal": 61.0,
        "season_signal": "rain 39% below the county's normal to date",
        "skill_lead_days": 60, "skill_mape": 28.4, "skill_nrmse": 0.31, "naive_nrmse": 0.35,
        "trend_nrmse": 0.4, "beats_naive": True, "status": "ok", "message": None,
    }  # fmt: skip
    return {**row, **changes}


def test_a_bulletin_line_carries_the_figures_and_what_the_bulletin_says() -> None:
    line = page._county_row(_row())
    assert (line["forecast"], line["interval"], line["share"]) == ("612", "480–790", "93%")
    assert (line["mape"], line["nrmse"], line["skill_lead"], line["rain"]) == (
        "28%", "31%", "60", "61",
    )  # fmt: skip
    assert (line["record"], line["pct_5yr_css"], line["css"]) == (
        "among the 3 lowest", "well-below", "",
    )  # fmt: skip
    assert line["notes"] == ["rain 39% below the county's normal to date"]

    said = "in hindcasts 60 days after planting this model has not beaten the county's average"
    no_skill = page._county_row(_row(beats_naive=False, message=said))
    assert (no_skill["css"], no_skill["notes"][-1]) == ("no-skill", said)  # said once
    withheld = page._county_row(
        _row(
            status="too_few_plots",
            message="only 3 plots scored",
            forecast_kg_per_ha=None,
            beats_naive=None,
            season_signal=None,
        )
    )
    assert (withheld["css"], withheld["forecast"], withheld["notes"]) == (
        "withheld", "–", ["only 3 plots scored"],
    )  # fmt: skip


def test_the_skill_table_flags_leads_where_the_model_does_not_beat_the_mean() -> None:
    rows = [
        {"season": "Long Rains", "county": NO_SKILL, "lead_days": lead, "skill_nrmse": nrmse,
         "naive_nrmse": 0.35, "trend_nrmse": 0.4, "skill_mape": 30.0, "n_seasons": 5,
         "beats_naive": nrmse < 0.35}
        for lead, nrmse in ((30, 0.41), (60, 0.30))
    ]  # fmt: skip
    table = page._skill_table(rows, "Long Rains")
    assert table["leads"] == [30, 60]
    [county] = table["counties"]
    assert [(cell["text"], cell["css"]) for cell in county["cells"]] == [
        ("41% / 35%", "no-skill"),
        ("30% / 35%", ""),
    ]
    assert "MAPE 30%; 5 hindcast seasons" in county["cells"][0]["title"]


def test_charts_are_inline_svg_with_their_text() -> None:
    nights = [dt.date(2025, 4, 1) + dt.timedelta(days=7 * week) for week in range(4)]
    trajectory = [
        {"run_date": night, "county": county, "season": "Long Rains", "season_year": 2025,
         "forecast_kg_per_ha": None if county == "Narok" else 1000.0 + week,
         "lower_kg_per_ha": None if county == "Narok" else 800.0,
         "upper_kg_per_ha": None if county == "Narok" else 1300.0,
         "mean_5yr_kg_per_ha": None if county == "Narok" else 1100.0}
        for week, night in enumerate(nights) for county in ("Makueni", "Narok")
    ]  # fmt: skip
    svg = charts.trajectory_svg(trajectory, "Long Rains", 2025, nights[-1])
    assert svg.startswith("<svg") and "<?xml" not in svg and "<metadata>" not in svg
    assert ">Makueni</text>" in svg and ">Narok</text>" in svg
    assert ">no county figure</text>" in svg  # Narok: withheld every night
    assert "5-year mean (dashed)" in svg

    skill = [
        {"season": "Long Rains", "county": county, "lead_days": lead, "skill_nrmse": 0.3,
         "naive_nrmse": 0.35, "trend_nrmse": 0.4}
        for county in ("Makueni", "Kitui") for lead in (30, 60, 90, 120)
    ]  # fmt: skip
    svg = charts.skill_svg(skill, "Long Rains")
    assert ">naive: the county's mean of the other seasons</text>" in svg
    assert ">days after planting</text>" in svg
