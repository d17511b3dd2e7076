"""What the Forecasts view shows, read from the predictions database and the lake; nothing
here writes. Plain Python: :mod:`nuru_yield.ui.app` calls it inside Airflow's API server,
the tests call it directly.

* :func:`read_night` — the nights there are (every run date with county forecasts or a
  scoring run, newest first) and, for one of them, its county bulletin
  (``county_forecasts``), the forecast trajectory of each of its seasons up to that night,
  the skill of the night's champion by lead time (``county_skill``) and its scoring runs
  (``scoring_runs``: status, message, the Airflow run). A database without the county tables
  (a schema older than the bulletins) still shows its scoring runs.
* :func:`read_plot_map` — every champion forecast of the night as % of its normal, with its
  plot's coordinates, from the night's prediction log (the database keeps no coordinates);
  at most ``max_points`` plots are drawn, every plot counts in the county labels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from nuru_yield.db.engine import database_errors
from nuru_yield.errors import NuruError
from nuru_yield.lake import Lake
from nuru_yield.names import CHAMPION, MODEL_NAME, prediction_log_path

COUNTY_FORECASTS = "county_forecasts"
COUNTY_SKILL = "county_skill"
SCORING_RUNS = "scoring_runs"
# The plots a map draws at most: enough to see a county's spread, light enough for a page
# (the points are one raster image in the SVG; every plot still counts in the labels).
MAP_POINTS = 20_000
# The night's scoring runs, as the view lists them.
_RUN_COLUMNS = (
    "run_id", "status", "model_version", "plots_scored", "plots_rejected", "started_at",
    "finished_at", "duration_s", "dag_run_id", "message",
)  # fmt: skip

Row = dict[str, Any]


class NightNotFoundError(NuruError):
    """The night asked for has neither county forecasts nor a scoring run."""


@dataclass(frozen=True)
class Night:
    """One night of the view. ``night`` is None when the database has no night at all."""

    night: dt.date | None
    nights: tuple[dt.date, ...]
    counties: list[Row] = field(default_factory=list)  # county_forecasts rows of the night
    trajectories: list[Row] = field(default_factory=list)  # its seasons' rows up to the night
    skill: list[Row] = field(default_factory=list)  # county_skill of its model versions
    scoring_runs: list[Row] = field(default_factory=list)  # newest first
    missing_tables: tuple[str, ...] = ()  # county tables the database does not have (yet)

    @property
    def seasons(self) -> list[tuple[str, int]]:
        """The (season, season year) pairs of the night's bulletin, in table order."""
        return list(dict.fromkeys((row["season"], row["season_year"]) for row in self.counties))


def _reflect(connection: sa.Connection) -> dict[str, sa.Table]:
    """The view's tables that exist, with their columns as the database has them (the
    bulletin tables may carry more columns than the view uses: all of them are read)."""
    present = set(sa.inspect(connection).get_table_names())
    metadata = sa.MetaData()
    return {
        name: sa.Table(name, metadata, autoload_with=connection)
        for name in (COUNTY_FORECASTS, COUNTY_SKILL, SCORING_RUNS)
        if name in present
    }


def _rows(connection: sa.Connection, query: sa.Select[Any]) -> list[Row]:
    return [dict(row) for row in connection.execute(query).mappings()]


def _nights(connection: sa.Connection, tables: Mapping[str, sa.Table]) -> tuple[dt.date, ...]:
    selects = [
        sa.select(tables[name].c.run_date.label("night"))
        for name in (COUNTY_FORECASTS, SCORING_RUNS)
        if name in tables
    ]
    if not selects:
        return ()
    union = sa.union(*selects).subquery()
    nights = connection.execute(sa.select(union.c.night).order_by(union.c.night.desc()))
    return tuple(nights.scalars())


def read_night(engine: sa.Engine, night: dt.date | None = None) -> Night:
    """The view of ``night`` (default: the newest). Raises :class:`NightNotFoundError` for a
    night the database does not have, :class:`~nuru_yield.errors.DatabaseError` (one line,
    password masked) when it cannot be read."""
    with database_errors(engine, "reading the Forecasts view"), engine.connect() as connection:
        tables = _reflect(connection)
        missing = tuple(name for name in (COUNTY_FORECASTS, COUNTY_SKILL) if name not in tables)
        nights = _nights(connection, tables)
        if night is None and not nights:
            return Night(None, (), missing_tables=missing)
        night = night or nights[0]
        if night not in nights:
            raise NightNotFoundError(f"no county forecasts and no scoring run on {night}")
        scoring_runs: list[Row] = []
        if SCORING_RUNS in tables:
            runs = tables[SCORING_RUNS]
            columns = [runs.c[name] for name in _RUN_COLUMNS if name in runs.c]
            scoring_runs = _rows(
                connection,
                sa.select(*columns)
                .where(runs.c.run_date == night)
                .order_by(runs.c.started_at.desc()),
            )
        bulletin = _read_bulletin(connection, tables, night) if COUNTY_FORECASTS in tables else {}
    return Night(night, nights, scoring_runs=scoring_runs, missing_tables=missing, **bulletin)


def _read_bulletin(
    connection: sa.Connection, tables: Mapping[str, sa.Table], night: dt.date
) -> dict[str, list[Row]]:
    """The night's county rows, its seasons' rows up to the night, its versions' skill."""
    forecasts = tables[COUNTY_FORECASTS]
    counties = _rows(
        connection,
        sa.select(forecasts)
        .where(forecasts.c.run_date == night)
        .order_by(forecasts.c.season_year, forecasts.c.season, forecasts.c.county),
    )
    trajectories = []
    for season, season_year in dict.fromkeys((r["season"], r["season_year"]) for r in counties):
        trajectories += _rows(
            connection,
            sa.select(forecasts)
            .where(
                forecasts.c.season == season,
                forecasts.c.season_year == season_year,
                forecasts.c.run_date <= night,
            )
            .order_by(forecasts.c.county, forecasts.c.run_date),
        )
    versions = sorted({row["model_version"] for row in counties})
    skill = []
    if COUNTY_SKILL in tables and versions:
        table = tables[COUNTY_SKILL]
        query = sa.select(table).where(table.c.model_version.in_(versions))
        if "model_name" in table.c:  # the registered model scoring serves
            query = query.where(table.c.model_name == MODEL_NAME)
        skill = _rows(connection, query.order_by(table.c.season, table.c.county, table.c.lead_days))
    return {"counties": counties, "trajectories": trajectories, "skill": skill}


@dataclass(frozen=True)
class PlotMap:
    """The night's plots as % of their normal: the drawn sample and per-county labels."""

    latitude: np.ndarray
    longitude: np.ndarray
    pct_of_normal: np.ndarray
    labels: list[tuple[str, float, float]]  # county, mean latitude, mean longitude (all plots)
    plots: int  # champion forecasts of the night on the map (drawn or not)
    unmapped: int  # champion forecasts without a normal (scored before it) or coordinates
    source: str  # the prediction log's URI

    @property
    def drawn(self) -> int:
        return len(self.pct_of_normal)


_MAP_COLUMNS = [
    "model_name", "county", "latitude", "longitude", "predicted_yield_kg_per_ha",
    "normal_kg_per_ha",
]  # fmt: skip


def read_plot_map(lake: Lake, night: dt.date, max_points: int = MAP_POINTS) -> PlotMap:
    """The night's champion forecasts as % of normal, located (see the module docstring).
    Raises :class:`~nuru_yield.errors.LakeError` when the night has no prediction log."""
    import pyarrow.compute as pc

    path = prediction_log_path(night)
    table = lake.read_parquet(
        path, columns=_MAP_COLUMNS, filters=pc.field("model_name") == CHAMPION
    )
    normal = pc.field("normal_kg_per_ha")
    located = table.filter(
        normal.is_valid()
        & (normal > 0)
        & pc.field("latitude").is_valid()
        & pc.field("longitude").is_valid()
    )
    means = located.group_by("county").aggregate([("latitude", "mean"), ("longitude", "mean")])
    labels = sorted(
        (str(county), latitude, longitude)
        for county, latitude, longitude in zip(
            *(means[name].to_pylist() for name in ("county", "latitude_mean", "longitude_mean")),
            strict=True,
        )
        if county is not None
    )
    on_map = located.num_rows
    if on_map > max_points:  # the same plots for the same log: a fixed seed
        rng = np.random.default_rng(0)
        located = located.take(np.sort(rng.choice(on_map, max_points, replace=False)))
    pct = pc.multiply(
        pc.divide(located["predicted_yield_kg_per_ha"], located["normal_kg_per_ha"]), 100.0
    )
    return PlotMap(
        latitude=located["latitude"].to_numpy(),
        longitude=located["longitude"].to_numpy(),
        pct_of_normal=pct.to_numpy(),
        labels=labels,
        plots=on_map,
        unmapped=table.num_rows - on_map,
        source=lake.uri(path),
    )


def json_rows(rows: Sequence[Row]) -> list[Row]:
    """Rows for a JSON answer: dates and times as ISO strings, non-finite floats as null."""

    def value(item: Any) -> Any:
        if isinstance(item, dt.date):  # datetimes too
            return item.isoformat()
        if isinstance(item, float) and not np.isfinite(item):
            return None
        return item

    return [{key: value(item) for key, item in row.items()} for row in rows]
