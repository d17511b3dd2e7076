"""Values as the database takes them from rows computed with numpy and pandas (imports
neither SQLAlchemy nor a driver)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """numpy scalars → Python, NaN and pandas' missing values → None (database NULL)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, str | bytes | bool | int | float):
            try:
                missing = bool(value != value)  # pd.NA, pd.NaT
            except TypeError:
                missing = True  # pd.NA refuses a truth value
            value = None if missing else value
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out
