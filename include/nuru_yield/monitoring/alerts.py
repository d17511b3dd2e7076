"""When to alert and retrain, and how people hear about it (plain Python, no Airflow).

An alert is raised on evidence that the model is wrong, never on an unusual season alone
(a dry season is a season signal for the bulletin: :mod:`.drift`; in words,
:mod:`nuru_yield.counties.signals`): when realized accuracy — freshly computed because new
harvest labels arrived — is worse than the champion's evaluation at the same lead time by
more than a margin, or when tonight's inputs lie outside the range the model was trained on
(over all plots, a feature's share outside beyond the rule's). Each reason is one line a person can act on. Delivery (:func:`deliver`)
goes to a webhook (JSON POST) or an SMTP server, as configured; it is off by default. The
Airflow notifier of the ``drift_monitoring`` DAG calls :func:`deliver`.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nuru_yield.errors import NuruError
from nuru_yield.monitoring.drift import MODEL_EVIDENCE, VariableDrift
from nuru_yield.names import CHAMPION

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)


class AlertDeliveryError(NuruError):
    """The configured alert channel refused or could not be reached."""


@dataclass(frozen=True)
class Alert:
    """The reasons to alert (none: no alert) and whether retraining is held back."""

    reasons: tuple[str, ...] = ()
    suppressed_by: str | None = None  # run date of an earlier report that already triggered

    @property
    def raised(self) -> bool:
        return bool(self.reasons)

    @property
    def trigger(self) -> bool:
        """Start ``model_training``: raised and not within the cooldown of an earlier one."""
        return self.raised and self.suppressed_by is None

    def summary(self) -> str:
        if not self.raised:
            return "no alert"
        head = "; ".join(self.reasons)
        if self.suppressed_by:
            return f"{head} (retraining not triggered: already triggered on {self.suppressed_by})"
        return head


def outside_reasons(drifts: Sequence[VariableDrift], max_outside_share: float) -> list[str]:
    """One reason when, over all plots, some feature's values lie outside the model's
    training range beyond ``max_outside_share`` (findings whose signal is model evidence)."""
    found = [d for d in drifts if d.county is None and d.signal == MODEL_EVIDENCE]
    if not found:
        return []
    found.sort(key=lambda d: -(d.outside_share or 0.0))
    details = ", ".join(f"{d.variable} {d.outside_share:.1%}" for d in found)
    return [
        f"inputs outside the training range: {details} of tonight's values lie outside what "
        f"the model was trained on at their lead time (> {max_outside_share:.0%}; about 1% "
        "by construction)"
    ]


def baseline_rmse(metrics: Mapping[str, float], lead_time_days: int) -> float | None:
    """The evaluation RMSE to compare a lead time with: ``dap/<lead>/rmse`` of the training
    evaluation (flat MLflow names), else the overall ``rmse``."""
    for key in (f"dap/{lead_time_days}/rmse", "rmse"):
        value = metrics.get(key)
        if value is not None and np.isfinite(value):
            return float(value)
    return None


def accuracy_reasons(
    fresh: pd.DataFrame,
    evaluation: Mapping[str, Mapping[str, float]],
    margin: float,
    min_samples: int,
) -> list[str]:
    """Reasons for champion rows of ``fresh`` (``model_performance`` rows whose labels just
    arrived) whose RMSE exceeds the version's evaluation RMSE by more than ``margin``.

    ``evaluation`` maps a model version to its training-evaluation metrics; versions
    without metrics, and groups with fewer than ``min_samples`` forecasts, are skipped.
    """
    reasons = []
    rows = fresh[(fresh["model_name"] == CHAMPION) & (fresh["n"] >= min_samples)]
    for row in rows.sort_values(["season_year", "season", "lead_time_days"]).itertuples():
        metrics = evaluation.get(str(row.model_version))
        baseline = baseline_rmse(metrics, int(row.lead_time_days)) if metrics else None
        if baseline and row.rmse > baseline * (1 + margin):
            reasons.append(
                f"accuracy: {row.season_year} {row.season}, version {row.model_version}, "
                f"{row.lead_time_days} days after planting: RMSE {row.rmse:.0f} kg/ha vs "
                f"{baseline:.0f} at evaluation (+{row.rmse / baseline - 1:.0%} > +{margin:.0%}, "
                f"n={row.n})"
            )
    return reasons


def deliver(subject: str, body: str, settings: Settings) -> str | None:
    """Send an alert on the configured channel; returns where it went (None when off)."""
    channel = settings.alert_channel
    if channel == "off":
        log.info("alert delivery is off (ALERT_CHANNEL=off): %s", subject)
        return None
    if channel == "webhook":
        return _post_webhook(subject, body, settings)
    return _send_mail(subject, body, settings)


def _post_webhook(subject: str, body: str, settings: Settings) -> str:
    url = settings.alert_webhook_url
    if not url:
        raise AlertDeliveryError("ALERT_CHANNEL=webhook needs ALERT_WEBHOOK_URL")
    payload = json.dumps({"text": f"{subject}\n{body}", "subject": subject, "body": body})
    request = urllib.request.Request(
        url, data=payload.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.alert_timeout_seconds) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AlertDeliveryError(f"alert webhook {url} failed: {reason}") from None
    return url


def _send_mail(subject: str, body: str, settings: Settings) -> str:
    if not (settings.alert_smtp_host and settings.alert_email_to):
        raise AlertDeliveryError("ALERT_CHANNEL=smtp needs ALERT_SMTP_HOST and ALERT_EMAIL_TO")
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.alert_email_from
    message["To"] = ", ".join(settings.alert_email_to)
    message.set_content(body)
    password = settings.alert_smtp_password
    try:
        with smtplib.SMTP(
            settings.alert_smtp_host,
            settings.alert_smtp_port,
            timeout=settings.alert_timeout_seconds,
        ) as smtp:
            if settings.alert_smtp_starttls:
                smtp.starttls()
            if settings.alert_smtp_user and password:
                smtp.login(settings.alert_smtp_user, password.get_secret_value())
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise AlertDeliveryError(
            f"alert mail via {settings.alert_smtp_host}:{settings.alert_smtp_port} failed: "
            f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None
    return ", ".join(settings.alert_email_to)
