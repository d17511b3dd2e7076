"""Drift monitoring, realized accuracy and the retraining trigger.

Import from the defining module (this file imports nothing). Public interface:

* :mod:`.monitor` — ``run_monitoring`` → ``MonitoringResult``: one run date, as
  ``nuru-yield drift`` and the ``drift_monitoring`` DAG run it;
* :mod:`.statistics` — ``compare`` / ``DriftRule``: the drift statistics of one variable;
  :mod:`.drift` — ``detect_drift`` over many;
* :mod:`.reference` — ``matched_reference``: the crop-calendar-aware reference;
* :mod:`.accuracy` — ``realized_accuracy``: forecasts against harvest labels;
* :mod:`.alerts` — ``deliver``: send an alert by webhook or SMTP.
"""
