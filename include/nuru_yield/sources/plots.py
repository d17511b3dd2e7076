"""Plots and plot-seasons from what a field app exports: GeoJSON, GeoParquet, a zipped
Shapefile, or a CSV with latitude / longitude (docs/DESIGN.md, "Real sources").

* Polygons give the plot's centroid and area (both computed in an equal-area projection,
  EPSG:6933, the centroid then back to WGS 84); points give the point. A file in another
  CRS is reprojected; a file with no CRS is taken as WGS 84 only if its coordinates are
  degrees.
* Area (``area_ha``, hectares): an area column (``area_ha``, ``area``, ``hectares``, …) where
  a row has a value, else the polygon's area, else null (a point). The surveyed figure wins:
  it is what the field app's user measured or declared, and a drawn boundary is often a
  rough sketch. An area that is not a number, not positive or above
  :data:`MAX_AREA_HA` quarantines the row.
* Altitude: sampled from the DEM GeoTIFF ``DEM_SOURCE`` at the centroid when set, else an
  ``altitude`` column (``altitude_m``, ``elevation``, …); neither is one error line: an
  altitude is never made up.
* County: a ``county`` column, else the county polygon of ``COUNTIES_SOURCE`` holding the
  centroid.
* Plot-season rows (``season``, ``season_year``, ``planting_date``) from the same file, or
  from ``PLOT_SEASONS_SOURCE``, a CSV keyed by plot id. ``season_year`` may be left out: a
  Long Rains crop's year is its planting year, a Short Rains crop planted in January
  belongs to the year before.

Rows with a problem (no or invalid geometry, outside Kenya, a duplicate plot id, a value
that does not convert, an unknown season, an impossible area) are quarantined with a reason.

Two steps, so that a night can split the work by plot bucket: :func:`read_file` reads a
file as downloaded (every attribute a string; a vector file's geometries in their CRS,
checked) and :func:`plot_ids` finds its plot ids; :func:`read_plots` turns any subset of
such rows (all of one plot's, with its seasons) into contract rows and each plot's boundary
in WGS 84 (:data:`~nuru_yield.contract.PLOT_GEOMETRIES_SCHEMA`). :func:`to_arrow` and
:func:`from_arrow` stage the rows as read in between.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield.contract import PLOT_AREA, PLOT_GEOMETRIES_SCHEMA, PLOTS_WITH_AREA_SCHEMA
from nuru_yield.errors import DataValidationError
from nuru_yield.sources.rasters import first_line
from nuru_yield.sources.tables import (
    REASON,
    SOURCE,
    Quarantine,
    find_column,
    integers,
    numbers,
    read_csv,
    require_column,
)

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

PRODUCT = "plots"
CRS_KEY = "nuru_yield.crs"  # the CRS of staged rows as read (:func:`to_arrow`)
_GEOMETRY = "geometry"
_POLYGON_AREA = "_polygon_area_ha"  # the boundary's area; an area column wins over it
# The largest area (ha) taken for one plot. Smallholder maize plots are 0.1–5 ha and the
# largest commercial fields a few hundred: more is a unit slip (square metres read as
# hectares) or the boundary of a farm block or a county, never one plot.
MAX_AREA_HA = 1_000.0
EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: cylindrical equal-area
# Kenya's extent with a 0.1° margin (Natural Earth admin-0: 4.72° S–5.03° N, 33.91–41.90° E).
KENYA_LATITUDE = (-4.82, 5.13)
KENYA_LONGITUDE = (33.81, 42.00)
SPELLINGS: dict[str, tuple[str, ...]] = {
    "plot_id": ("plotid", "plot", "plot_no", "plot_number", "id", "fid"),
    "latitude": ("lat", "gps_lat", "gps_latitude", "y"),
    "longitude": ("lon", "lng", "long", "gps_lon", "gps_long", "gps_longitude", "x"),
    "altitude": ("altitude_m", "elevation", "elevation_m", "alt", "gps_altitude", "elev"),
    "county": ("county_name", "admin1", "adm1_en", "name_1"),
    "season": ("season_name",),
    "season_year": ("year", "seasonyear"),
    "planting_date": ("planting", "date_planted", "sowing_date", "planted_on", "planting_dt"),
    PLOT_AREA: ("area", "hectares", "area_hectares", "plot_area_ha", "plot_area", "size_ha"),
}
SEASONS = {
    "longrains": "Long Rains", "lr": "Long Rains", "long": "Long Rains", "masika": "Long Rains",
    "shortrains": "Short Rains", "sr": "Short Rains", "short": "Short Rains", "vuli": "Short Rains",
}  # fmt: skip


@dataclass(frozen=True)
class PlotsRead:
    """Plot-season rows in the contract's columns (plus ``area_ha``), each plot's boundary
    in WGS 84 (one row per plot), and the quarantined rows with their reason and file."""

    good: pa.Table
    geometries: pa.Table
    rejected: pd.DataFrame
    total: int


def read_file(path: Path, name: str) -> pd.DataFrame:
    """One plot file as downloaded (``name`` for messages): a CSV as strings; a GeoJSON,
    GeoParquet or zipped Shapefile as a GeoDataFrame in its own CRS (a file without one
    only when its coordinates are degrees, then taken as WGS 84), attributes as strings."""
    if name.lower().endswith((".csv", ".csv.gz", ".txt")):
        return read_csv(path, name)
    import geopandas as gpd

    try:
        if name.lower().endswith((".parquet", ".geoparquet")):
            frame = gpd.read_parquet(path)
        else:
            source = f"/vsizip/{path}" if name.lower().endswith(".zip") else str(path)
            frame = gpd.read_file(source, engine="pyogrio", use_arrow=True)
    except Exception as error:
        raise DataValidationError(
            f"{name}: not a readable vector file ({first_line(error)})"
        ) from None
    frame = _with_crs(frame, name)
    for column in frame.columns:
        if column != frame.geometry.name:
            frame[column] = _strings(frame[column])
    return frame


def _strings(values: pd.Series) -> pd.Series:
    """Attribute values as the strings a CSV would hold (dates as ISO dates)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d").astype("string")
    return values.astype("string")


def plot_ids(frame: pd.DataFrame, name: str, mapping: dict[str, str]) -> pd.Series:
    """The rows' plot ids (nullable int64; null where missing or not a whole number)."""
    column = require_column(frame, "plot_id", SPELLINGS["plot_id"], mapping, name)
    return integers(frame[column])[0]


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Rows as read (:func:`read_file`) as an Arrow table: string attributes, and for a
    vector file the geometry as WKB (column ``geometry``) with the CRS in the metadata."""
    import shapely

    vector = _is_vector(frame)
    attributes = pd.DataFrame(frame.drop(columns=frame.geometry.name)) if vector else frame
    table = pa.Table.from_pandas(
        attributes.astype("string"),
        schema=pa.schema([(str(column), pa.string()) for column in attributes.columns]),
        preserve_index=False,
    )
    if not vector:
        return table
    wkb = pa.array(shapely.to_wkb(frame.geometry.values), pa.binary())
    table = table.append_column(pa.field(_GEOMETRY, pa.binary()), wkb)
    return table.replace_schema_metadata({CRS_KEY: frame.crs.to_json()})


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """The rows :func:`to_arrow` staged, as :func:`read_file` read them."""
    crs = (table.schema.metadata or {}).get(CRS_KEY.encode())
    attributes = table.drop_columns([_GEOMETRY]) if crs else table
    frame = attributes.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    if not crs:
        return frame
    import geopandas as gpd
    import shapely

    wkb = table.column(_GEOMETRY).to_numpy(zero_copy_only=False)
    return gpd.GeoDataFrame(frame, geometry=shapely.from_wkb(wkb), crs=crs.decode())


def _is_vector(frame: pd.DataFrame) -> bool:
    import geopandas as gpd

    return isinstance(frame, gpd.GeoDataFrame)


def read_plots(
    files: Sequence[tuple[pd.DataFrame, str]],
    *,
    seasons: Sequence[tuple[pd.DataFrame, str]] = (),
    dem: tuple[Path, str] | None = None,
    counties: tuple[Path, str] | None = None,
    mapping: dict[str, str] | None = None,
) -> PlotsRead:
    """Contract rows of plot files' rows (:func:`read_file`; with the file's name for
    messages), with their plot-seasons from ``seasons`` CSVs' rows when given. Pure: the DEM
    and the county boundaries are local files, no lake."""
    mapping = mapping or {}
    frames = [_read_one(frame, name, mapping) for frame, name in files]
    plots = pd.concat(frames, ignore_index=True)
    quarantine = Quarantine(plots.index)
    quarantine.add(plots["_geometry_problem"].notna(), plots["_geometry_problem"])
    outside = ~(
        plots["latitude"].between(*KENYA_LATITUDE) & plots["longitude"].between(*KENYA_LONGITUDE)
    )
    quarantine.add(
        outside & plots["latitude"].notna(),
        "outside Kenya (" + plots["latitude"].round(4).astype(str) + ", "
        + plots["longitude"].round(4).astype(str) + ")",
    )  # fmt: skip
    _altitude(plots, dem, quarantine, [name for _, name in files])
    _county(plots, counties, quarantine, mapping, [name for _, name in files])
    if seasons:
        plots = _join_seasons(plots, seasons, mapping, quarantine)
    _season_columns(plots, quarantine)
    _area(plots, quarantine, mapping)
    key = ["plot_id", "season_year", "season"]
    duplicated = plots.duplicated(key, keep=False) & plots["plot_id"].notna()
    quarantine.add(
        duplicated,
        "duplicate plot id " + plots["plot_id"].astype(str) + " for one season",
    )
    bad = quarantine.bad
    rejected = plots[bad].drop(columns=[c for c in plots if c.startswith("_")]).copy()
    rejected[REASON] = quarantine.reason[bad]
    good = plots[~bad].sort_values(key, kind="stable")
    good = good.assign(**{PLOT_AREA: good["_area_ha"]})
    table = pa.Table.from_pandas(
        good[PLOTS_WITH_AREA_SCHEMA.names], schema=PLOTS_WITH_AREA_SCHEMA, preserve_index=False
    )
    return PlotsRead(table, _geometries(good), rejected, len(plots))


def _geometries(good: pd.DataFrame) -> pa.Table:
    """One boundary per plot (its newest plot-season's row), WKB in WGS 84: the file's
    polygon or point, or the point of a CSV's coordinates."""
    import shapely

    newest = good.sort_values(["plot_id", "season_year", "season"], kind="stable")
    newest = newest.drop_duplicates("plot_id", keep="last")
    wkb = newest["_wkb"].to_numpy(dtype=object, copy=True)
    points = pd.isna(wkb)
    if points.any():
        wkb[points] = shapely.to_wkb(
            shapely.points(
                newest["longitude"].to_numpy()[points], newest["latitude"].to_numpy()[points]
            )
        )
    return pa.table(
        {
            "plot_id": pa.array(newest["plot_id"].to_numpy(np.int64)),
            "geometry": pa.array(wkb, pa.binary()),
        },
        schema=PLOT_GEOMETRIES_SCHEMA,
    )


def _read_one(frame: pd.DataFrame, name: str, mapping: dict[str, str]) -> pd.DataFrame:
    """One file's rows: id, centroid, area, boundary and every other column (still as
    given)."""
    if not _is_vector(frame):
        lat = require_column(frame, "latitude", SPELLINGS["latitude"], mapping, name)
        lon = require_column(frame, "longitude", SPELLINGS["longitude"], mapping, name)
        out = frame.rename(columns={lat: "latitude", lon: "longitude"})
        problem = pd.Series(pd.NA, index=out.index, dtype="string")
        for column in ("latitude", "longitude"):
            out[column], wrong = numbers(out[column])
            problem[wrong & problem.isna()] = f"{column} is not a number"
        problem[out["latitude"].isna() & problem.isna()] = "no latitude / longitude"
        out[_POLYGON_AREA] = np.nan
        out["_wkb"] = None
    else:
        out, problem = _read_geometries(frame)
    ident = require_column(out, "plot_id", SPELLINGS["plot_id"], mapping, name)
    out = out.rename(columns={ident: "plot_id"})
    out["plot_id"], wrong_id = integers(out["plot_id"])
    problem[wrong_id & problem.isna()] = "plot id is not a whole number"
    problem[out["plot_id"].isna() & problem.isna()] = "no plot id"
    out["_geometry_problem"] = problem
    out[SOURCE] = name
    return out


def _read_geometries(frame: gpd.GeoDataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Centroid, area and the WGS 84 boundary of each row.

    The area is the polygon's in EPSG:6933 (cylindrical equal-area on the WGS 84 ellipsoid):
    an equal-area projection keeps every shape's ellipsoidal area, so the only difference
    from a geodesic area is the edges (straight in the projection, not geodesics), far
    below a square metre for a plot's edges of tens to hundreds of metres. It is the
    projection the centroid needs anyway: one vectorised reprojection, where a geodesic
    area (``pyproj.Geod``) is a Python loop over the polygons for the same figure."""
    import shapely

    geometry = frame.geometry
    problem = pd.Series(pd.NA, index=frame.index, dtype="string")
    empty = geometry.isna() | geometry.is_empty
    problem[empty] = "no geometry"
    invalid = ~empty & ~geometry.is_valid
    if invalid.any():
        from shapely.validation import explain_validity

        problem[invalid] = [f"invalid polygon: {explain_validity(g)}" for g in geometry[invalid]]
    kinds = geometry.geom_type.where(~empty)
    other = ~empty & ~kinds.isin(["Point", "Polygon", "MultiPolygon"])
    problem[other & problem.isna()] = "geometry is " + kinds[other].astype(str) + ", not a plot"
    usable = ~empty & ~invalid & ~other
    projected = geometry[usable].to_crs(EQUAL_AREA_CRS)
    centroids = projected.centroid.to_crs("EPSG:4326")
    wgs84 = (
        geometry[usable] if frame.crs.to_epsg() == 4326 else geometry[usable].to_crs("EPSG:4326")
    )
    out = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    out["latitude"] = np.nan
    out["longitude"] = np.nan
    out[_POLYGON_AREA] = np.nan
    out["_wkb"] = None
    out.loc[usable, "latitude"] = np.round(centroids.y.to_numpy(), 6)
    out.loc[usable, "longitude"] = np.round(centroids.x.to_numpy(), 6)
    out.loc[usable, "_wkb"] = pd.Series(
        list(shapely.to_wkb(wgs84.values)), index=wgs84.index, dtype=object
    )
    polygons = usable & kinds.isin(["Polygon", "MultiPolygon"])
    out.loc[polygons, _POLYGON_AREA] = projected[polygons[usable].to_numpy()].area.to_numpy() / 1e4
    return out, problem


def _area(plots: pd.DataFrame, quarantine: Quarantine, mapping: dict[str, str]) -> None:
    """Each row's area (``_area_ha``, hectares, to the square metre): its area column's value
    where given (the plots file's, or the plot-seasons CSV's: a season's planted area), else
    its polygon's, else null. Not a number, not positive or above :data:`MAX_AREA_HA`: the
    row is quarantined."""
    where = ", ".join(sorted(plots[SOURCE].dropna().unique()))
    area = plots[_POLYGON_AREA].astype(np.float64)
    column = find_column(plots, PLOT_AREA, SPELLINGS[PLOT_AREA], mapping, where)
    if column is not None:
        given, wrong = numbers(plots[column])
        quarantine.add(wrong, f"{column} " + plots[column].astype("string").map(repr)
                       + " is not a number")  # fmt: skip
        area = given.fillna(area)
    impossible = area.notna() & ~((area > 0) & (area <= MAX_AREA_HA))
    quarantine.add(
        impossible,
        "area "
        + area.map("{:g}".format).astype("string")
        + f" ha is not a plot's (0 < area ≤ {MAX_AREA_HA:,.0f} ha)",
    )
    plots["_area_ha"] = area.round(4)


def _with_crs(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    """The frame with its CRS; with none, its coordinates must be degrees (a projected
    file that lost its .prj would otherwise put plots anywhere) and WGS 84 is assumed."""
    if frame.crs is not None:
        return frame
    west, south, east, north = frame.total_bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise DataValidationError(
            f"{name}: no CRS and coordinates ({west:.0f}…{east:.0f}, {south:.0f}…{north:.0f}) "
            "are not degrees: add the .prj (or the GeoJSON's WGS 84 coordinates)"
        )
    log.warning("%s: no CRS given; taken as WGS 84 (EPSG:4326)", name)
    return frame.set_crs("EPSG:4326")


def _in_wgs84(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    """The frame in WGS 84 (county boundaries)."""
    frame = _with_crs(frame, name)
    return frame if frame.crs.to_epsg() == 4326 else frame.to_crs("EPSG:4326")


def _altitude(
    plots: pd.DataFrame, dem: tuple[Path, str] | None, quarantine: Quarantine, files: list[str]
) -> None:
    if dem is not None:
        plots["altitude"] = sample_dem(dem[0], dem[1], plots["latitude"], plots["longitude"])
        quarantine.add(
            plots["altitude"].isna() & plots["latitude"].notna(), f"no altitude in {dem[1]}"
        )
        return
    column = find_column(plots, "altitude", SPELLINGS["altitude"], {}, ", ".join(files))
    if column is None:
        raise DataValidationError(
            f"{', '.join(files)}: no altitude column ({', '.join(('altitude', *SPELLINGS['altitude']))}) "
            "and no DEM_SOURCE configured: set DEM_SOURCE to a DEM GeoTIFF or add the "
            "column (an altitude is never made up)"
        )
    plots["altitude"], wrong = numbers(plots[column])
    quarantine.add(wrong, "altitude is not a number")


def sample_dem(path: Path, name: str, latitude: pd.Series, longitude: pd.Series) -> np.ndarray:
    """Altitude (m) of the DEM at each point (NaN off the DEM or on its nodata)."""
    import rasterio
    from rasterio.warp import transform as reproject

    out = np.full(len(latitude), np.nan)
    located = latitude.notna().to_numpy() & longitude.notna().to_numpy()
    try:
        with rasterio.open(path) as raster:
            xs, ys = longitude.to_numpy()[located], latitude.to_numpy()[located]
            if raster.crs is not None and raster.crs.to_epsg() != 4326:
                xs, ys = reproject("EPSG:4326", raster.crs, xs, ys)
            values = np.array([v[0] for v in raster.sample(zip(xs, ys, strict=True), masked=True)])
            if raster.nodata is not None:
                values = np.where(values == raster.nodata, np.nan, values)
    except Exception as error:
        raise DataValidationError(
            f"{name}: not a readable DEM GeoTIFF ({first_line(error)})"
        ) from None
    out[located] = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    return np.round(out, 1)


def _county(
    plots: pd.DataFrame,
    counties: tuple[Path, str] | None,
    quarantine: Quarantine,
    mapping: dict[str, str],
    files: list[str],
) -> None:
    column = find_column(plots, "county", SPELLINGS["county"], mapping, ", ".join(files))
    if column is not None:
        plots["county"] = plots[column].astype("string").str.strip()
        quarantine.add(plots["county"].isna() | (plots["county"] == ""), "no county")
        return
    if counties is None:
        raise DataValidationError(
            f"{', '.join(files)}: no county column and no COUNTIES_SOURCE (county boundaries) "
            "configured to find each plot's county"
        )
    import geopandas as gpd

    path, name = counties
    try:
        source = f"/vsizip/{path}" if name.lower().endswith(".zip") else str(path)
        boundaries = _in_wgs84(gpd.read_file(source, engine="pyogrio"), name)
    except DataValidationError:
        raise
    except Exception as error:
        raise DataValidationError(f"{name}: not a readable boundaries file ({error})") from None
    name_column = require_column(
        boundaries, "county", SPELLINGS["county"] + ("name",), mapping, name
    )
    points = gpd.GeoDataFrame(
        index=plots.index,
        geometry=gpd.points_from_xy(plots["longitude"], plots["latitude"]),
        crs="EPSG:4326",
    )
    joined = gpd.sjoin(
        points, boundaries[[name_column, "geometry"]], how="left", predicate="within"
    )
    joined = joined[~joined.index.duplicated(keep="first")]
    plots["county"] = joined[name_column].astype("string")
    quarantine.add(plots["county"].isna() & plots["latitude"].notna(), f"in no county of {name}")


def _join_seasons(
    plots: pd.DataFrame,
    seasons: Sequence[tuple[pd.DataFrame, str]],
    mapping: dict[str, str],
    quarantine: Quarantine,
) -> pd.DataFrame:
    """Plot rows × their seasons from CSV rows keyed by plot id. Plot rows already
    quarantined stay, as they are; a season row whose plot id is not a whole number, or is
    not in the plots file, is quarantined (its row, with no coordinates); plots without a
    season row are counted in the log (a plot not planted this season is no error)."""
    frames = []
    for given, name in seasons:
        frame = given.copy()
        ident = require_column(frame, "plot_id", SPELLINGS["plot_id"], mapping, name)
        frame = frame.rename(columns={ident: "plot_id"})
        frame["plot_id"], wrong = integers(frame["plot_id"])
        frame["_reason"] = pd.Series(pd.NA, index=frame.index, dtype="string")
        frame.loc[wrong | frame["plot_id"].isna(), "_reason"] = "plot id is not a whole number"
        frame[SOURCE + "_seasons"] = name
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    season_columns = [c for c in table.columns if c not in ("plot_id", "_reason")]
    plots = plots.drop(columns=[c for c in season_columns if c in plots and c != SOURCE])
    flagged = quarantine.bad
    good = plots[~flagged]
    merged = good.merge(table, on="plot_id", how="right", indicator=True)
    unplanted = int((~good["plot_id"].isin(table["plot_id"])).sum())
    if unplanted:
        log.info("%d plot(s) have no row in %s: not in raw/plots.parquet", unplanted,
                 ", ".join(name for _, name in seasons))  # fmt: skip
    rows = pd.concat(
        [merged, plots[flagged].assign(_reason=quarantine.reason[flagged])], ignore_index=True
    )
    new = Quarantine(rows.index)
    new.add(rows["_reason"].notna(), rows["_reason"])
    new.add(rows["_merge"] == "right_only", "plot id not in the plots file")
    quarantine.reason = new.reason
    rows[SOURCE] = rows[SOURCE].fillna(rows[SOURCE + "_seasons"])
    return rows.drop(columns=["_merge", "_reason", SOURCE + "_seasons"])


def season_names(given: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The contract's season of each value as given (the spellings of :data:`SEASONS`,
    matched ignoring case and punctuation; each distinct value looked up once), and for the
    values it cannot name the reason ``unknown season '…'`` (null elsewhere)."""
    text = given.astype("string")
    known = {
        value: SEASONS.get("".join(ch for ch in value.lower() if ch.isalnum()))
        for value in text.dropna().unique()
    }
    names = text.map(known).astype("string")
    bad = names.isna()
    return names, ("unknown season " + text[bad].fillna("").map(repr)).reindex(text.index)


def _season_columns(plots: pd.DataFrame, quarantine: Quarantine) -> None:
    where = ", ".join(sorted(plots[SOURCE].dropna().unique()))
    season = require_column(plots, "season", SPELLINGS["season"], {}, where)
    planting = require_column(plots, "planting_date", SPELLINGS["planting_date"], {}, where)
    plots["season"], unknown = season_names(plots[season])
    quarantine.add(unknown.notna(), unknown)
    given = plots[planting].astype("string")
    dates = pd.to_datetime(given, format="ISO8601", errors="coerce")
    day_first = pd.to_datetime(given, format="%d/%m/%Y", errors="coerce")
    dates = dates.fillna(day_first)
    quarantine.add(dates.isna(), "planting date " + given.fillna("").map(repr) + " is not a date")
    plots["planting_date"] = dates.dt.date
    year_column = find_column(plots, "season_year", SPELLINGS["season_year"], {}, where)
    if year_column is not None:
        plots["season_year"], wrong = integers(plots[year_column])
        quarantine.add(wrong | plots["season_year"].isna(), "season year is not a whole number")
    else:
        january = (dates.dt.month == 1) & (plots["season"] == "Short Rains")
        plots["season_year"] = (dates.dt.year - january.astype(int)).astype("Int64")
