"""Model training (docs/DESIGN.md, "Models and the registry"): candidates, temporal evaluation, calibrated
intervals, the champion/challenger gate, the audit of every decision and rollback.

Public interface:

* :func:`train` — every step for one run date (``nuru-yield train``); the steps themselves
  (:mod:`.pipeline`) are what the ``model_training`` DAG's tasks call.
* :func:`load_model` → :class:`ServingModel` — what scoring loads (predictions, intervals,
  TreeSHAP contributions, resolved version).
* :func:`promote_run` (``nuru-yield promote`` and the seed's script), :func:`rollback`.
* Registry names: :data:`EXPERIMENT_NAME`, :data:`MODEL_NAME` and the aliases
  :data:`CHAMPION`, :data:`PREVIOUS`, :data:`CHALLENGER`.

MLflow is imported inside the functions that need it (≈1.3 s).
"""

from nuru_yield.names import CHALLENGER, CHAMPION, EXPERIMENT_NAME, MODEL_NAME, PREVIOUS
from nuru_yield.training.pipeline import TrainingSummary, train
from nuru_yield.training.registry import promote_run, rollback
from nuru_yield.training.serving import ServingModel, load_model

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "EXPERIMENT_NAME",
    "MODEL_NAME",
    "PREVIOUS",
    "ServingModel",
    "TrainingSummary",
    "load_model",
    "promote_run",
    "rollback",
    "train",
]
