"""The scoring night's county step: the I/O edge around :mod:`nuru_yield.counties`
(docs/DESIGN.md, "County bulletins").

:func:`publish_counties` runs in the publish step of every scoring run, after the partition
swap (``scoring.run``), and on its own when a DAG retries it. For run date D it reads the
champion's rows of the published prediction log, the raw plots (county plot-seasons, areas),
the harvest labels (the counties' records), the champion's ``county_skill`` and, for a
sample of plots, the night's features and ten earlier years of their weather (the season
signals); it replaces D's rows of ``county_forecasts`` and writes the bulletin files
``monitoring/bulletins/{D}/bulletin.html`` and ``county_forecasts.csv``. Rerunning D
replaces exactly those.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import sqlalchemy as sa

from nuru_yield.config import get_settings
from nuru_yield.contract import PLOT_AREA, YIELD_LABEL
from nuru_yield.counties.figures import COUNTY_SEASON, county_record, labelled_plot_seasons
from nuru_yield.counties.forecasts import FORECAST, county_forecasts
from nuru_yield.counties.render import bulletin_csv, bulletin_html
from nuru_yield.counties.signals import (
    HEAT,
    RAIN,
    SIGNAL_COLUMNS,
    TMAX,
    earlier_windows,
    normal_to_date,
    sample,
    season_signals,
)
from nuru_yield.counties.skill import skill_by_lead
from nuru_yield.db.engine import database_errors, get_engine
from nuru_yield.db.loader import replace_rows
from nuru_yield.db.schema import county_forecasts as county_table
from nuru_yield.db.schema import county_skill
from nuru_yield.db.values import plain
from nuru_yield.errors import NuruError
from nuru_yield.features.compute import weather_aggregates
from nuru_yield.features.raw import load_weather
from nuru_yield.lake import Lake
from nuru_yield.names import (
    CHAMPION,
    MODEL_NAME,
    RAW_PLOTS,
    RAW_YIELDS,
    bulletin_csv_path,
    bulletin_html_path,
    features_path,
    prediction_log_path,
)
from nuru_yield.steps import StepResult
from nuru_yield.training.dataset import split_labels

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

KEYS = ["plot_id", "season_year", "season"]
_LOG_COLUMNS = [*KEYS, "county", "days_after_planting", FORECAST, "model_version", "run_id"]
_SIGNAL_FEATURES = [*KEYS, "planting_date", "weather_cell_id", RAIN, TMAX, HEAT]
_TRAJECTORY = [
    "run_date",
    *COUNTY_SEASON,
    "forecast_kg_per_ha",
    "lower_kg_per_ha",
    "upper_kg_per_ha",
    "mean_5yr_kg_per_ha",
]


@dataclass(frozen=True)
class CountyResult(StepResult):
    """What the county step of a night wrote: its rows by status and the bulletin files."""

    run_date: dt.date
    model_version: str
    rows: int
    statuses: dict[str, int]
    bulletin_uri: str
    table_uri: str
    seconds: float


def publish_counties(
    run_date: dt.date, *, lake: Lake | None = None, settings: Settings | None = None
) -> CountyResult:
    """Write D's county forecasts and bulletin files from the published night (see the
    module docstring)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = get_engine(settings.predictions_db_url)
    started = time.monotonic()
    scored = _scored(lake, run_date)
    version = str(scored["model_version"].iloc[0])
    plots = _raw_plots(lake)
    if plots is not None:
        area = [PLOT_AREA] if PLOT_AREA in plots else []
        scored = scored.merge(plots[[*KEYS, *area]].drop_duplicates(KEYS), on=KEYS, how="left")
    skill = _skill(engine, version)
    rows = county_forecasts(
        scored,
        None if plots is None else _plot_seasons(plots, scored),
        _record(lake, plots, settings.county_min_labels),
        skill,
        _signals(lake, run_date, scored),
        min_plots=settings.county_min_plots,
        target=YIELD_LABEL,
    )
    rows = rows.assign(
        run_date=run_date,
        model_version=version,
        run_id=str(scored["run_id"].iloc[0]),
        computed_at=dt.datetime.now(dt.UTC),  # audit stamp only
    )[[column.name for column in county_table.columns]]
    records = [plain(record) for record in rows.to_dict(orient="records")]
    replace_rows(engine, county_table, {"run_date": run_date}, records)
    trajectory = pd.concat([_earlier(engine, rows, run_date), rows[_TRAJECTORY]])
    html = bulletin_html(rows, trajectory, skill_by_lead(skill), run_date)
    bulletin_uri = lake.write_bytes(bulletin_html_path(run_date), html.encode())
    table_uri = lake.write_bytes(bulletin_csv_path(run_date), bulletin_csv(rows))
    result = CountyResult(
        run_date=run_date,
        model_version=version,
        rows=len(rows),
        statuses=dict(Counter(rows["status"])),
        bulletin_uri=bulletin_uri,
        table_uri=table_uri,
        seconds=round(time.monotonic() - started, 3),
    )
    log.info("county forecasts %s: %s", run_date, result.xcom())
    return result


def _scored(lake: Lake, run_date: dt.date) -> pd.DataFrame:
    """The champion's rows of the night's published prediction log."""
    path = prediction_log_path(run_date)
    if not lake.exists(path):
        raise NuruError(f"no county forecasts for {run_date}: {lake.uri(path)} not found")
    frame = lake.read_parquet(
        path, columns=_LOG_COLUMNS, filters=ds.field("model_name") == CHAMPION
    ).to_pandas()
    if frame.empty:
        raise NuruError(f"no county forecasts for {run_date}: the night has no champion rows")
    return frame


def _raw_plots(lake: Lake) -> pd.DataFrame | None:
    """Every plot-season's key, county and (when the file has it) area; None without the
    file (a lake whose features came from elsewhere)."""
    if not lake.exists(RAW_PLOTS):
        log.warning("county forecasts: %s not found", lake.uri(RAW_PLOTS))
        return None
    present = lake.open_parquet(RAW_PLOTS).schema_arrow.names
    columns = [*KEYS, "county", *([PLOT_AREA] if PLOT_AREA in present else [])]
    return lake.read_parquet(RAW_PLOTS, columns=columns).to_pandas()


def _plot_seasons(plots: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """The raw plot-seasons per county-season of the night (the plot share's denominator)."""
    years = scored["season_year"].unique().tolist()
    return (
        plots[plots["season_year"].isin(years)]
        .groupby(COUNTY_SEASON, observed=True)
        .size()
        .rename("n")
        .reset_index()
    )


def _record(lake: Lake, plots: pd.DataFrame | None, min_labels: int) -> pd.DataFrame:
    """The counties' realized county-season yields from the harvest labels."""
    if plots is None or not lake.exists(RAW_YIELDS):
        return pd.DataFrame(columns=[*COUNTY_SEASON, YIELD_LABEL, "n"])
    good, rejected = split_labels(lake.read_parquet(RAW_YIELDS).to_pandas())
    if len(rejected):
        log.warning("county record: %d harvest labels quarantined", len(rejected))
    return county_record(labelled_plot_seasons(good, plots, YIELD_LABEL), YIELD_LABEL, min_labels)


def _skill(engine: sa.Engine, version: str) -> pd.DataFrame:
    """The champion version's ``county_skill`` rows (none: no interval, no track record)."""
    query = sa.select(county_skill).where(
        county_skill.c.model_name == MODEL_NAME, county_skill.c.model_version == version
    )
    with database_errors(engine, "reading county skill"), engine.connect() as connection:
        found = connection.execute(query).mappings().all()
    return pd.DataFrame(found, columns=[column.name for column in county_skill.columns])


def _signals(lake: Lake, run_date: dt.date, scored: pd.DataFrame) -> pd.DataFrame:
    """The season signals of the night's county-seasons, from a sample of their plots."""
    picked = sample(scored[[*KEYS, "county"]])
    path = features_path(run_date)
    if picked.empty or not lake.exists(path):
        return pd.DataFrame(columns=[*COUNTY_SEASON, *SIGNAL_COLUMNS])
    wanted = ds.field("plot_id").isin(picked["plot_id"].astype("int64").unique().tolist())
    features = lake.read_parquet(path, columns=_SIGNAL_FEATURES, filters=wanted).to_pandas()
    current = picked.merge(features, on=KEYS).reset_index(drop=True)
    windows = earlier_windows(current["planting_date"].to_numpy("datetime64[D]"), run_date)
    epoch = dt.date(1970, 1, 1)
    ranges = [
        (
            epoch + dt.timedelta(days=int(group["start"].min())),
            epoch + dt.timedelta(days=int(group["end"].max())),
        )
        for _, group in windows.groupby("years_back")
    ]
    cells = current["weather_cell_id"].to_numpy(np.int64)
    weather = load_weather(lake, ranges, sorted(set(cells.tolist())))
    aggregates, _ = weather_aggregates(
        cells[windows["row"].to_numpy()],
        windows["start"].to_numpy(np.int64),
        windows["end"].to_numpy(np.int64),
        weather,
    )
    normal = normal_to_date(windows.assign(**aggregates), len(current))
    return season_signals(current, normal)


def _earlier(engine: sa.Engine, rows: pd.DataFrame, run_date: dt.date) -> pd.DataFrame:
    """The earlier nights' county forecasts of the night's county-seasons (for the
    bulletin's season-so-far charts)."""
    years = sorted({int(year) for year in rows["season_year"]})
    query = sa.select(*(county_table.c[name] for name in _TRAJECTORY)).where(
        county_table.c.run_date < run_date, county_table.c.season_year.in_(years)
    )
    with database_errors(engine, "reading earlier county forecasts"), engine.connect() as c:
        earlier = pd.DataFrame(c.execute(query).all(), columns=_TRAJECTORY)
    return earlier.merge(rows[COUNTY_SEASON], on=COUNTY_SEASON)
