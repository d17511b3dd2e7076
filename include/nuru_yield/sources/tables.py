"""What the table-shaped sources share (plots, plot-seasons, harvest labels): reading a
file into a frame, finding a contract column under the names field apps give it, and the
raw-contract writer with its quarantine under the bad-share rule.

Column names are matched case-insensitively, ignoring spaces, dashes and underscores
(``PlotID`` = ``plot_id`` = ``Plot ID``), against each contract column's common spellings;
``SOURCE_COLUMNS`` maps any other (``plot_id=FarmCode``).
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield import names
from nuru_yield.errors import DataValidationError
from nuru_yield.lake import Lake

log = logging.getLogger(__name__)

REASON, SOURCE = "reason", "source_file"


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def find_column(
    frame: pd.DataFrame,
    column: str,
    spellings: Sequence[str],
    mapping: dict[str, str],
    where: str,
) -> str | None:
    """The frame's column holding contract column ``column``: the mapped name if
    ``SOURCE_COLUMNS`` gives one (it must exist), else the first common spelling present."""
    present = {_key(name): name for name in frame.columns}
    if column in mapping:
        found = present.get(_key(mapping[column]))
        if found is None:
            raise DataValidationError(
                f"{where}: no column {mapping[column]!r} (SOURCE_COLUMNS maps {column} to it)"
            )
        return found
    for spelling in (column, *spellings):
        if _key(spelling) in present:
            return present[_key(spelling)]
    return None


def require_column(
    frame: pd.DataFrame,
    column: str,
    spellings: Sequence[str],
    mapping: dict[str, str],
    where: str,
) -> str:
    found = find_column(frame, column, spellings, mapping, where)
    if found is None:
        raise DataValidationError(
            f"{where}: no {column} column (looked for {', '.join((column, *spellings))}; "
            f"SOURCE_COLUMNS={column}=<your column> names another)"
        )
    return found


def read_csv(path: Path, where: str) -> pd.DataFrame:
    """A CSV as strings (each reader converts and quarantines what does not convert). A
    header without rows is an empty table (no harvest yet), not an error."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as error:
        raise DataValidationError(f"{where}: not a readable CSV file ({error})") from None
    return frame


def integers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values as nullable int64 and where they were given but are not whole numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.floor(numbers))
    bad = values.notna() & ~whole
    return numbers.where(whole).astype("Int64"), bad


def numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values as float64 and where they were given but are not numbers."""
    converted = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return converted, values.notna() & converted.isna()


class Quarantine:
    """Rows set aside with a reason (the first problem found for each row)."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series(pd.NA, index=index, dtype="string")

    def add(self, mask: pd.Series | np.ndarray, reason: str | pd.Series) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=self.reason.index)
        fresh = mask & self.reason.isna()
        if isinstance(reason, pd.Series):
            self.reason[fresh] = reason[fresh].astype("string")
        else:
            self.reason[fresh] = reason

    @property
    def bad(self) -> pd.Series:
        return self.reason.notna()


def write_raw(
    lake: Lake,
    product: str,
    path: str,
    good: pa.Table,
    rejected: pd.DataFrame,
    total: int,
    threshold: float,
    files: Sequence[str],
) -> tuple[str, int]:
    """Write a raw-contract table and the rows quarantined on the way
    (``raw/rejected/{product}.parquet``: the row as read, its reason and file).

    The bad-share rule of the feature gate applies: when more than ``threshold`` of the rows
    are bad, nothing replaces the current raw table and the error names the commonest
    reasons. Returns (URI, rows written)."""
    rejected_table = pa.Table.from_pandas(
        rejected.astype("string").reset_index(drop=True), preserve_index=False
    )
    lake.write_parquet(names.rejected_raw_path(product), rejected_table)
    share = len(rejected) / total if total else 0.0
    if share > threshold:
        commonest = collections.Counter(rejected[REASON]).most_common(3)
        reasons = "; ".join(f"{reason} ({count})" for reason, count in commonest)
        raise DataValidationError(
            f"{', '.join(files)}: {len(rejected):,} of {total:,} {product} rows bad "
            f"({share:.1%} > VALIDATION_MAX_BAD_SHARE {threshold:.1%}): {reasons}; nothing "
            f"ingested, see {lake.uri(names.rejected_raw_path(product))}"
        )
    if len(rejected):
        log.warning(
            "ingest %s: %d of %d rows quarantined (see %s)",
            product, len(rejected), total, lake.uri(names.rejected_raw_path(product)),
        )  # fmt: skip
    return lake.write_parquet(path, good), good.num_rows
