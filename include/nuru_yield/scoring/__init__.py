"""Nightly batch scoring (docs/DESIGN.md, "Lake layout", "Database", "Models and the registry"
and "Scale-out"): every in-progress plot-season of a run date scored by the ``@champion`` model (and ``@challenger`` in shadow) into the
``predictions`` partition of that date and the parquet prediction log.

Import from the defining module (this file imports nothing). Public interface:

* :mod:`.run` — ``score``, the whole run in one process (``nuru-yield score``);
  ``prepare_run`` → ``ScoringPlan``, ``score_shard``, ``publish_run``, ``fail_run``, the
  steps the ``batch_scoring`` DAG's tasks call;
* :mod:`.batch` — ``score_batch``, ``drivers_json``: the pure scoring of one record batch.
"""
