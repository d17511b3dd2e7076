"""Model training (docs/DESIGN.md, "Models and the registry"): candidates, temporal evaluation, calibrated
intervals, the champion/challenger gate, the audit of every decision and rollback.

Public interface:

* :func:`.pipeline.train` — every step for one run date (``nuru-yield train``); the steps
  themselves (:mod:`.pipeline`) are what the ``model_training`` DAG's tasks call.

MLflow is imported inside the functions that need it (≈1.3 s). This file imports nothing,
so that importing one module of the package (monitoring uses :mod:`.dataset`) does not load
the whole training pipeline.
"""
