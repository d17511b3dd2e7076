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
    date = ds.field("date")
    in_range = (date >= pa.scalar(start, pa.date32())) & (date <= pa.scalar(end, pa.date32()))
    return _read(lake, path, schema, ds.field("year").isin(list(years)) & in_range)


def _read(
    lake: Lake, path: str, schema: pa.Schema, filters: ds.Expression | None = None
) -> pd.DataFrame:
    """Read ``schema``'s columns of one raw table and cast them to the contract types.

    A file that is not parquet, is truncated or corrupt, or does not follow the contract
    raises :class:`DataValidationError` (bad input: retrying cannot help), naming the file.
    """
    try:
        table = lake.read_parquet(path, columns=schema.names, filters=filters)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise _contract_error(lake, path, schema, error) from None
    except LakeError as error:
        if _is_corrupt(error.__cause__):
            cause = error.__cause__
            raise DataValidationError(
                f"cannot read {_file(path, cause)}: {_reason(cause)}"
            ) from None
        raise
    try:
        table = table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise DataValidationError(
            f"{path} does not match the raw contract: {_first_line(error)}"
        ) from None
    return table.to_pandas(date_as_object=False, split_blocks=True, self_destruct=True)


def _contract_error(
    lake: Lake, path: str, schema: pa.Schema, error: BaseException
) -> DataValidationError:
    """Why ``path`` could not be read: not parquet at all, or columns missing or mistyped."""
    try:
        present = lake.read_parquet(path, filters=ds.scalar(False)).column_names
    except (pa.ArrowException, LakeError):  # not even its schema can be read
        return DataValidationError(f"cannot read {_file(path, error)}: {_reason(error)}")
    missing = ", ".join(name for name in schema.names if name not in present)
    if missing:
        return DataValidationError(
            f"{path} lacks column(s) {missing} of the raw contract (DESIGN §4)"
        )
    return DataValidationError(f"{path} does not match the raw contract: {_first_line(error)}")


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


def _file(path: str, error: BaseException) -> str:
    """The file pyarrow names in ``error`` (one part of a partitioned table), else ``path``."""
    for quoted in re.findall(r"'([^']+)'", str(error)):
        if path in quoted:
            return quoted[quoted.index(path) :]
    return path


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
