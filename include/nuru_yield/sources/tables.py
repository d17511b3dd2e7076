"""What the table-shaped sources share (plots, plot-seasons, harvest labels): reading a
file into a frame, finding a contract column under the names field apps give it, the
quarantine and its table, and the bad-share rule.

Column names are matched case-insensitively, ignoring spaces, dashes and underscores
(``PlotID`` = ``plot_id`` = ``Plot ID``), against each contract column's common spellings;
``SOURCE_COLUMNS`` maps any other (``plot_id=FarmCode``).
"""

from __future__ import annotations

import collections
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield.errors import DataValidationError

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


# ``raw/rejected/{product}.parquet``: each quarantined row as read, with its reason.
REJECTED_SCHEMA = pa.schema(
    [
        (SOURCE, pa.string()),
        ("plot_id", pa.string()),
        (REASON, pa.string()),
        ("row", pa.string()),  # the row's other columns, JSON
    ]
)


def rejected_table(rejected: pd.DataFrame) -> pa.Table:
    """Quarantined rows (a reader's ``rejected`` frame) in :data:`REJECTED_SCHEMA`."""
    others = rejected.drop(columns=[SOURCE, REASON, "plot_id"], errors="ignore")
    rows = [
        json.dumps({k: v for k, v in row.items() if not pd.isna(v)}, default=str)
        for row in others.astype(object).to_dict("records")
    ]
    return pa.table(
        {
            SOURCE: rejected[SOURCE].astype("string").to_numpy(na_value=None),
            "plot_id": rejected["plot_id"].astype("string").to_numpy(na_value=None),
            REASON: rejected[REASON].astype("string").to_numpy(na_value=None),
            "row": rows,
        },
        schema=REJECTED_SCHEMA,
    )


def check_bad_share(
    product: str, files: Sequence[str], bad: int, total: int,
    reasons: collections.Counter[str], threshold: float, where: str,
) -> None:  # fmt: skip
    """The feature gate's bad-share rule for an ingest: more than ``threshold`` of the
    ``total`` rows quarantined is one error naming the files, the share and the commonest
    ``reasons`` (counts); ``where`` is the quarantine's URI."""
    share = bad / total if total else 0.0
    if share > threshold:
        commonest = "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
        raise DataValidationError(
            f"{', '.join(files)}: {bad:,} of {total:,} {product} rows bad ({share:.1%} > "
            f"VALIDATION_MAX_BAD_SHARE {threshold:.1%}): {commonest}; nothing ingested, see "
            f"{where}"
        )
    if bad:
        log.warning("ingest %s: %d of %d rows quarantined (see %s)", product, bad, total, where)
