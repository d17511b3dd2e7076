"""The predictions database (docs/DESIGN.md, "Database"): engines, migrations and bulk loaders.

``schema`` holds the table definitions; the functions below are what the rest of the
system calls (``from nuru_yield.db import get_engine, upgrade, stage, publish``). They are
imported on first use, so that importing ``nuru_yield.db.schema`` (the API does) or running
``db upgrade`` does not load the bulk loader's pyarrow and numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nuru_yield.db.engine import check_connection, dispose_engines, get_engine
    from nuru_yield.db.loader import (
        PREDICTION_ARROW_SCHEMA,
        bare_ingest,
        discard,
        partition_name,
        publish,
        replace_partition,
        replace_rows,
        stage,
        staging_name,
    )
    from nuru_yield.db.migrations import LATEST_VERSION, upgrade

__all__ = [
    "LATEST_VERSION",
    "PREDICTION_ARROW_SCHEMA",
    "bare_ingest",
    "check_connection",
    "discard",
    "dispose_engines",
    "get_engine",
    "partition_name",
    "publish",
    "replace_partition",
    "replace_rows",
    "stage",
    "staging_name",
    "upgrade",
]
_ENGINE = ("check_connection", "dispose_engines", "get_engine")
_MIGRATIONS = ("LATEST_VERSION", "upgrade")


def _module_of(name: str) -> str:
    if name in _ENGINE:
        return "nuru_yield.db.engine"
    return "nuru_yield.db.migrations" if name in _MIGRATIONS else "nuru_yield.db.loader"


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_module_of(name)), name)
