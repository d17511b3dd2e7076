"""Alert rules (evidence against the model: inputs outside its training ranges, realized
accuracy; never a season signal alone), what a drift finding means, and delivery by webhook
and SMTP."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.monitoring.alerts import (
    Alert,
    AlertDeliveryError,
    accuracy_reasons,
    baseline_rmse,
    deliver,
    outside_reasons,
)
from nuru_yield.monitoring.drift import (
    MODEL_EVIDENCE,
    PLOT_MIX,
    SEASON_SIGNAL,
    VariableDrift,
    signal_of,
)
from nuru_yield.monitoring.statistics import DRIFTED, OK, Comparison, DriftRule

RULE = DriftRule()  # PSI > 0.25; more than 5% outside the training range is evidence


def _drift(
    variable: str, value: float, county: str | None = None, outside: float | None = None
) -> VariableDrift:
    status = DRIFTED if value > 0.25 else OK
    comparison = Comparison(status, "psi", value, 0.25, 500, 900, {})
    signal = signal_of(variable, comparison, outside, RULE)
    return VariableDrift(variable, county, comparison, outside_share=outside, signal=signal)


def test_a_drifted_season_is_a_signal_and_inputs_never_seen_are_evidence() -> None:
    assert _drift("precip_total", 3.1, outside=0.02).signal == SEASON_SIGNAL
    assert _drift("predicted_yield_kg_per_ha", 0.9).signal == SEASON_SIGNAL
    assert _drift("latitude", 0.6, outside=0.0).signal == PLOT_MIX
    assert _drift("precip_total", 3.1, outside=0.12).signal == MODEL_EVIDENCE
    assert _drift("planting_doy", 0.1, outside=0.30).signal == MODEL_EVIDENCE  # no drift needed
    assert _drift("gdd_sum", 0.1, outside=0.05).signal is None  # at the threshold: not beyond
    # A feed one to three days behind is below anything training saw: not the model's fault.
    assert _drift("weather_coverage", 0.1, outside=0.9).signal is None
    assert _drift("n_clear_ndvi_obs", 0.4, outside=0.9).signal == SEASON_SIGNAL


def test_a_dry_season_alone_raises_no_alert() -> None:
    """The demo's poor Long Rains once queued a retraining on drifted rain features: a
    season signal now, reported, never a reason to retrain."""
    drifts = [_drift("precip_total", 3.1, outside=0.01), _drift("mean_ndvi", 0.9, outside=0.0)]
    drifts += [_drift("gdd_sum", 2.0, county="Kitui", outside=0.2)]  # county rows never count
    assert outside_reasons(drifts, 0.05) == []


def test_inputs_outside_the_training_range_over_all_plots_trigger_retraining() -> None:
    drifts = [
        _drift("precip_total", 3.1, outside=0.08),
        _drift("planting_doy", 0.1, outside=0.21),
        _drift("gdd_sum", 0.1, outside=0.01),
        _drift("precip_total", 3.1, county="Kitui", outside=0.6),
    ]
    (reason,) = outside_reasons(drifts, 0.05)
    assert reason.startswith(
        "inputs outside the training range: planting_doy 21.0%, precip_total 8.0% of tonight's "
        "values lie outside what the model was trained on at their lead time (> 5%"
    )
    assert "gdd_sum" not in reason and "Kitui" not in reason


def _performance(rmse: float, n: int = 500, model_name: str = "champion") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "season": "Long Rains",
                "season_year": 2024,
                "model_name": model_name,
                "model_version": "3",
                "lead_time_days": 60,
                "rmse": rmse,
                "mae": rmse * 0.8,
                "bias": 0.0,
                "coverage": 0.8,
                "n": n,
            }
        ]
    )


def test_accuracy_alert_compares_with_the_same_lead_time() -> None:
    evaluation = {"3": {"rmse": 500.0, "dap/60/rmse": 600.0}}
    assert accuracy_reasons(_performance(700.0), evaluation, margin=0.2, min_samples=100) == []
    (reason,) = accuracy_reasons(_performance(800.0), evaluation, margin=0.2, min_samples=100)
    assert "2024 Long Rains, version 3, 60 days after planting" in reason
    assert "RMSE 800 kg/ha vs 600 at evaluation (+33% > +20%" in reason


def test_accuracy_alert_skips_small_groups_challengers_and_unknown_versions() -> None:
    evaluation = {"3": {"rmse": 500.0}}
    assert accuracy_reasons(_performance(900.0, n=50), evaluation, 0.2, 100) == []
    assert (
        accuracy_reasons(_performance(900.0, model_name="challenger"), evaluation, 0.2, 100) == []
    )
    assert accuracy_reasons(_performance(900.0), {}, 0.2, 100) == []
    assert baseline_rmse({"rmse": 500.0}, 90) == 500.0  # no per-lead metric: overall


def test_cooldown_holds_back_the_trigger_not_the_alert() -> None:
    alert = Alert(("drift: …",), suppressed_by="2024-06-28")
    assert alert.raised and not alert.trigger
    assert "already triggered on 2024-06-28" in alert.summary()
    assert not Alert().raised and Alert().summary() == "no alert"


def test_delivery_is_off_by_default() -> None:
    assert deliver("subject", "body", get_settings()) is None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint; yields its URL and the JSON bodies it received."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_delivery(webhook: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = webhook
    monkeypatch.setenv("ALERT_CHANNEL", "webhook")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    reset_settings()
    assert deliver("drift alert", "precip_total drifted", get_settings()) == url
    assert received == [
        {
            "text": "drift alert\nprecip_total drifted",
            "subject": "drift alert",
            "body": "precip_total drifted",
        }
    ]


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greets, accepts one message, records its DATA."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith("DATA"):
                self.wfile.write(b"354 go ahead\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk.decode())
                self.server.messages.append("".join(data))  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif command.startswith("QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_smtp_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for variable, value in {
            "ALERT_CHANNEL": "smtp",
            "ALERT_SMTP_HOST": "127.0.0.1",
            "ALERT_SMTP_PORT": str(server.server_address[1]),
            "ALERT_SMTP_STARTTLS": "false",
            "ALERT_EMAIL_TO": "agronomy@example.org, ops@example.org",
        }.items():
            monkeypatch.setenv(variable, value)
        reset_settings()
        sent_to = deliver("drift alert", "precip_total drifted", get_settings())
    finally:
        server.shutdown()
        server.server_close()
    assert sent_to == "agronomy@example.org, ops@example.org"
    (message,) = server.messages  # type: ignore[attr-defined]
    assert "Subject: drift alert" in message and "precip_total drifted" in message


def test_unreachable_channel_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_CHANNEL", "webhook")
    reset_settings()
    with pytest.raises(AlertDeliveryError, match="needs ALERT_WEBHOOK_URL"):
        deliver("s", "b", get_settings())
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # discard port: refused
    reset_settings()
    with pytest.raises(
        AlertDeliveryError, match=r"alert webhook http://127\.0\.0\.1:9/hook failed"
    ):
        deliver("s", "b", get_settings())
