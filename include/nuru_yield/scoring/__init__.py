"""Nightly batch scoring (docs/DESIGN.md, "Lake layout", "Database", "Models and the registry"
and "Scale-out"): every in-progress plot-season of a run date scored by the ``@champion`` model (and ``@challenger`` in shadow) into the
``predictions`` partition of that date and the parquet prediction log.

Public interface:

* :func:`score` — the whole run in one process (``nuru-yield score``);
* :func:`prepare_run` → :class:`ScoringPlan`, :func:`score_shard`, :func:`publish_run`,
  :func:`fail_run` — the steps the ``batch_scoring`` DAG's tasks call;
* :func:`score_batch`, :func:`drivers_json` — the pure scoring of one record batch.
"""

from nuru_yield.scoring.batch import LOG_SCHEMA, RunStamp, drivers_json, log_batch, score_batch
from nuru_yield.scoring.run import (
    ScoringPlan,
    ShardResult,
    fail_run,
    prepare_run,
    publish_run,
    score,
    score_shard,
)

__all__ = [
    "LOG_SCHEMA",
    "RunStamp",
    "ScoringPlan",
    "ShardResult",
    "drivers_json",
    "fail_run",
    "log_batch",
    "prepare_run",
    "publish_run",
    "score",
    "score_batch",
    "score_shard",
]
