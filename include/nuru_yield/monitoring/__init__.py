"""Drift monitoring, realized accuracy and the retraining trigger.

Public interface:

* :func:`run_monitoring` → :class:`MonitoringResult` — one run date, as ``nuru-yield drift``
  and the ``drift_monitoring`` DAG run it (:mod:`.monitor`);
* :func:`compare` / :class:`DriftRule` — the drift statistics of one variable
  (:mod:`.statistics`), :func:`detect_drift` over many (:mod:`.drift`);
* :func:`matched_reference` — the crop-calendar-aware reference (:mod:`.reference`);
* :func:`realized_accuracy` — forecasts against harvest labels (:mod:`.accuracy`);
* :func:`deliver` — send an alert by webhook or SMTP (:mod:`.alerts`).
"""

from nuru_yield.monitoring.accuracy import realized_accuracy
from nuru_yield.monitoring.alerts import Alert, AlertDeliveryError, deliver
from nuru_yield.monitoring.drift import PREDICTION, VariableDrift, detect_drift
from nuru_yield.monitoring.monitor import MonitoringResult, run_monitoring
from nuru_yield.monitoring.reference import ReferenceSpec, matched_reference
from nuru_yield.monitoring.statistics import Comparison, DriftRule, compare

__all__ = [
    "PREDICTION",
    "Alert",
    "AlertDeliveryError",
    "Comparison",
    "DriftRule",
    "MonitoringResult",
    "ReferenceSpec",
    "VariableDrift",
    "compare",
    "deliver",
    "detect_drift",
    "matched_reference",
    "realized_accuracy",
    "run_monitoring",
]
