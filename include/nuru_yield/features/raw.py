"""Reading the raw contract (DESIGN §4) from the lake: the I/O edge of feature computation."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from nuru_yield.contract import CELLS_SCHEMA, NDVI_SCHEMA, PLOTS_SCHEMA
from nuru_yield.errors import DataValidationError, LakeError
from nuru_yield.features.columns import WEATHER_SCHEMA
from nuru_yield.lake import RAW_NDVI, RAW_PLOTS, RAW_WEATHER, RAW_WEATHER_CELLS, Lake


@dataclass(frozen=True)
class RawInputs:
    """The raw tables as data frames with the contract's columns (see :mod:`.columns`).

    Dates are ``datetime64`` columns; integer columns with missing values are float.
    """

    plots: pd.DataFrame
    cells: pd.DataFrame
    weather: pd.DataFrame
    ndvi: pd.DataFrame


def load_raw(lake: Lake, start: dt.date | None = None, end: dt.date | None = None) -> RawInputs:
    """Read the raw tables; weather and NDVI only for the years and dates in [start, end].

    Plot-seasons are limited to the season years that can have a planting in the range
    (a Short Rains season is planted up to January of the next year); rows with a missing
    season year are kept so that the validation gate can report them. ``None`` reads all.
    """
    years = range(start.year, end.year + 1) if start and end else None
    plots_filter = None
    if start and end:
        season_year = ds.field("season_year")
        plots_filter = season_year.is_null() | season_year.isin(
            list(range(start.year - 1, end.year + 1))
        )
    return RawInputs(
        plots=_read(lake, RAW_PLOTS, PLOTS_SCHEMA, plots_filter),
        cells=_read(lake, RAW_WEATHER_CELLS, CELLS_SCHEMA),
        weather=_read_daily(lake, RAW_WEATHER, WEATHER_SCHEMA, years, start, end),
        ndvi=_read_daily(lake, RAW_NDVI, NDVI_SCHEMA, years, start, end),
    )


def _read_daily(
    lake: Lake,
    path: str,
    schema: pa.Schema,
    years: range | None,
    start: dt.date | None,
    end: dt.date | None,
) -> pd.DataFrame:
    if years is None:
        return _read(lake, path, schema)
    _check_columns(lake, path, schema, years)
    date = ds.field("date")
    in_range = (date >= pa.scalar(start, pa.date32())) & (date <= pa.scalar(end, pa.date32()))
    return _read(lake, path, schema, ds.field("year").isin(list(years)) & in_range)


def _check_columns(lake: Lake, path: str, schema: pa.Schema, years: range) -> None:
    """Each file of the years read has the contract's columns: a dataset read would fill
    the columns one file lacks with nulls, and the file's rows would vanish unnamed."""
    for part in lake.list(path, ".parquet"):
        year = _YEAR.search(part)
        if year is not None and int(year.group(1)) not in years:
            continue
        try:
            present = lake.open_parquet(part).schema_arrow.names
        except (pa.ArrowException, LakeError):
            continue  # unreadable: the read names it
        if any(name not in present for name in schema.names):
            raise DataValidationError(_problem(lake, part, schema) or part)


_YEAR = re.compile(r"/year=(\d+)/")


def _read(
    lake: Lake, path: str, schema: pa.Schema, filters: ds.Expression | None = None
) -> pd.DataFrame:
    """Read ``schema``'s columns of one raw table and cast them to the contract types.

    A file that is not parquet, is truncated or corrupt, or does not follow the contract
    raises :class:`DataValidationError` (bad input: retrying cannot help) naming the file,
    for a folder of files the bad one; a storage error stays a :class:`LakeError`.
    """
    try:
        table = lake.read_parquet(path, columns=schema.names, filters=filters).cast(schema)
    except (pa.ArrowException, LakeError) as error:
        if isinstance(error, LakeError) and not _is_corrupt(error.__cause__):
            raise
        files = [path] if path.endswith(".parquet") else lake.list(path, ".parquet")
        problem = next(filter(None, (_problem(lake, file, schema) for file in files)), None)
        raise DataValidationError(
            problem or f"{path} does not match the raw contract: {_reason(_cause(error))}"
        ) from None
    return table.to_pandas(date_as_object=False, split_blocks=True, self_destruct=True)


def _problem(lake: Lake, path: str, schema: pa.Schema) -> str | None:
    """What is wrong with one file read on its own (only after a read failed): unreadable,
    columns missing, or values that do not cast to the contract's types."""
    try:
        table = lake.read_parquet(path)
    except (pa.ArrowException, LakeError) as error:
        return f"cannot read {path}: {_reason(_cause(error))}"
    missing = ", ".join(name for name in schema.names if name not in table.column_names)
    if missing:
        return f"{path} lacks column(s) {missing} of the raw contract (DESIGN §4)"
    try:
        table.select(schema.names).cast(schema)
    except pa.ArrowException as error:
        return f"{path} does not match the raw contract: {_first_line(error)}"
    return None


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
