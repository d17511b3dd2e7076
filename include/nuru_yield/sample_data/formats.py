"""Writers of the real products' file formats, for the synthetic world of ``nuru-yield
sample-data --format real`` (and the tests and benchmarks of :mod:`nuru_yield.sources`).

Each follows the published conventions the readers check (docs/DESIGN.md, "Real sources"),
on a window of the product's global grid that covers the given weather cells:

* CHIRPS v2.0 yearly NetCDF ``chirps-v2.0.{YYYY}.days_p05.nc`` (``precip``, mm/day,
  latitude south to north, fill −9999) and daily GeoTIFF ``chirps-v2.0.{YYYY}.{MM}.{DD}.tif``
  (optionally gzipped; north-up, EPSG:4326, nodata −9999);
* AgERA5 daily NetCDF per variable (K, J m⁻² d⁻¹; 0.1° pixel centres at multiples of 0.1°,
  latitude north to south, fill −9999);
* plots as GeoJSON squares of each plot's area around its point, and a crop-cut survey CSV.

A cell's value is written to every product pixel the cell's centre falls in (CHIRPS: the
cell itself; AgERA5: the 0.1° pixel holding the cell centre), so reading the files back at
the cells gives the values written. Missing values are written as the fill value.
"""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nuru_yield.grid import CELL_DEG, cell_rows_cols

if TYPE_CHECKING:
    import pyarrow as pa

# Where `nuru-yield sample-data --formats real|both` and the demo write the world as the real
# products: a folder of NURU_HOME.
SOURCES_DIR = "sources"
FILL = -9999.0
AGERA5_STEP = 0.1
_EPOCH = dt.date(1900, 1, 1)


def chirps_window(cell_ids: np.ndarray, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (global 0.05° indices) of a window covering the cells."""
    rows, cols = cell_rows_cols(cell_ids)
    return (
        np.arange(rows.min() - margin, rows.max() + margin + 1),
        np.arange(cols.min() - margin, cols.max() + margin + 1),
    )


def _grid(cell_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days, lat ascending, lon) float32 grid with each cell's value, fill elsewhere."""
    rows, cols = cell_rows_cols(cell_ids)
    grid_rows, grid_cols = chirps_window(cell_ids)
    out = np.full((values.shape[0], len(grid_rows), len(grid_cols)), FILL, dtype=np.float32)
    filled = np.where(np.isnan(values), FILL, values).astype(np.float32)
    out[:, rows - grid_rows[0], cols - grid_cols[0]] = filled
    lat = (grid_rows + 0.5) * CELL_DEG - 90.0
    lon = (grid_cols + 0.5) * CELL_DEG - 180.0
    return out, np.round(lat, 6), np.round(lon, 6)


def write_chirps_year(
    folder: Path, year: int, days: Sequence[dt.date], cell_ids: np.ndarray, precip: np.ndarray
) -> Path:
    """The yearly NetCDF of ``days`` × cells rain (mm/day; NaN = missing)."""
    import netCDF4

    grid, lat, lon = _grid(cell_ids, precip)
    path = Path(folder) / f"chirps-v2.0.{year}.days_p05.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", len(days))
        nc.createDimension("latitude", len(lat))
        nc.createDimension("longitude", len(lon))
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 1980-1-1 0:0:0", "standard"
        time[:] = [(day - dt.date(1980, 1, 1)).days for day in days]
        for name, values, units in (
            ("latitude", lat, "degrees_north"),
            ("longitude", lon, "degrees_east"),
        ):
            axis = nc.createVariable(name, "f4", (name,))
            axis.units = units
            axis[:] = values
        var = nc.createVariable(  # a chunk a day, as a daily product is read
            "precip", "f4", ("time", "latitude", "longitude"), zlib=True, complevel=1,
            fill_value=np.float32(FILL), chunksizes=(1, len(lat), len(lon)),
        )  # fmt: skip
        var.units, var.long_name = (
            "mm/day",
            "Climate Hazards group InfraRed Precipitation with Stations",
        )
        var.missing_value = np.float32(FILL)
        var.set_auto_maskandscale(False)
        var[:] = grid
        nc.title = "CHIRPS Version 2.0 (synthetic, nuru-yield sample-data)"
    return path


def write_chirps_day(
    folder: Path, day: dt.date, cell_ids: np.ndarray, precip: np.ndarray, gz: bool = False
) -> Path:
    """The Africa-style daily GeoTIFF of one day's rain at the cells (north-up)."""
    import rasterio
    from affine import Affine

    grid, lat, lon = _grid(cell_ids, precip[None, :])
    path = Path(folder) / f"chirps-v2.0.{day:%Y.%m.%d}.tif"
    transform = Affine(CELL_DEG, 0.0, lon[0] - CELL_DEG / 2, 0.0, -CELL_DEG, lat[-1] + CELL_DEG / 2)
    with rasterio.open(
        path, "w", driver="GTiff", width=len(lon), height=len(lat), count=1, dtype="float32",
        crs="EPSG:4326", transform=transform, nodata=FILL, compress="deflate",
    ) as tif:  # fmt: skip
        tif.write(grid[0, ::-1, :], 1)
    if not gz:
        return path
    zipped = path.with_name(path.name + ".gz")
    with open(path, "rb") as source, gzip.GzipFile(zipped, "wb", mtime=0) as target:
        shutil.copyfileobj(source, target)
    path.unlink()
    return zipped


AGERA5_NAMES = {
    "tmax_c": "Temperature_Air_2m_Max_24h",
    "tmin_c": "Temperature_Air_2m_Min_24h",
    "srad_mj_m2": "Solar_Radiation_Flux",
}


def write_agera5_day(
    folder: Path,
    day: dt.date,
    column: str,
    cell_ids: np.ndarray,
    values: np.ndarray,
    version: str = "1.1",
) -> Path:
    """One AgERA5 file: the variable feeding ``column`` on ``day`` (values in the contract's
    units: °C or MJ m-2 d-1, written as K or J m-2 d-1)."""
    import netCDF4

    variable = AGERA5_NAMES[column]
    rows, cols = cell_rows_cols(cell_ids)
    centre_lat = (rows + 0.5) * CELL_DEG - 90.0
    centre_lon = (cols + 0.5) * CELL_DEG - 180.0
    pixel_lat = np.rint(centre_lat / AGERA5_STEP).astype(np.int64)
    pixel_lon = np.rint(centre_lon / AGERA5_STEP).astype(np.int64)
    lat_index = np.arange(pixel_lat.max() + 1, pixel_lat.min() - 2, -1)  # north to south
    lon_index = np.arange(pixel_lon.min() - 1, pixel_lon.max() + 2)
    grid = np.full((1, len(lat_index), len(lon_index)), FILL, dtype=np.float32)
    if column == "srad_mj_m2":
        converted, units = values * 1e6, "J m-2 d-1"
    else:
        converted, units = values + 273.15, "K"
    grid[0, lat_index[0] - pixel_lat, pixel_lon - lon_index[0]] = np.where(
        np.isnan(converted), FILL, converted
    )
    name = f"{variable.replace('_', '-')}_C3S-glob-agric_AgERA5_{day:%Y%m%d}_final-v{version}.nc"
    path = Path(folder) / name
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 1)
        nc.createDimension("lat", len(lat_index))
        nc.createDimension("lon", len(lon_index))
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 1900-01-01 00:00:00", "proleptic_gregorian"
        time[:] = [(day - _EPOCH).days]
        for axis_name, index in (("lat", lat_index), ("lon", lon_index)):
            axis = nc.createVariable(axis_name, "f8", (axis_name,))
            axis.units = "degrees_north" if axis_name == "lat" else "degrees_east"
            axis[:] = np.round(index * AGERA5_STEP, 6)
        var = nc.createVariable(
            variable, "f4", ("time", "lat", "lon"), zlib=True, complevel=1,
            fill_value=np.float32(FILL),
        )  # fmt: skip
        var.units = units
        var.set_auto_maskandscale(False)
        var[:] = grid
    return path


def plot_squares(longitude: np.ndarray, latitude: np.ndarray, area_ha: np.ndarray) -> np.ndarray:
    """Each plot's square (WGS84 polygons) of its area: a half side of
    √(area_ha · 10,000) / 2 m around its point in the equal-area projection (EPSG:6933, the
    one the plots reader measures in), so that its centroid is the point and its area,
    read back, the plot's. ``plots.geojson`` and the NDVI rasters' plots are these."""
    import shapely
    from pyproj import Transformer

    forward = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
    back = Transformer.from_crs("EPSG:6933", "EPSG:4326", always_xy=True)
    x, y = forward.transform(longitude, latitude)
    half_side_m = np.sqrt(np.asarray(area_ha, dtype=np.float64) * 10_000.0) / 2.0
    corners = [(1, -1), (1, 1), (-1, 1), (-1, -1), (1, -1)]  # as shapely.box orders them
    ring = np.stack(
        [np.column_stack(back.transform(x + dx * half_side_m, y + dy * half_side_m))
         for dx, dy in corners],
        axis=1,
    )  # fmt: skip
    return shapely.polygons(ring)


class RealFormats:
    """The synthetic world written as the real products (``sample-data --format real``),
    under ``folder``: ``chirps/`` (yearly NetCDF; the last year as daily ``.tif.gz``, as a
    current season arrives), ``agera5/`` (one NetCDF per variable and day), ``plots.geojson``
    (a square of its area around each plot, no seasons), ``plot_seasons.csv`` and
    ``crop_cuts.csv`` (5 × 5 m cuts with their grain moisture)."""

    CUT_AREA_M2 = 25.0

    def __init__(self, folder: Path, last_year: int, standard_moisture_pct: float = 12.5) -> None:
        self.folder = Path(folder)
        self.last_year = last_year
        self.standard = standard_moisture_pct
        for name in ("chirps", "agera5"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        """What was written where, for the sample-data summary."""
        counts = {
            name: sum(1 for _ in (self.folder / name).iterdir()) for name in ("chirps", "agera5")
        }
        return (
            f"{self.folder}: chirps/ ({counts['chirps']:,} files), agera5/ "
            f"({counts['agera5']:,} files), plots.geojson, plot_seasons.csv, crop_cuts.csv"
        )

    def weather(self, year: int, table: pa.Table) -> None:
        """Write one year of the raw weather table (rows day-major over the cells)."""
        cell_ids = np.unique(table.column("cell_id").to_numpy())
        days_in_year = table.num_rows // len(cell_ids)
        days = [dt.date(year, 1, 1) + dt.timedelta(days=d) for d in range(days_in_year)]

        def grid(column: str) -> np.ndarray:
            values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            return values.reshape(days_in_year, len(cell_ids))

        precip = grid("precip_mm")
        if year < self.last_year:
            write_chirps_year(self.folder / "chirps", year, days, cell_ids, precip)
        else:
            for index, day in enumerate(days):
                write_chirps_day(self.folder / "chirps", day, cell_ids, precip[index], gz=True)
        columns = {column: grid(column) for column in AGERA5_NAMES}
        for index, day in enumerate(days):
            for column, values in columns.items():
                write_agera5_day(self.folder / "agera5", day, column, cell_ids, values[index])

    def plots(self, plots: pa.Table) -> None:
        """``plots.geojson`` (one square per plot of its ``area_ha``, centred on its point in
        the equal-area projection, so its centroid is the point and its area the plot's) and
        ``plot_seasons.csv``."""
        import geopandas as gpd
        import pandas as pd

        frame = plots.to_pandas()
        static = frame.drop_duplicates("plot_id").sort_values("plot_id")
        squares = plot_squares(
            static["longitude"].to_numpy(), static["latitude"].to_numpy(),
            static["area_ha"].to_numpy(),
        )  # fmt: skip
        gpd.GeoDataFrame(
            {
                "PlotID": static["plot_id"].to_numpy(),
                "elevation": static["altitude"].to_numpy(),
                "County": static["county"].to_numpy(),
            },
            geometry=squares,
            crs="EPSG:4326",
        ).to_file(self.folder / "plots.geojson", driver="GeoJSON", engine="pyogrio")
        seasons = pd.DataFrame(
            {
                "plot_id": frame["plot_id"],
                "season": frame["season"].map({"Long Rains": "LR", "Short Rains": "SR"}),
                "year": frame["season_year"],
                "planting_date": pd.to_datetime(frame["planting_date"]).dt.strftime("%d/%m/%Y"),
            }
        )
        seasons.to_csv(self.folder / "plot_seasons.csv", index=False)

    def labels(self, labels: pa.Table, rng: np.random.Generator) -> None:
        """``crop_cuts.csv``: each label as the fresh grain of a 5 × 5 m cut at a moisture
        drawn between 14% and 30%."""
        import pandas as pd

        frame = labels.to_pandas()
        moisture = np.round(rng.uniform(14.0, 30.0, len(frame)), 1)
        fresh = (
            frame["yield_kg_per_ha"]
            * (100.0 - self.standard)
            / (100.0 - moisture)
            * self.CUT_AREA_M2
            / 10_000.0
        )
        pd.DataFrame(
            {
                "Plot ID": frame["plot_id"],
                "Season": frame["season"],
                "Year": frame["season_year"],
                "fresh_weight_kg": np.round(fresh, 4),
                "cut_area_m2": self.CUT_AREA_M2,
                "moisture_pct": moisture,
            }
        ).to_csv(self.folder / "crop_cuts.csv", index=False)
