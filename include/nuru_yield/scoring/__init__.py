"""Nightly batch scoring (docs/DESIGN.md, "Lake layout", "Database", "Models and the registry"
and "Scale-out"): every in-progress plot-season of a run date scored by the ``@champion``
model (and ``@challenger`` in shadow) into the ``predictions`` partition of that date and
the parquet prediction log.

Import from the defining module (this file imports nothing). Public interface:

* :mod:`.run` — ``SCORING``, the sharded night (``nuru_yield.nightly``): ``prepare_run``,
  ``score_shard``, ``publish_run``, the steps the ``batch_scoring`` DAG's tasks call, and
  ``score``, the whole run in one process (``nuru-yield score``);
* :mod:`.plan` — ``ScoringPlan``, ``ShardResult``, ``ScoringResult`` and the run statuses;
* :mod:`.bookkeeping` — the ``scoring_runs`` rows: ``fail_run``, ``close_abandoned_runs``;
* :mod:`.stager` — ``BackgroundStage``, the database load that overlaps scoring;
* :mod:`.batch` — ``score_batch``, ``drivers_json``: the pure scoring of one record batch.
"""
