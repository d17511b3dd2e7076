"""Every derived feature is null when its inputs are, or takes its documented default.

A feature that reads 0 where nothing was known is silently wrong: ``max_dry_spell_days``
once read 0 ("no dry spell") for a plot-season without a single valid rain value, and with
the dry-spell monotone constraint that can only raise a forecast. :data:`DECLARED` says,
for every column of ``FEATURE_COLUMNS``, what it is computed from and what it is when that
is missing; a property test over random raw tables (hypothesis) holds the feature code to
it. A new feature column without a declaration here fails the first test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuru_yield.contract import CLEAR_MAX_CLOUD
from nuru_yield.features.columns import FEATURE_COLUMNS, RECENT_DAYS, TEMPERATURE_RANGE_C
from nuru_yield.features.compute import season_to_date
from nuru_yield.features.raw import RawInputs

# What a feature is computed from: a day with a valid rain value ("rain"), a day with valid
# minimum and maximum temperatures ("temperature"), a clear valid NDVI observation of the
# plot ("clear_ndvi"), or a column of the plot's row.
SERIES_INPUTS = ("rain", "temperature", "clear_ndvi")
PLOT_INPUTS = ("planting_date", "altitude", "latitude", "longitude", "season")


@dataclass(frozen=True)
class Declared:
    """A feature's inputs (it needs every one of them), the days it reads them over (the
    season-to-date window, or its last ``RECENT_DAYS``), and what it is when one of them is
    missing throughout that window: null, a documented default (``default``), or no row at
    all (``quarantined``: the plot-season is rejected with a reason)."""

    inputs: tuple[str, ...]
    recent: bool = False
    default: float | None = None
    quarantined: bool = False


DECLARED: dict[str, Declared] = {
    "precip_total": Declared(("rain",)),
    "rainy_days": Declared(("rain",)),
    "max_dry_spell_days": Declared(("rain",)),
    "precip_last_30d": Declared(("rain",), recent=True),
    "gdd_sum": Declared(("temperature",)),
    "heat_days": Declared(("temperature",)),
    "tmax_mean": Declared(("temperature",)),
    # The share of the window's days with valid rain and temperatures: 0 when there are none.
    "weather_coverage": Declared(("rain", "temperature"), default=0.0),
    "mean_ndvi": Declared(("clear_ndvi",)),
    "max_ndvi": Declared(("clear_ndvi",)),
    "ndvi_auc": Declared(("clear_ndvi",)),
    "ndvi_slope_30d": Declared(("clear_ndvi",), recent=True),
    # The count of clear observations: 0 when there are none (and ndvi_missing is true).
    "n_clear_ndvi_obs": Declared(("clear_ndvi",), default=0.0),
    "days_after_planting": Declared(("planting_date",), quarantined=True),
    "planting_doy": Declared(("planting_date",), quarantined=True),
    "altitude": Declared(("altitude",)),
    "latitude": Declared(("latitude",), quarantined=True),
    "longitude": Declared(("longitude",), quarantined=True),
    "is_short_rains": Declared(("season",), quarantined=True),
}

AS_OF = dt.date(2025, 5, 15)
# Windows of at most 40 days: no crop reaches maturity in them, so each window runs from
# planting to AS_OF (the season end cut is tested elsewhere).
MAX_AGE = 40
FIRST_DAY = AS_OF - dt.timedelta(days=MAX_AGE + 5)
N_DAYS = (AS_OF - FIRST_DAY).days + 1
CELL = 100


def test_every_feature_column_declares_its_inputs_and_what_it_is_without_them() -> None:
    assert list(DECLARED) == FEATURE_COLUMNS, (
        "declare each feature column in DECLARED (its inputs, and null, a documented default "
        "or quarantine when they are missing)"
    )
    for name, declared in DECLARED.items():
        assert declared.inputs and set(declared.inputs) <= {*SERIES_INPUTS, *PLOT_INPUTS}, name
        plot_only = set(declared.inputs) <= set(PLOT_INPUTS)
        assert not (declared.quarantined and not plot_only), name


# --- random raw tables --------------------------------------------------------------------
def _maybe(values: st.SearchStrategy[float], gone: bool) -> st.SearchStrategy[float | None]:
    """A value, sometimes missing; always missing when the whole input is ``gone``."""
    return st.none() if gone else st.one_of(st.none(), values, values, values)


@st.composite
def raw_tables(draw: st.DrawFn) -> tuple[RawInputs, frozenset[str]]:
    """One weather cell, 1–3 plot-seasons in progress on AS_OF, and their NDVI; each input
    sometimes partly missing, and the inputs in ``gone`` missing on every day / every row."""
    gone = draw(st.frozensets(st.sampled_from([*SERIES_INPUTS, *PLOT_INPUTS])))
    rain = st.floats(0.0, 60.0)
    temperature = st.floats(TEMPERATURE_RANGE_C[0] + 20, TEMPERATURE_RANGE_C[1] - 20)
    days = pd.date_range(FIRST_DAY, periods=N_DAYS)
    precip = draw(st.lists(_maybe(rain, "rain" in gone), min_size=N_DAYS, max_size=N_DAYS))
    tmin = draw(
        st.lists(_maybe(temperature, "temperature" in gone), min_size=N_DAYS, max_size=N_DAYS)
    )
    spread = draw(st.lists(st.floats(0.0, 15.0), min_size=N_DAYS, max_size=N_DAYS))
    weather = pd.DataFrame(
        {
            "cell_id": CELL,
            "date": days,
            "precip_mm": pd.array(precip, dtype="Float64").astype(float),
            "tmin_c": pd.array(tmin, dtype="Float64").astype(float),
            # tmax ≥ tmin: a missing tmin leaves the day without a valid pair either way.
            "tmax_c": pd.array(tmin, dtype="Float64").astype(float) + np.asarray(spread),
        }
    )
    n_plots = draw(st.integers(1, 3))
    ages = draw(st.lists(st.integers(0, MAX_AGE), min_size=n_plots, max_size=n_plots))

    def column(name: str, value: st.SearchStrategy[Any]) -> list[Any]:
        strategy = st.none() if name in gone else st.one_of(value, value, value, st.none())
        return draw(st.lists(strategy, min_size=n_plots, max_size=n_plots))

    plots = pd.DataFrame(
        {
            "plot_id": np.arange(1, n_plots + 1),
            "latitude": column("latitude", st.floats(-0.2, 0.2)),
            "longitude": column("longitude", st.floats(34.8, 35.2)),
            "altitude": column("altitude", st.floats(500.0, 2500.0)),
            "county": "Siaya",
            "season": column("season", st.just("Long Rains")),
            "season_year": AS_OF.year,
            "planting_date": [
                None if planted is None else pd.Timestamp(AS_OF - dt.timedelta(days=age))
                for planted, age in zip(column("planting_date", st.just(True)), ages, strict=True)
            ],
        }
    )
    plots["planting_date"] = pd.to_datetime(plots["planting_date"])
    plots[["latitude", "longitude", "altitude"]] = plots[
        ["latitude", "longitude", "altitude"]
    ].astype(float)
    observation = st.tuples(
        st.integers(1, n_plots),
        st.integers(0, N_DAYS - 1),
        _maybe(st.floats(-0.2, 0.95), "clear_ndvi" in gone),
        st.one_of(st.none(), st.floats(0.0, 1.0)),
    )
    observed = draw(st.lists(observation, max_size=25))
    ndvi = pd.DataFrame(
        {
            "plot_id": [o[0] for o in observed],
            "date": pd.to_datetime([FIRST_DAY + dt.timedelta(days=o[1]) for o in observed]),
            "ndvi": pd.array([o[2] for o in observed], dtype="Float64").astype(float),
            "cloud_fraction": pd.array([o[3] for o in observed], dtype="Float64").astype(float),
        },
        columns=["plot_id", "date", "ndvi", "cloud_fraction"],
    )
    cells = pd.DataFrame({"cell_id": [CELL], "latitude": [0.0], "longitude": [35.0]})
    return RawInputs(plots=plots, cells=cells, weather=weather, ndvi=ndvi), gone


# --- what the raw tables hold for one plot-season ----------------------------------------
def _series_available(raw: RawInputs, plot_id: int, first: pd.Timestamp) -> dict[str, bool]:
    """Whether each series input has a value in the days from ``first`` to AS_OF."""
    end = pd.Timestamp(AS_OF)
    weather = raw.weather[raw.weather["date"].between(first, end)]
    ndvi = raw.ndvi[(raw.ndvi["plot_id"] == plot_id) & raw.ndvi["date"].between(first, end)]
    clear = ndvi["ndvi"].notna() & ~(ndvi["cloud_fraction"] > CLEAR_MAX_CLOUD)
    return {
        "rain": bool(weather["precip_mm"].notna().any()),
        "temperature": bool((weather["tmin_c"].notna() & weather["tmax_c"].notna()).any()),
        "clear_ndvi": bool(clear.any()),
    }


def _available(raw: RawInputs, row: pd.Series, recent: bool) -> dict[str, bool]:
    planted = pd.Timestamp(row["planting_date"])
    first = max(planted, pd.Timestamp(AS_OF - dt.timedelta(days=RECENT_DAYS - 1)))
    plot = raw.plots.set_index("plot_id").loc[row["plot_id"]]
    return {
        **_series_available(raw, row["plot_id"], first if recent else planted),
        **{name: bool(pd.notna(plot[name])) for name in PLOT_INPUTS},
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_tables())
def test_a_feature_is_null_or_its_default_when_its_inputs_are_missing(
    tables: tuple[RawInputs, frozenset[str]],
) -> None:
    raw, gone = tables
    result = season_to_date(raw, AS_OF, season_max_days=180)
    published = set(result.features["plot_id"])
    for name, declared in DECLARED.items():
        if declared.quarantined:
            missing = raw.plots[declared.inputs[0]].isna()
            assert not published & set(raw.plots.loc[missing, "plot_id"]), name
            rejected = set(result.rejected["plot_id"])
            assert set(raw.plots.loc[missing, "plot_id"]) <= rejected, name
            continue
        for _, row in result.features.iterrows():
            available = _available(raw, row, declared.recent)
            if all(available[needed] for needed in declared.inputs):
                continue
            value = row[name]
            if declared.default is None:
                assert np.isnan(value), (name, row["plot_id"], value, sorted(gone))
            else:
                assert value == declared.default, (name, row["plot_id"], value, sorted(gone))


def test_a_plot_season_without_any_valid_rain_has_no_dry_spell_value() -> None:
    """The case that was wrong: every other rain feature null, the dry spell 0."""
    days = pd.date_range(FIRST_DAY, periods=N_DAYS)
    weather = pd.DataFrame(
        {"cell_id": CELL, "date": days, "precip_mm": np.nan, "tmin_c": 15.0, "tmax_c": 28.0}
    )
    plots = pd.DataFrame(
        {
            "plot_id": [1],
            "latitude": [0.0],
            "longitude": [35.0],
            "altitude": [1500.0],
            "county": ["Siaya"],
            "season": ["Long Rains"],
            "season_year": [AS_OF.year],
            "planting_date": pd.to_datetime([AS_OF - dt.timedelta(days=20)]),
        }
    )
    cells = pd.DataFrame({"cell_id": [CELL], "latitude": [0.0], "longitude": [35.0]})
    ndvi = pd.DataFrame(columns=["plot_id", "date", "ndvi", "cloud_fraction"]).astype(
        {"plot_id": np.int64, "date": "datetime64[ns]", "ndvi": float, "cloud_fraction": float}
    )
    raw = RawInputs(plots=plots, cells=cells, weather=weather, ndvi=ndvi)
    [row] = season_to_date(raw, AS_OF, season_max_days=180).features.to_dict("records")
    assert np.isnan(row["precip_total"]) and np.isnan(row["rainy_days"])
    assert np.isnan(row["max_dry_spell_days"])
    assert row["gdd_sum"] == pytest.approx(21 * 11.5)  # the temperatures still count
