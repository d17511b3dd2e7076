"""The predictions database (DESIGN §6): engines, migrations and bulk loaders.

``schema`` holds the table definitions; this package's functions are what the rest of the
system calls (``from nuru_yield.db import get_engine, upgrade, stage, publish``).
"""

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
