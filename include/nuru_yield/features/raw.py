"""Reading the raw input contract (docs/DESIGN.md, "Raw input contract") from the lake: the I/O edge of features.

:func:`load_raw` reads everything in a date range, or one shard's slice of it: the
plot-seasons whose ``plot_id`` hashes to the shard, their NDVI (only the plot buckets of the
shard's hash range, see :mod:`nuru_yield.raw_layout`) and the weather of the cells nearest
to them. Every cell is read (a small table), so that nearest cells are found as in a whole
run. Memory of a shard grows with its own plots, not with the lake.

A raw file that is not parquet, is truncated or corrupt, or does not follow the contract
raises :class:`~nuru_yield.errors.DataValidationError` naming the file (for a folder, or a
shard's NDVI buckets, the bad file among them): bad input, which retrying cannot help. A
storage error (unreachable bucket, permissions) stays a :class:`~nuru_yield.errors.LakeError`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import operator
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from nuru_yield.contract import CELLS_SCHEMA, NDVI_SCHEMA, PLOTS_SCHEMA
from nuru_yield.errors import DataValidationError, LakeError
from nuru_yield.features.cells import nearest_cells
from nuru_yield.features.columns import WEATHER_SCHEMA
from nuru_yield.lake import Lake
from nuru_yield.names import RAW_NDVI, RAW_PLOTS, RAW_WEATHER, RAW_WEATHER_CELLS
from nuru_yield.sharding import shard_filter, shard_or_zero

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawInputs:
    """The raw tables as data frames with the contract's columns (see :mod:`.columns`).

    Dates are ``datetime64`` columns; integer columns with missing values are float.
    """

    plots: pd.DataFrame
    cells: pd.DataFrame
    weather: pd.DataFrame
    ndvi: pd.DataFrame


def load_raw(
    lake: Lake,
    start: dt.date | None = None,
    end: dt.date | None = None,
    *,
    shard: int = 0,
    shards: int = 1,
    plots_path: str = RAW_PLOTS,
) -> RawInputs:
    """Read the raw tables; weather and NDVI only for the years and dates in [start, end];
    with ``shards`` > 1, only shard ``shard``'s slice (see the module docstring), its plots
    from ``plots_path`` (a file :func:`split_plots` wrote for it, or the whole table).

    Plot-seasons are limited to the season years that can have a planting in the range
    (a Short Rains season is planted up to January of the next year); rows with a missing
    season year are kept so that the validation gate can report them. ``None`` reads all.
    """
    years = range(start.year, end.year + 1) if start and end else None
    plots_filter = _season_years(start, end) if start and end else None
    if shards == 1:
        return RawInputs(
            plots=_read(lake, RAW_PLOTS, PLOTS_SCHEMA, plots_filter),
            cells=_read(lake, RAW_WEATHER_CELLS, CELLS_SCHEMA),
            weather=_read_daily(lake, RAW_WEATHER, WEATHER_SCHEMA, years, start, end),
            ndvi=_read_daily(lake, RAW_NDVI, NDVI_SCHEMA, years, start, end),
        )
    if years is None:
        raise ValueError("a shard of the raw inputs needs a date range")
    in_shard = shard_filter("plot_id", shard, shards)
    plots = _read(lake, plots_path, PLOTS_SCHEMA, _both(plots_filter, in_shard), RAW_PLOTS)
    cells = _read(lake, RAW_WEATHER_CELLS, CELLS_SCHEMA)
    return RawInputs(
        plots=plots,
        cells=cells,
        weather=_read_daily(
            lake,
            RAW_WEATHER,
            WEATHER_SCHEMA,
            years,
            start,
            end,
            ds.field("cell_id").isin(_nearest_cell_ids(plots, cells)),
        ),
        ndvi=_read_shard_ndvi(lake, years, start, end, shard, shards),
    )


def load_shared(lake: Lake, start: dt.date, end: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What every shard reads alike, validated once per run: the weather cells and the
    daily weather of [start, end]."""
    years = range(start.year, end.year + 1)
    return (
        _read(lake, RAW_WEATHER_CELLS, CELLS_SCHEMA),
        _read_daily(lake, RAW_WEATHER, WEATHER_SCHEMA, years, start, end),
    )


def load_weather(
    lake: Lake, ranges: list[tuple[dt.date, dt.date]], cell_ids: list[int]
) -> pd.DataFrame:
    """The daily weather of cells ``cell_ids`` on the days of ``ranges`` (inclusive date
    pairs, e.g. a season's window in each of ten earlier years: what a county's normal to
    date reads, ``nuru_yield.counties.signals``); only the years' files are opened. Years
    the lake has no weather for give no rows."""
    if not ranges or not cell_ids:
        return WEATHER_SCHEMA.empty_table().to_pandas(date_as_object=False)
    years = range(min(a.year for a, _ in ranges), max(b.year for _, b in ranges) + 1)
    files = _year_files(lake, RAW_WEATHER, years) if lake.exists(RAW_WEATHER) else []
    if not files:
        return WEATHER_SCHEMA.empty_table().to_pandas(date_as_object=False)
    _check_columns(lake, files, WEATHER_SCHEMA)
    days = functools.reduce(operator.or_, (_in_range(a, b) for a, b in ranges))
    rows = ds.field("cell_id").isin(sorted(cell_ids)) & days
    return _read(lake, files, WEATHER_SCHEMA, rows, label=RAW_WEATHER)


def split_plots(
    lake: Lake, start: dt.date, end: dt.date, parts: list[str]
) -> list[tuple[str, int]]:
    """Write the plot-seasons that can be in progress in [start, end] into one file per
    shard (``parts[k]`` for shard k of ``len(parts)``), in one streaming pass, so that each
    shard then reads its own plot-seasons, not the whole table (with years of history).

    Rows are cast to the contract's types here, so that a file off the contract is named
    once, as ``raw/plots.parquet``. Ids that cannot be hashed (null, negative, above
    2**31 - 1) go to shard 0, whose gate quarantines them. Returns (URI, rows) per part."""
    season_years = _season_years(start, end)
    with _named_errors(lake, RAW_PLOTS, PLOTS_SCHEMA):
        source = lake.open_parquet(RAW_PLOTS)
        lacking = _lacking(RAW_PLOTS, source.schema_arrow.names, PLOTS_SCHEMA)
        if lacking:
            raise DataValidationError(lacking)
        batches = source.iter_batches(batch_size=1 << 20, columns=PLOTS_SCHEMA.names)
        return lake.write_parquet_split(
            parts,
            PLOTS_SCHEMA,
            (
                pa.Table.from_batches([batch])
                .select(PLOTS_SCHEMA.names)
                .cast(PLOTS_SCHEMA)
                .filter(season_years)
                for batch in batches
            ),
            lambda table: shard_or_zero(table.column("plot_id"), len(parts)),
        )


def _season_years(start: dt.date, end: dt.date) -> ds.Expression:
    """Plot-seasons whose season year allows a planting in [start, end] (or is missing)."""
    season_year = ds.field("season_year")
    return season_year.is_null() | season_year.isin(list(range(start.year - 1, end.year + 1)))


def _nearest_cell_ids(plots: pd.DataFrame, cells: pd.DataFrame) -> list[int]:
    """The cells nearest to ``plots`` (their weather is all a shard reads)."""
    cell_ids, _ = nearest_cells(
        cells,
        plots["latitude"].to_numpy("float64", na_value=float("nan")),
        plots["longitude"].to_numpy("float64", na_value=float("nan")),
    )
    return sorted(set(cell_ids[cell_ids >= 0].tolist()))


def _read_shard_ndvi(
    lake: Lake, years: range, start: dt.date, end: dt.date, shard: int, shards: int
) -> pd.DataFrame:
    """The NDVI scenes of a shard's plots: the files of its plot buckets (and any file not
    yet bucketed, scanned in full), rows filtered by the shard hash and the date range."""
    from nuru_yield.raw_layout import (
        UNBUCKETED_NDVI_REMOVED_IN,
        UPGRADE_COMMAND,
        shard_ndvi_files,
    )

    if not lake.exists(RAW_NDVI):
        raise LakeError(f"cannot read {lake.uri(RAW_NDVI)}: not found")
    files = shard_ndvi_files(lake, years, shard, shards)
    if files.unbucketed:
        log.warning(
            "%d NDVI file(s) not split by plot bucket (e.g. %s): every shard reads them in "
            "full; run `%s` (release %s stops reading them)",
            len(files.unbucketed),
            files.unbucketed[0],
            UPGRADE_COMMAND,
            UNBUCKETED_NDVI_REMOVED_IN,
        )
    if not files.all:
        return NDVI_SCHEMA.empty_table().to_pandas(date_as_object=False)
    _check_columns(lake, files.all, NDVI_SCHEMA)
    filters = shard_filter("plot_id", shard, shards) & _in_range(start, end)
    return _read(lake, files.all, NDVI_SCHEMA, filters, label=RAW_NDVI)


def _both(first: ds.Expression | None, second: ds.Expression) -> ds.Expression:
    return second if first is None else first & second


def _in_range(start: dt.date, end: dt.date) -> ds.Expression:
    date = ds.field("date")
    return (date >= pa.scalar(start, pa.date32())) & (date <= pa.scalar(end, pa.date32()))


def _read_daily(
    lake: Lake,
    path: str,
    schema: pa.Schema,
    years: range | None,
    start: dt.date | None,
    end: dt.date | None,
    rows: ds.Expression | None = None,
) -> pd.DataFrame:
    if years is None:
        return _read(lake, path, schema, rows)
    assert start is not None and end is not None
    _check_columns(lake, _year_files(lake, path, years), schema)
    in_years = ds.field("year").isin(list(years)) & _in_range(start, end)
    return _read(lake, path, schema, _both(rows, in_years))


def _year_files(lake: Lake, path: str, years: range) -> list[str]:
    """The files of a table partitioned by year (``year=YYYY/…``) for ``years``."""
    files = []
    for part in lake.list(path, ".parquet"):
        year = _YEAR.search(part)
        if year is None or int(year.group(1)) in years:
            files.append(part)
    return files


_YEAR = re.compile(r"/year=(\d+)/")


def _check_columns(lake: Lake, files: list[str], schema: pa.Schema) -> None:
    """Each file has the contract's columns: a dataset read fills the columns one file
    lacks with nulls, and the file's rows would vanish unnamed. Reads footers only."""
    for file in files:
        try:
            present = lake.open_parquet(file).schema_arrow.names
        except (pa.ArrowException, OSError, LakeError):
            continue  # unreadable: the read names it
        lacking = _lacking(file, present, schema)
        if lacking:
            raise DataValidationError(lacking)


def _read(
    lake: Lake,
    path: str | list[str],
    schema: pa.Schema,
    filters: ds.Expression | None = None,
    label: str | None = None,
) -> pd.DataFrame:
    """Read ``schema``'s columns of one raw table (a path, or a list of its files named
    ``label`` in messages) and cast them to the contract types."""
    with _named_errors(lake, path, schema, label):
        table = lake.read_parquet(path, columns=schema.names, filters=filters).cast(schema)
    return table.to_pandas(date_as_object=False, split_blocks=True, self_destruct=True)


@contextmanager
def _named_errors(
    lake: Lake, path: str | list[str], schema: pa.Schema, label: str | None = None
) -> Iterator[None]:
    """Turn a failed read of ``path`` (a file, a folder, or a list of files named ``label``)
    into the module's errors: a storage error stays a :class:`LakeError`; anything else
    (not parquet, corrupt, columns missing, values that do not cast) is a
    :class:`DataValidationError` naming the bad file, found by reading each on its own."""
    try:
        yield
    except (pa.ArrowException, OSError, LakeError) as error:
        cause = _cause(error)
        if not isinstance(error, pa.ArrowException) and not _is_corrupt(cause):
            if isinstance(error, LakeError):
                raise
            raise LakeError(
                f"cannot read {lake.uri(label or str(path))}: {_reason(cause)}"
            ) from error
        if isinstance(path, list):
            files = path
        else:
            files = [path] if path.endswith(".parquet") else lake.list(path, ".parquet")
        problem = next(filter(None, (_problem(lake, file, schema) for file in files)), None)
        raise DataValidationError(
            problem or f"{label or path} does not match the raw contract: {_reason(cause)}"
        ) from None


def _problem(lake: Lake, path: str, schema: pa.Schema) -> str | None:
    """What is wrong with one file read on its own (only after a read failed): unreadable,
    columns missing, or values that do not cast to the contract's types."""
    try:
        table = lake.read_parquet(path)
    except (pa.ArrowException, LakeError) as error:
        return f"cannot read {path}: {_reason(_cause(error))}"
    lacking = _lacking(path, table.column_names, schema)
    if lacking:
        return lacking
    try:
        table.select(schema.names).cast(schema)
    except pa.ArrowException as error:
        return f"{path} does not match the raw contract: {_first_line(error)}"
    return None


def _lacking(path: str, present: list[str], schema: pa.Schema) -> str | None:
    missing = ", ".join(name for name in schema.names if name not in present)
    if not missing:
        return None
    return f"{path} lacks column(s) {missing} of the raw contract (docs/DESIGN.md, 'Raw input contract')"


def _cause(error: BaseException) -> BaseException:
    return error.__cause__ if isinstance(error, LakeError) and error.__cause__ else error


# What pyarrow says about a file that is not (or no longer) valid parquet, as opposed to a
# storage error (unreachable bucket, permissions) that a retry may get past.
_CORRUPT_MARKERS = ("magic bytes", "deserialize thrift", "corrupt", "is this a 'parquet' file")


def _is_corrupt(error: BaseException | None) -> bool:
    return error is not None and any(m in str(error).lower() for m in _CORRUPT_MARKERS)


def _reason(error: BaseException) -> str:
    """pyarrow's reason without the file paths it repeats: 'Parquet magic bytes not found…'."""
    line = _first_line(error)
    if _is_corrupt(error):
        return "not a readable parquet file (" + line.rsplit("': ", 1)[-1].rstrip(".") + ")"
    return line


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
